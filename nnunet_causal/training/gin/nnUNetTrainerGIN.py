"""Trainers with image-level causal interventions on the plans' own network (no text).

* :class:`GINMixin` -- training samples become GIN views (random shallow-network appearance change); by
  default half of them, chosen at random per sample (``intervention_probability``).
* :class:`GINIPAMixin` -- half of each planned batch is seen as a GIN view and an IPA view (so the network
  gets nnU-Net's planned batch size, not twice it; intervention again for half of those samples, the
  others stay clean in both views); segmentation loss on both plus
  the symmetric-KL consistency between their predictions (Ouyang et al., TMI 2022; see
  :mod:`nnunet_causal.augmentation.gin` for the exact form and defaults).

Where it runs: ``gin_location = "device"`` (default) augments the collated batch on the training device
with one grouped convolution per layer; ``"workers"`` appends :class:`GINTransform` to nnU-Net's CPU
augmentation pipeline instead. ``benchmarks/bench_gin_throughput.py`` measures both; on a GPU the
device variant costs a few milliseconds per batch and leaves the CPU workers untouched, which is why it is
the default. The mixins combine with any trainer (``class X(GINMixin, nnUNetTrainerText)``).
"""
from __future__ import annotations

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_causal.augmentation.gin import GINTransform, check_patch, gin, ipa, mix_with_original, symmetric_kl
from nnunet_causal.training.cross_modality_check import check_plans_at_training_start
from nnunet_causal.training.steps import (device_context, highest_resolution, nonfinite_flags, optimizer_step,
                                          raise_on_nonfinite, split_batch, to_device)


def gin_insert_position(transforms) -> int:
    """Where GIN goes in nnU-Net's training pipeline: after the spatial and intensity augmentations, i.e.
    before mirroring (or, without it, before the label clean-up and target conversions at the end)."""
    names = [type(t).__name__ for t in transforms]
    for anchor in ("MirrorTransform", "MaskImageTransform", "RemoveLabelTansform"):
        if anchor in names:
            return names.index(anchor)
    return len(transforms)


class GINMixin:
    gin_location = "device"
    gin_layers = 4
    #: fraction of training samples that receive the intervention. 0.5 (our default) keeps half of every batch
    #: clean. On the synthetic leave-one-site-out benchmark every sample intervened (1.0, the paper's setting,
    #: ``*_AlwaysIntervene``) trailed stock in-domain by 5-20 Dice points on a short schedule; with 0.5 the
    #: in-domain mean was at or above stock (benchmarks/RESULTS_cpu.md)
    intervention_probability = 0.5

    def initialize(self):
        check_plans_at_training_start(self)  # a cross-modality dataset must not be planned with the CT window
        super().initialize()

    def get_training_transforms(self, *args, **kwargs):
        transforms = super().get_training_transforms(*args, **kwargs)
        if self.gin_location == "workers":
            transforms.transforms.insert(gin_insert_position(transforms.transforms),
                                         GINTransform(p=self.intervention_probability,
                                                      use_ipa=getattr(self, "ipa_in_workers", False),
                                                      num_layers=self.gin_layers))
        return transforms

    def intervene(self, batch: dict) -> dict:
        """The batch with its images replaced by a GIN (device) view; a tiny patch is an error."""
        data = batch["data"].to(self.device, non_blocking=True)
        check_patch(data)
        if self.gin_location == "device":
            with torch.no_grad():
                data = mix_with_original(gin(data, num_layers=self.gin_layers), data, self.intervention_probability)
        return {**batch, "data": data}

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's step on the intervened batch; NaN/inf intensities stop training (every step, read after
        the step's own sync: :func:`~nnunet_causal.training.steps.raise_on_nonfinite`)."""
        data = batch["data"].to(self.device, non_blocking=True)
        flags = nonfinite_flags(data)
        out = super().train_step(self.intervene({**batch, "data": data}))
        raise_on_nonfinite(flags, batch.get("keys"))
        return out


class GINIPAMixin(GINMixin):
    consistency_weight = 1.0
    ipa_in_workers = True

    def train_step(self, batch: dict) -> dict:
        if self.gin_location == "workers":
            return super().train_step(batch)  # workers already produce IPA views; no paired consistency
        data, target = to_device(batch, self.device)
        check_patch(data)
        flags = nonfinite_flags(data)
        # the GIN and IPA views of a sample are paired inside the planned batch: half of the samples, two views
        # each, so the network sees nnU-Net's VRAM-planned batch size (not twice it)
        half = max(1, data.shape[0] // 2)
        data = data[:half]
        target = [t[:half] for t in target] if isinstance(target, list) else target[:half]
        with torch.no_grad():
            p = self.intervention_probability
            views = torch.cat([mix_with_original(gin(data, num_layers=self.gin_layers), data, p),
                               mix_with_original(ipa(data, num_layers=self.gin_layers), data, p)])
        n = data.shape[0]
        self.optimizer.zero_grad(set_to_none=True)
        with device_context(self.device):
            output = self.network(views)
            out_gin, out_ipa = split_batch(output, n)
            seg = 0.5 * (self.loss(out_gin, target) + self.loss(out_ipa, target))
            consistency = symmetric_kl(highest_resolution(out_gin).float(), highest_resolution(out_ipa).float(),
                                       sigmoid=self.label_manager.has_regions)
            loss = seg + self.consistency_weight * consistency
        optimizer_step(self, loss)
        out = {"loss": loss.detach().cpu().numpy()}
        raise_on_nonfinite(flags, batch.get("keys"))
        return out


class nnUNetTrainerGIN(GINMixin, nnUNetTrainer):
    """Stock nnU-Net + GIN appearance randomisation of every training batch."""


class nnUNetTrainerGINIPA(GINIPAMixin, nnUNetTrainer):
    """Stock nnU-Net + GIN and IPA views with the consistency loss."""
