"""nnunet_causal: text-prompted, confounder-robust segmentation as an nnU-Net v2 extension.

The library never configures logging handlers; entry points do (see :mod:`nnunet_causal.cli`).
"""
__version__ = "0.1.0"
