"""Counterfactual training: dictionary confounders set by do(z) on the training batch (image level).

:class:`CounterfactualMixin` builds a :class:`~nnunet_causal.confounders.counterfactual.CounterfactualSampler`
from the dataset's confounder dictionary (every line with a simulator) and, per training step, replaces a
random ``counterfactual_probability`` of the samples by views in which 1..``counterfactual_max_entries``
drawn confounders are set independently of the anatomy; labels are the factual ones. It runs on the
training device after nnU-Net's spatial and intensity augmentation (the batch as the network would see it),
so label-aware simulators read the augmented label map. A counterfactual view sets one confounder of each
of a few randomly included kinds (groups) of the dictionary. It combines with any trainer:
``class X(CounterfactualMixin, nnUNetTrainerText)``; :attr:`last_counterfactual` keeps the drawn
descriptions of the last batch (the causal trainer's known style).

Defaults (our choice; the seeds give none): 70 % of the samples become counterfactual (30 % stay factual,
which kept in-domain accuracy for GIN/IPA on short schedules), each kind is included with probability 0.5,
at most 4 per view. Entries of a shipped family dictionary that cannot run on the data (slice thickness on
2D CT, RGB-only effects on grey images) are skipped and logged; in a user's own dictionary they are an error.
"""
from __future__ import annotations

from typing import Optional

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_causal.confounders.counterfactual import CounterfactualBatch, CounterfactualSampler
from nnunet_causal.confounders.dictionary import confounder_entries_for_dataset
from nnunet_causal.confounders.frames import IntensityFrame


def label_map_for_simulators(target, label_manager) -> torch.Tensor:
    """(B, 1, *spatial) long label map of the full-resolution target; ignore-label voxels become 0; region
    targets (B, R, ...) become the index of their last active region (1..R)."""
    t = target[0] if isinstance(target, (list, tuple)) else target
    if label_manager.has_regions:
        r = t.shape[1]
        idx = torch.arange(1, r + 1, device=t.device).view(1, r, *([1] * (t.ndim - 2)))
        return ((t > 0).long() * idx).amax(1, keepdim=True)
    seg = t.long()
    if label_manager.has_ignore_label:
        seg = torch.where(seg == label_manager.ignore_label, torch.zeros_like(seg), seg)
    return seg


class CounterfactualMixin:
    counterfactual_probability = 0.7
    counterfactual_group_probability = 0.5
    counterfactual_label_aware_probability = None   # None: as every other kind
    counterfactual_max_entries = 4
    counterfactual_weight_exponent = 1.0          # draw within a kind ~ weight ** exponent (dictionary @weight)
    last_counterfactual: Optional[CounterfactualBatch] = None

    def counterfactual_sampler(self) -> CounterfactualSampler:
        sampler = getattr(self, "_cf_sampler", None)
        if sampler is None:
            entries = confounder_entries_for_dataset(self.dataset_json)
            frame = IntensityFrame.from_plans(self.plans_manager.plans, self.configuration_name)
            ndim = len(self.configuration_manager.patch_size)
            shipped = not self.dataset_json.get("confounder_dictionary")
            sampler = CounterfactualSampler(entries, frame, ndim, self.num_input_channels,
                                            self.counterfactual_probability, self.counterfactual_group_probability,
                                            self.counterfactual_max_entries, skip_unsupported=shipped,
                                            label_aware_probability=self.counterfactual_label_aware_probability,
                                            weight_exponent=self.counterfactual_weight_exponent)
            self._cf_sampler = sampler
            self.print_to_log_file(
                f"counterfactual views: {len(sampler.active)} of {len(entries)} dictionary entries have a simulator "
                f"({entries[0].source}; {len(sampler.groups)} kinds); per sample p={self.counterfactual_probability}, "
                f"each kind p={self.counterfactual_group_probability}, up to {self.counterfactual_max_entries} "
                f"kinds; within a kind ~ weight ** {self.counterfactual_weight_exponent}; frame {frame.kind}")
            if sampler.skipped:
                self.print_to_log_file("counterfactual views: skipped (cannot run on this data): "
                                       + "; ".join(sampler.skipped))
            text_only = [e.description for e in entries if not e.simulators]
            if text_only:
                self.print_to_log_file(f"counterfactual views: text-only entries (features only): {text_only}")
        return sampler

    def on_train_start(self):
        super().on_train_start()
        self.counterfactual_sampler()  # dictionary / dimensionality errors before the first step

    def counterfactual(self, batch: dict) -> dict:
        """The batch with its data replaced by counterfactual views (on the device)."""
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        t0 = (target[0] if isinstance(target, list) else target).to(self.device, non_blocking=True)
        seg = label_map_for_simulators(t0, self.label_manager)
        with torch.no_grad():
            cf = self.counterfactual_sampler()(data, seg)
        self.last_counterfactual = cf
        return {**batch, "data": cf.data}

    def train_step(self, batch: dict) -> dict:
        return super().train_step(self.counterfactual(batch))


class nnUNetTrainerCounterfactual(CounterfactualMixin, nnUNetTrainer):
    """Stock nnU-Net network and loss; training batches get dictionary do-interventions."""
