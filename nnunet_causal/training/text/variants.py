"""nnUNetTrainerText variants, each changing one thing and named by it (as nnU-Net's variants). Training
lengths (``_5epochs``, ``_CPUDemo``...) are not written here: the catalogue
(:mod:`nnunet_causal.training.catalogue`) applies every schedule to every class."""
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText


class nnUNetTrainerText_CrossAttentionConnector(nnUNetTrainerText):
    """The seed-002 ablation: image-conditioned cross-attention connector instead of the MLP."""
    text_connector = "cross_attention"


class nnUNetTrainerText_NoPresence(nnUNetTrainerText):
    """The presence ablation: no presence head, no presence loss, no calibration (``present: null``)."""
    presence_hidden_dim = None
