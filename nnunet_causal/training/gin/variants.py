"""GIN / GIN+IPA variants, one change each. Training lengths (``_5epochs``, ``_CPUDemo``...) are not written
here: the catalogue (:mod:`nnunet_causal.training.catalogue`) applies every schedule to every class, stock
nnU-Net's ``nnUNetTrainer`` included."""
from nnunet_causal.training.gin.nnUNetTrainerGIN import nnUNetTrainerGIN, nnUNetTrainerGINIPA


# ---- intervention probability 1.0: every training sample becomes a GIN / IPA view (the paper's setting)
class nnUNetTrainerGIN_AlwaysIntervene(nnUNetTrainerGIN):
    """GIN on every training sample (``intervention_probability = 1.0``, Ouyang et al.'s setting)."""
    intervention_probability = 1.0


class nnUNetTrainerGINIPA_AlwaysIntervene(nnUNetTrainerGINIPA):
    """GIN and IPA views of every training sample (``intervention_probability = 1.0``)."""
    intervention_probability = 1.0
