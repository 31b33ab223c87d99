"""Re-exports the text trainers for nnU-Net's trainer lookup (``nnUNet_extTrainer``)."""
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText, nnUNetTrainerTextPresence  # noqa: F401
from nnunet_causal.training.text.variants import (  # noqa: F401
    nnUNetTrainerText_1epoch, nnUNetTrainerText_2epochs, nnUNetTrainerText_5epochs, nnUNetTrainerText_10epochs,
    nnUNetTrainerText_20epochs, nnUNetTrainerText_50epochs, nnUNetTrainerText_100epochs,
    nnUNetTrainerText_250epochs, nnUNetTrainerText_500epochs, nnUNetTrainerText_CrossAttentionConnector,
    nnUNetTrainerText_CPUDemo, nnUNetTrainerText_CPULong, nnUNetTrainerText_CPU2000steps,
    nnUNetTrainerText_CPU5000steps, nnUNetTrainerText_NoPresence,
    nnUNetTrainerTextPresence_CPUDemo, nnUNetTrainerTextPresence_CPULong,
)
