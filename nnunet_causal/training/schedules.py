"""Training lengths, defined once: one table of schedules, one mixin class per row (nnU-Net's
``variants/training_length`` naming). :mod:`nnunet_causal.training.catalogue` applies every row to every
trainer of the catalogue: ``<Trainer>_<suffix>`` = ``(schedule mixin, Trainer)``.

A row sets nnU-Net's ``num_epochs`` and, where given, ``num_iterations_per_epoch`` and
``num_val_iterations_per_epoch`` after the trainer's own ``__init__``. The ``CPU*`` rows are the short
schedules of the demo and the CPU benchmarks (``benchmarks/RESULTS_cpu.md`` measured each budget); the
``Xepoch(s)`` rows keep nnU-Net's 250 iterations per epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Optional

import torch


@dataclass(frozen=True)
class Schedule:
    suffix: str                      # the class-name suffix, without the underscore
    epochs: int
    iterations: Optional[int] = None      # per epoch; None: nnU-Net's 250
    val_iterations: Optional[int] = None  # per epoch; None: nnU-Net's 50
    note: str = ""

    @property
    def steps(self) -> int:
        return self.epochs * (self.iterations or 250)

    def describe(self) -> str:
        it = f" x {self.iterations}" if self.iterations else " x 250"
        return f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}{it} iterations ({self.steps} steps)" + (f": {self.note}" if self.note else "")


SCHEDULES = (
    Schedule("1epoch", 1), Schedule("2epochs", 2), Schedule("5epochs", 5), Schedule("10epochs", 10),
    Schedule("20epochs", 20), Schedule("50epochs", 50), Schedule("100epochs", 100), Schedule("250epochs", 250),
    Schedule("500epochs", 500),
    Schedule("CPUDemo", 12, 25, 5, "the demo on a laptop CPU"),
    Schedule("CPULong", 40, 25, 5, "stock and text held-out Dice stop moving here on the CPU benchmark"),
    Schedule("CPU1250steps", 50, 25, 5, "nnU-Net's 5 epochs in CPU-benchmark epochs"),
    Schedule("CPU2000steps", 80, 25, 5, "the CPU robustness benchmark's default budget"),
    Schedule("CPU4000steps", 160, 25, 5),
    Schedule("CPU5000steps", 200, 25, 5, "the recipe's held-out Dice is near its plateau here on the CPU "
                                         "benchmark"),
    Schedule("CPU8000steps", 320, 25, 5, "twice the cross-modality benchmark's budget"),
)


class TrainingLength:
    """Mixin: sets nnU-Net's epoch / iteration counts from the class's schedule after the trainer's own
    ``__init__``. Put it first in the bases: ``class X(TrainingLength, Trainer)``."""
    schedule: Optional[Schedule] = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        s = self.schedule
        if s is not None:
            self.num_epochs = s.epochs
            if s.iterations is not None:
                self.num_iterations_per_epoch = s.iterations
            if s.val_iterations is not None:
                self.num_val_iterations_per_epoch = s.val_iterations


def _mixin(s: Schedule) -> type:
    return type(f"{s.suffix}Schedule", (TrainingLength,), {"schedule": s, "__module__": __name__,
                                                           "__doc__": f"Training length: {s.describe()}."})


#: suffix -> its mixin class
SCHEDULE_MIXINS: Mapping[str, type] = MappingProxyType({s.suffix: _mixin(s) for s in SCHEDULES})

# the mixins under the names benchmark scripts import
CPUDemoSchedule = SCHEDULE_MIXINS["CPUDemo"]
CPULongSchedule = SCHEDULE_MIXINS["CPULong"]
CPU2000StepsSchedule = SCHEDULE_MIXINS["CPU2000steps"]
CPU4000StepsSchedule = SCHEDULE_MIXINS["CPU4000steps"]
CPU5000StepsSchedule = SCHEDULE_MIXINS["CPU5000steps"]
