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


class CPULongSchedule:
    """40 epochs of 25 iterations (1000 steps), 5 validation iterations: the schedule of the ``*_CPULong``
    trainers of the robustness benchmark (``benchmarks/lodo_benchmark.py``), long enough on the synthetic 2D
    sets for held-out Dice to stop moving (measured there; the 300 steps of ``CPUDemo`` are not)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 40
        self.num_iterations_per_epoch = 25
        self.num_val_iterations_per_epoch = 5


class CPU2000StepsSchedule:
    """80 epochs of 25 iterations (2000 steps), 5 validation iterations: the robustness benchmark's budget
    for trainers whose every sample is a counterfactual view. At 1000 steps such a trainer had not yet
    learned the shape it is pushed towards (seed 0: in-domain 0.73 -> 0.88, cue-broken frames 0.47 -> 0.65
    from 1000 to 2000 steps; ``benchmarks/RESULTS_cpu.md``), so the benchmark gives every trainer 2000."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 80
        self.num_iterations_per_epoch = 25
        self.num_val_iterations_per_epoch = 5
