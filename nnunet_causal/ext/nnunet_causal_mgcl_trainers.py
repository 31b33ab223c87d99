"""Re-exports the MGCL third-stage trainer for nnU-Net's trainer lookup (``nnUNet_extTrainer``)."""
from nnunet_causal.mgcl.frozen_encoders_trainer import nnUNetTrainerText_FrozenEncoders  # noqa: F401
