"""Re-exports the counterfactual trainers for nnU-Net's trainer lookup (``nnUNet_extTrainer``)."""
from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import nnUNetTrainerCounterfactual  # noqa: F401
from nnunet_causal.training.counterfactual.variants import (  # noqa: F401
    nnUNetTrainerCounterfactual_1epoch, nnUNetTrainerCounterfactual_5epochs, nnUNetTrainerCounterfactual_10epochs,
    nnUNetTrainerCounterfactual_20epochs, nnUNetTrainerCounterfactual_50epochs, nnUNetTrainerCounterfactual_100epochs,
    nnUNetTrainerCounterfactual_250epochs, nnUNetTrainerCounterfactual_500epochs, nnUNetTrainerCounterfactual_CPUDemo,
    nnUNetTrainerCounterfactual_CPULong, nnUNetTrainerCounterfactual_CPU2000steps,
)
