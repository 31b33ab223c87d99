"""Training-length mixins shared by all trainer families."""
import torch


class _FixedSchedule:
    """Sets nnU-Net's epoch / iteration counts from the class attributes after the trainer's own __init__."""
    epochs, iterations, val_iterations = 1000, 250, 50   # nnU-Net's defaults; subclasses set their own

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.epochs
        self.num_iterations_per_epoch = self.iterations
        self.num_val_iterations_per_epoch = self.val_iterations


class CPUDemoSchedule(_FixedSchedule):
    """12 epochs of 25 iterations, 5 validation iterations: the schedule of every ``*_CPUDemo`` trainer
    (demo and benchmarks on a laptop CPU). Put it first in the bases: ``class X(CPUDemoSchedule, Trainer)``."""

    epochs, iterations, val_iterations = 12, 25, 5


class CPULongSchedule(_FixedSchedule):
    """40 epochs of 25 iterations (1000 steps), 5 validation iterations: the schedule of the ``*_CPULong``
    trainers of the robustness benchmark (``benchmarks/lodo_benchmark.py``), long enough on the synthetic 2D
    sets for held-out Dice to stop moving (measured there; the 300 steps of ``CPUDemo`` are not)."""

    epochs, iterations, val_iterations = 40, 25, 5


class CPU2000StepsSchedule(_FixedSchedule):
    """80 epochs of 25 iterations (2000 steps), 5 validation iterations: the robustness benchmark's budget
    for trainers whose every sample is a counterfactual view. At 1000 steps such a trainer had not yet
    learned the shape it is pushed towards (seed 0: in-domain 0.73 -> 0.88, cue-broken frames 0.47 -> 0.65
    from 1000 to 2000 steps; ``benchmarks/RESULTS_cpu.md``); the benchmark's default for every trainer."""

    epochs, iterations, val_iterations = 80, 25, 5


class CPU4000StepsSchedule(_FixedSchedule):
    """160 epochs of 25 iterations (4000 steps), 5 validation iterations: twice the robustness benchmark's
    budget, to measure whether the every-sample-counterfactual trainers were still learning shape at 2000."""

    epochs, iterations, val_iterations = 160, 25, 5


class CPU5000StepsSchedule(_FixedSchedule):
    """200 epochs of 25 iterations (5000 steps), 5 validation iterations: the cue-breaking trainer's held-out
    learning curve was still rising at 4000 steps; at 5000 it is near its plateau, its in-domain Dice 1.8
    points below stock's at 1000 steps (3 seeds; ``benchmarks/RESULTS_cpu.md``): the robustness benchmark's
    budget for that trainer."""

    epochs, iterations, val_iterations = 200, 25, 5
