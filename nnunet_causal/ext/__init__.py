"""Shim folder for nnU-Net's ``nnUNet_extTrainer`` variable.

nnU-Net imports every module of this folder as a top-level module when it looks for a trainer that is
not in its own tree. The modules here only re-export trainers; point the variable at this folder (see
``nnunet_causal env``), never at site-packages.
"""
