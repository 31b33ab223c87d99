"""Re-exports the causal, GIN/IPA and stock-schedule trainers for nnU-Net's trainer lookup."""
from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText  # noqa: F401
from nnunet_causal.training.causal.variants import (  # noqa: F401
    nnUNetTrainerCausalText_1epoch, nnUNetTrainerCausalText_2epochs, nnUNetTrainerCausalText_5epochs,
    nnUNetTrainerCausalText_10epochs, nnUNetTrainerCausalText_20epochs, nnUNetTrainerCausalText_50epochs,
    nnUNetTrainerCausalText_100epochs, nnUNetTrainerCausalText_250epochs, nnUNetTrainerCausalText_500epochs,
    nnUNetTrainerCausalText_NoPresence, nnUNetTrainerCausalText_NoMTRS, nnUNetTrainerCausalText_NoBottleneck, nnUNetTrainerCausalText_NoLAD,
    nnUNetTrainerCausalText_NoCausalLoss, nnUNetTrainerCausalText_NoImageIntervention,
    nnUNetTrainerCausalText_GINOnly, nnUNetTrainerCausalText_FrozenEncoder, nnUNetTrainerCausalText_CPUDemo,
    nnUNetTrainerCausalText_NoImageIntervention_CPUDemo, nnUNetTrainerCausalText_AlwaysIntervene,
    nnUNetTrainerCausalText_NoCounterfactual, nnUNetTrainerCausalText_CPULong,
    nnUNetTrainerCausalText_NoCounterfactual_CPULong, nnUNetTrainerCausalText_CueBreaking,
    nnUNetTrainerCausalText_CueBreaking_CPULong, nnUNetTrainerCausalText_CPU2000steps,
    nnUNetTrainerCausalText_CueBreaking_CPU2000steps, nnUNetTrainerCausalText_CueBreaking_CPU4000steps,
    nnUNetTrainerCausalText_CueBreaking_CPU5000steps,
    nnUNetTrainerCausalText_CueBreakingPaired, nnUNetTrainerCausalText_CueBreakingPaired_CPU2000steps,
    nnUNetTrainerCausalText_CueBreakingNoGIN, nnUNetTrainerCausalText_CueBreakingFactual,
    nnUNetTrainerCausalText_CueBreakingNoGIN_CPU2000steps, nnUNetTrainerCausalText_CueBreakingFactual_CPU2000steps,
    nnUNetTrainerCausalText_CueBreakingNoGIN_CPU5000steps, nnUNetTrainerCausalText_CueBreakingFactual_CPU5000steps,
    nnUNetTrainerCausalText_CueBreakingFactual40, nnUNetTrainerCausalText_CueBreakingFactual40_CPU5000steps,
    nnUNetTrainerCausalText_CueBreakingFactual50, nnUNetTrainerCausalText_CueBreakingFactual50_CPU5000steps,
)
from nnunet_causal.training.gin.nnUNetTrainerGIN import nnUNetTrainerGIN, nnUNetTrainerGINIPA  # noqa: F401
from nnunet_causal.training.gin.variants import (  # noqa: F401
    nnUNetTrainerGIN_1epoch, nnUNetTrainerGIN_2epochs, nnUNetTrainerGIN_5epochs, nnUNetTrainerGIN_10epochs,
    nnUNetTrainerGIN_20epochs, nnUNetTrainerGIN_50epochs, nnUNetTrainerGIN_100epochs, nnUNetTrainerGIN_250epochs,
    nnUNetTrainerGIN_500epochs, nnUNetTrainerGINIPA_1epoch, nnUNetTrainerGINIPA_2epochs, nnUNetTrainerGINIPA_5epochs,
    nnUNetTrainerGINIPA_10epochs, nnUNetTrainerGINIPA_20epochs, nnUNetTrainerGINIPA_50epochs,
    nnUNetTrainerGINIPA_100epochs, nnUNetTrainerGINIPA_250epochs, nnUNetTrainerGINIPA_500epochs,
    nnUNetTrainer_CPUDemo, nnUNetTrainerGIN_CPUDemo, nnUNetTrainer_CPULong, nnUNetTrainerGIN_CPULong,
    nnUNetTrainerGINIPA_CPULong, nnUNetTrainerGINIPA_CPUDemo, nnUNetTrainerGIN_AlwaysIntervene,
    nnUNetTrainerGINIPA_AlwaysIntervene, nnUNetTrainer_CPU2000steps, nnUNetTrainer_CPU4000steps,
    nnUNetTrainer_CPU5000steps,
)
