"""Epoch variants of nnUNetTrainerCounterfactual (nnU-Net naming) and the CPU schedules."""
import torch

from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import nnUNetTrainerCounterfactual
from nnunet_causal.training.schedules import CPUDemoSchedule, CPU2000StepsSchedule, CPULongSchedule


def _epochs(n: int):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        nnUNetTrainerCounterfactual.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = n
    return __init__


class nnUNetTrainerCounterfactual_1epoch(nnUNetTrainerCounterfactual):
    __init__ = _epochs(1)


class nnUNetTrainerCounterfactual_5epochs(nnUNetTrainerCounterfactual):
    __init__ = _epochs(5)


class nnUNetTrainerCounterfactual_10epochs(nnUNetTrainerCounterfactual):
    __init__ = _epochs(10)


class nnUNetTrainerCounterfactual_20epochs(nnUNetTrainerCounterfactual):
    __init__ = _epochs(20)


class nnUNetTrainerCounterfactual_50epochs(nnUNetTrainerCounterfactual):
    __init__ = _epochs(50)


class nnUNetTrainerCounterfactual_100epochs(nnUNetTrainerCounterfactual):
    __init__ = _epochs(100)


class nnUNetTrainerCounterfactual_250epochs(nnUNetTrainerCounterfactual):
    __init__ = _epochs(250)


class nnUNetTrainerCounterfactual_500epochs(nnUNetTrainerCounterfactual):
    __init__ = _epochs(500)


class nnUNetTrainerCounterfactual_CPUDemo(CPUDemoSchedule, nnUNetTrainerCounterfactual):
    pass


class nnUNetTrainerCounterfactual_CPULong(CPULongSchedule, nnUNetTrainerCounterfactual):
    pass


class nnUNetTrainerCounterfactual_CPU2000steps(CPU2000StepsSchedule, nnUNetTrainerCounterfactual):
    pass
