"""Trainer variants of the cue experiments of run R4 (benchmarks/RESULTS_cpu.md); dictionaries in the folder above."""
from pathlib import Path

import torch

from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import nnUNetTrainerCounterfactual
from nnunet_causal.training.schedules import CPULongSchedule


class ExpCF_LA(CPULongSchedule, nnUNetTrainerCounterfactual):
    counterfactual_label_aware_probability = 0.9


class ExpCF_J(CPULongSchedule, nnUNetTrainerCounterfactual):
    counterfactual_label_aware_probability = 0.9

    def counterfactual_sampler(self):
        if getattr(self, "_cf_sampler", None) is None:
            old = self.dataset_json.get("confounder_dictionary")
            self.dataset_json["confounder_dictionary"] = str(Path(__file__).parent.parent / "joint_added.txt")
            try:
                return super().counterfactual_sampler()
            finally:
                if old is None:
                    self.dataset_json.pop("confounder_dictionary")
        return self._cf_sampler


class ExpCF_J3(CPULongSchedule, nnUNetTrainerCounterfactual):
    counterfactual_label_aware_probability = 0.9


class ExpCF_J5(CPULongSchedule, nnUNetTrainerCounterfactual):
    counterfactual_probability = 1.0
    counterfactual_label_aware_probability = 0.6

    def counterfactual_sampler(self):
        if getattr(self, "_cf_sampler", None) is None:
            self.dataset_json["confounder_dictionary"] = str(Path(__file__).parent.parent / "joint_only_label_aware.txt")
            s = nnUNetTrainerCounterfactual.counterfactual_sampler(self)
            self.dataset_json.pop("confounder_dictionary")
            return s
        return self._cf_sampler


from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText


class ExpCausal_J5(CPULongSchedule, nnUNetTrainerCausalText):
    counterfactual_probability = 1.0
    counterfactual_label_aware_probability = 0.6

    def counterfactual_sampler(self):
        if getattr(self, "_cf_sampler", None) is None:
            self.dataset_json["confounder_dictionary"] = str(Path(__file__).parent.parent / "joint_only_label_aware.txt")
            s = nnUNetTrainerCausalText.counterfactual_sampler(self)
            self.dataset_json.pop("confounder_dictionary")
            return s
        return self._cf_sampler


class _Steps2000:
    """80 epochs x 25 iterations (2000 steps): twice the benchmark's budget."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 80


class ExpCausal_J5_2k(_Steps2000, ExpCausal_J5):
    pass


class ExpCausal_J35_2k(_Steps2000, ExpCausal_J5):
    counterfactual_label_aware_probability = 0.35
