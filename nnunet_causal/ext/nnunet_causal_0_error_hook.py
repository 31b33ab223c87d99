"""Installs the package's error hook (:mod:`nnunet_causal.error_hook`) in the stock nnU-Net commands.

nnU-Net imports this folder's modules in name order while it looks for a trainer and stops at the module
that holds it; the ``0`` in the name puts this module first, so the hook is in place whichever trainer is
asked for. It defines no trainer.
"""
from nnunet_causal.error_hook import install_error_hook

install_error_hook()
