"""Working spaces of the simulators, mapped from and back to nnU-Net's normalised intensities.

nnU-Net normalises every image before training (plans ``normalization_schemes``); a confounder acts on the
image *before* that normalisation, and at test time nnU-Net normalises the shifted image again. So:

* ``rgb`` / ``unit`` (z-scored channels: RGB endoscopy, MRI): per sample and channel, min-max to [0, 1];
  after the simulator the result gets the patch's original mean and std back per channel, as nnU-Net's
  z-scoring would give the changed image (a patch is not the whole image, so the patch's own statistics
  stand in for the image's; only the simulator's non-affine part survives, as it does at test time).
* ``ct`` (``CTNormalization``): HU = x * std + mean with the dataset's foreground statistics from the plans;
  back: clip to the plans' 0.5 / 99.5 percentiles and (HU - mean) / std (nnU-Net's own formula), so an HU
  offset is *not* undone, as it is not at test time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import torch

from nnunet_causal.confounders.base import per_sample_stat
from nnunet_causal.errors import DatasetError


@dataclass(frozen=True)
class ChannelFrame:
    kind: str                       # "unit" (min-max / re-z-score) or "ct"
    mean: float = 0.0
    std: float = 1.0
    lower: float = -1024.0
    upper: float = 3071.0


class IntensityFrame:
    """Per-channel mapping between nnU-Net's normalised values and the simulators' working space."""

    def __init__(self, channels: Sequence[ChannelFrame]):
        self.channels: List[ChannelFrame] = list(channels)

    @classmethod
    def from_plans(cls, plans: dict, configuration: str) -> "IntensityFrame":
        """From a plans dict: ``CTNormalization`` channels use the dataset's HU statistics, every other scheme
        the min-max / re-z-score frame."""
        schemes = plans["configurations"][configuration]["normalization_schemes"]
        props = plans.get("foreground_intensity_properties_per_channel", {})
        out = []
        for i, scheme in enumerate(schemes):
            if scheme == "CTNormalization":
                p = props.get(str(i))
                if p is None:
                    raise DatasetError(f"plans lack foreground_intensity_properties_per_channel for CT channel {i}")
                out.append(ChannelFrame("ct", float(p["mean"]), float(p["std"]), float(p["percentile_00_5"]),
                                        float(p["percentile_99_5"])))
            else:
                out.append(ChannelFrame("unit"))
        return cls(out)

    @property
    def kind(self) -> str:
        kinds = {c.kind for c in self.channels}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def to_working(self, x: torch.Tensor):
        """(B, C, *spatial) normalised -> working space."""
        if len(self.channels) != x.shape[1]:
            raise DatasetError(f"intensity frame has {len(self.channels)} channel(s), the batch {x.shape[1]}")
        lo, hi = per_sample_stat(x, "min"), per_sample_stat(x, "max")
        w = torch.empty_like(x)
        for c, ch in enumerate(self.channels):
            if ch.kind == "ct":
                w[:, c] = x[:, c] * ch.std + ch.mean
            else:
                w[:, c] = (x[:, c] - lo[:, c]) / (hi[:, c] - lo[:, c]).clamp_min(1e-6)
        return w

    def from_working(self, w: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        """Working space -> normalised values, as nnU-Net would normalise the changed image; ``original`` is
        the normalised batch before the change."""
        out = torch.empty_like(w)
        for c, ch in enumerate(self.channels):
            if ch.kind == "ct":
                out[:, c] = (w[:, c].clamp(ch.lower, ch.upper) - ch.mean) / max(ch.std, 1e-8)
            else:
                v = w[:, c]
                dims = tuple(range(1, v.ndim))
                mu, sd = v.mean(dims, keepdim=True), v.std(dims, keepdim=True)
                o = original[:, c]
                mo, so = o.mean(dims, keepdim=True), o.std(dims, keepdim=True)
                z = (v - mu) / sd.clamp_min(1e-6) * so + mo
                out[:, c] = torch.where(sd > 1e-6, z, o)  # a constant channel stays as it was
        return out
