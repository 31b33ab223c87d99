"""Training-length mixins shared by all trainer families."""
import torch


class CPUDemoSchedule:
    """12 epochs of 25 iterations, 5 validation iterations: the schedule of every ``*_CPUDemo`` trainer
    (demo and benchmarks on a laptop CPU). Put it first in the bases: ``class X(CPUDemoSchedule, Trainer)``."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 12
        self.num_iterations_per_epoch = 25
        self.num_val_iterations_per_epoch = 5
