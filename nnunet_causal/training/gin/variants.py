"""Epoch variants of the GIN trainers (nnU-Net naming) and a short CPU schedule for demos/benchmarks."""
import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_causal.training.gin.nnUNetTrainerGIN import nnUNetTrainerGIN, nnUNetTrainerGINIPA
from nnunet_causal.training.schedules import (CPUDemoSchedule, CPU2000StepsSchedule, CPU4000StepsSchedule,
                                              CPU5000StepsSchedule, CPULongSchedule)


class nnUNetTrainerGIN_1epoch(nnUNetTrainerGIN):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1


class nnUNetTrainerGIN_2epochs(nnUNetTrainerGIN):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2


class nnUNetTrainerGIN_5epochs(nnUNetTrainerGIN):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 5


class nnUNetTrainerGIN_10epochs(nnUNetTrainerGIN):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 10


class nnUNetTrainerGIN_20epochs(nnUNetTrainerGIN):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 20


class nnUNetTrainerGIN_50epochs(nnUNetTrainerGIN):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 50


class nnUNetTrainerGIN_100epochs(nnUNetTrainerGIN):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 100


class nnUNetTrainerGIN_250epochs(nnUNetTrainerGIN):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 250


class nnUNetTrainerGIN_500epochs(nnUNetTrainerGIN):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 500


class nnUNetTrainerGINIPA_1epoch(nnUNetTrainerGINIPA):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1


class nnUNetTrainerGINIPA_2epochs(nnUNetTrainerGINIPA):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2


class nnUNetTrainerGINIPA_5epochs(nnUNetTrainerGINIPA):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 5


class nnUNetTrainerGINIPA_10epochs(nnUNetTrainerGINIPA):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 10


class nnUNetTrainerGINIPA_20epochs(nnUNetTrainerGINIPA):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 20


class nnUNetTrainerGINIPA_50epochs(nnUNetTrainerGINIPA):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 50


class nnUNetTrainerGINIPA_100epochs(nnUNetTrainerGINIPA):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 100


class nnUNetTrainerGINIPA_250epochs(nnUNetTrainerGINIPA):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 250


class nnUNetTrainerGINIPA_500epochs(nnUNetTrainerGINIPA):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 500


# ---------------------------------------------------------------- short CPU schedule (demo, benchmarks)
class nnUNetTrainer_CPUDemo(CPUDemoSchedule, nnUNetTrainer):
    """Stock nnU-Net on the CPU-demo schedule (the baseline of the benchmarks)."""


class nnUNetTrainerGIN_CPUDemo(CPUDemoSchedule, nnUNetTrainerGIN):
    pass


class nnUNetTrainer_CPULong(CPULongSchedule, nnUNetTrainer):
    """Stock nnU-Net on the robustness benchmark's CPU schedule (1000 steps)."""


class nnUNetTrainerGIN_CPULong(CPULongSchedule, nnUNetTrainerGIN):
    pass


class nnUNetTrainerGINIPA_CPULong(CPULongSchedule, nnUNetTrainerGINIPA):
    pass


class nnUNetTrainerGINIPA_CPUDemo(CPUDemoSchedule, nnUNetTrainerGINIPA):
    pass


# ---- intervention probability 1.0: every training sample becomes a GIN / IPA view (the paper's setting)
class nnUNetTrainerGIN_AlwaysIntervene(nnUNetTrainerGIN):
    """GIN on every training sample (``intervention_probability = 1.0``, Ouyang et al.'s setting)."""
    intervention_probability = 1.0


class nnUNetTrainerGINIPA_AlwaysIntervene(nnUNetTrainerGINIPA):
    """GIN and IPA views of every training sample (``intervention_probability = 1.0``)."""
    intervention_probability = 1.0


class nnUNetTrainer_CPU2000steps(CPU2000StepsSchedule, nnUNetTrainer):
    pass


class nnUNetTrainer_CPU4000steps(CPU4000StepsSchedule, nnUNetTrainer):
    """Stock nnU-Net for 4000 steps: the reference for the 4000-step counterfactual trainers."""


class nnUNetTrainer_CPU5000steps(CPU5000StepsSchedule, nnUNetTrainer):
    """Stock nnU-Net for 5000 steps: the same-budget reference for the 5000-step cue-breaking trainer."""
