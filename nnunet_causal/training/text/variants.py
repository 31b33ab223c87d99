"""nnUNetTrainerText variants, each changing one thing and named by it (as nnU-Net's
``training_length/nnUNetTrainer_Xepochs.py``)."""
import torch

from nnunet_causal.training.schedules import (CPUDemoSchedule, CPU2000StepsSchedule, CPU5000StepsSchedule,
                                              CPULongSchedule)
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText, nnUNetTrainerTextPresence


class nnUNetTrainerText_1epoch(nnUNetTrainerText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1


class nnUNetTrainerText_2epochs(nnUNetTrainerText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2


class nnUNetTrainerText_5epochs(nnUNetTrainerText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 5


class nnUNetTrainerText_10epochs(nnUNetTrainerText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 10


class nnUNetTrainerText_20epochs(nnUNetTrainerText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 20


class nnUNetTrainerText_50epochs(nnUNetTrainerText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 50


class nnUNetTrainerText_100epochs(nnUNetTrainerText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 100


class nnUNetTrainerText_250epochs(nnUNetTrainerText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 250


class nnUNetTrainerText_500epochs(nnUNetTrainerText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 500


class nnUNetTrainerText_CrossAttentionConnector(nnUNetTrainerText):
    """The seed-002 ablation: image-conditioned cross-attention connector instead of the MLP."""
    text_connector = "cross_attention"



class nnUNetTrainerText_NoPresence(nnUNetTrainerText):
    """The presence ablation: no presence head, no presence loss, no calibration (``present: null``)."""
    presence_hidden_dim = None


class nnUNetTrainerText_CPUDemo(CPUDemoSchedule, nnUNetTrainerText):
    """Short CPU schedule (see :class:`~nnunet_causal.training.schedules.CPUDemoSchedule`)."""


class nnUNetTrainerText_CPULong(CPULongSchedule, nnUNetTrainerText):
    """The robustness benchmark's CPU schedule (see :class:`~nnunet_causal.training.schedules.CPULongSchedule`)."""


class nnUNetTrainerText_CPU2000steps(CPU2000StepsSchedule, nnUNetTrainerText):
    pass


class nnUNetTrainerText_CPU5000steps(CPU5000StepsSchedule, nnUNetTrainerText):
    """The text trainer at the cue-breaking trainers' budget (the robustness benchmark's equal-budget row)."""


class nnUNetTrainerTextPresence_CPUDemo(CPUDemoSchedule, nnUNetTrainerTextPresence):
    """Deprecated name kept for its model folders: ``nnUNetTrainerText_CPUDemo`` (presence is the default)."""


class nnUNetTrainerTextPresence_CPULong(CPULongSchedule, nnUNetTrainerTextPresence):
    """Deprecated name kept for its model folders: ``nnUNetTrainerText_CPULong`` (presence is the default)."""
