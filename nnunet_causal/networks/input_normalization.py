"""Input normalisations applied by the network itself, so that training and every predictor (stock
``nnUNetv2_predict`` included) see the same input space.

``rank``: every sample and channel is replaced by the rank of each voxel's intensity among the sample's
voxels (ties share their mean rank), mapped to a uniform distribution of mean 0 and standard deviation 1 --
histogram equalisation of the network input. Any monotone change of intensities (a scanner's calibration,
nnU-Net's z-score against a CT window, a modality whose air fills a third of the image and squeezes the organs
into a tenth of the range) leaves it unchanged; what is left of a modality change is the order of the tissues,
which the modality views of the confounder dictionary vary. Written here: torch has no rank transform and
kornia's histogram equalisation works on 8-bit images.
"""
from __future__ import annotations

import math

import torch
from torch import nn

INPUT_NORMALIZATIONS = ("none", "rank")


def rank_normalize(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial)`` -> same shape: per sample and channel, mean-rank of each voxel scaled to a
    uniform distribution on ``[-sqrt(3), sqrt(3)]`` (a constant sample maps to 0)."""
    b, c = x.shape[:2]
    flat = x.detach().reshape(b * c, -1)
    flat = flat if flat.dtype == torch.float64 else flat.float()
    n = flat.shape[1]
    ordered, _ = flat.sort(dim=1)
    first = torch.searchsorted(ordered, flat, right=False)
    last = torch.searchsorted(ordered, flat, right=True) - 1
    rank = (first + last).to(flat.dtype) / 2 / max(n - 1, 1)
    return ((rank - 0.5) * 2 * math.sqrt(3)).reshape(x.shape).to(x.dtype)


class InputNormalization(nn.Module):
    """``mode`` one of :data:`INPUT_NORMALIZATIONS`; ``none`` is the identity."""

    def __init__(self, mode: str = "none"):
        super().__init__()
        if mode not in INPUT_NORMALIZATIONS:
            raise ValueError(f"unknown input normalisation {mode!r}; known: {', '.join(INPUT_NORMALIZATIONS)}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rank_normalize(x) if self.mode == "rank" else x

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
