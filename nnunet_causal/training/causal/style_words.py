"""Style words measured on a training view, for the LAD style descriptions (seed 000 describes each
image's acquisition style in words; we measure three of them on the patch the network actually sees).

Three statistics per sample of a normalised patch ``(B, C, *spatial)``:

* noise: 1.4826 * MAD of the Laplacian / the Laplacian's noise gain (z-score units; < 0.15 low, > 0.4 high);
* contrast: 99th - 1st percentile (z units; < 2.5 low, > 4.5 high);
* sharpness: Laplacian std / noise (< 1.5 blurred).

The thresholds are coarse on purpose: 3 x 3 x 2 = 18 descriptions in all (:data:`MEASURED_WORDS`), so the
trainer embeds each once. Two forms of the same rule: :func:`patch_style_words` (readable strings; it
copies the statistics to the host) and :func:`measured_word_index` (an index into :data:`MEASURED_WORDS`
computed on the tensor's device, no host synchronisation, for the training step). Both map NaN statistics
to the middle words (the comparisons of the readable form are all false for NaN); the tests check that
the two agree, at the thresholds included.
"""
from __future__ import annotations

import itertools
from typing import List, Tuple

import torch
from torch.nn import functional as F

NOISE_LOW, NOISE_HIGH = 0.15, 0.4
CONTRAST_LOW, CONTRAST_HIGH = 2.5, 4.5
BLURRED_BELOW = 1.5

NOISE_WORDS = ("low noise", "moderate noise", "high noise")
CONTRAST_WORDS = ("low contrast", "moderate contrast", "high contrast")
SHARPNESS_WORDS = ("blurred", "sharp")
#: every measured description; index = (noise * 3 + contrast) * 2 + sharpness
MEASURED_WORDS: Tuple[str, ...] = tuple(", ".join(w) for w in
                                        itertools.product(NOISE_WORDS, CONTRAST_WORDS, SHARPNESS_WORDS))


def patch_statistics(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(noise, contrast, sharpness)``, each ``(B,)`` float32 on ``x``'s device (see the module docstring)."""
    ndim = x.ndim - 2
    b, c = x.shape[:2]
    k = torch.zeros((1, 1) + (3,) * ndim, device=x.device, dtype=torch.float32)
    k[(0, 0) + (1,) * ndim] = -2.0 * ndim
    for d in range(ndim):
        for off in (0, 2):
            idx = [0, 0] + [1] * ndim
            idx[2 + d] = off
            k[tuple(idx)] = 1.0
    lap = (F.conv3d if ndim == 3 else F.conv2d)(x.reshape(b * c, 1, *x.shape[2:]).float(), k)
    lap = lap.reshape(b, -1)
    gain = (4 * ndim * ndim + 2 * ndim) ** 0.5
    med = lap.median(1, keepdim=True).values
    noise = 1.4826 * (lap - med).abs().median(1).values / gain
    flat = x.reshape(b, -1).float()
    sub = flat[:, :: max(1, flat.shape[1] // 4096)]
    contrast = torch.quantile(sub, 0.99, dim=1) - torch.quantile(sub, 0.01, dim=1)
    sharpness = lap.std(1) / noise.clamp_min(1e-3)
    return noise, contrast, sharpness


def words_for(noise: float, contrast: float, sharpness: float) -> str:
    """The description of one sample's statistics (the readable rule)."""
    return ", ".join([("low" if noise < NOISE_LOW else "high" if noise > NOISE_HIGH else "moderate") + " noise",
                      ("low" if contrast < CONTRAST_LOW else "high" if contrast > CONTRAST_HIGH else "moderate")
                      + " contrast",
                      "blurred" if sharpness < BLURRED_BELOW else "sharp"])


def patch_style_words(x: torch.Tensor) -> List[str]:
    """Per-sample style words of a normalised patch ``(B, C, *spatial)`` (host side: reads the statistics)."""
    noise, contrast, sharpness = patch_statistics(x)
    return [words_for(*v) for v in zip(noise.tolist(), contrast.tolist(), sharpness.tolist())]


def word_index_from_statistics(noise: torch.Tensor, contrast: torch.Tensor, sharpness: torch.Tensor) -> torch.Tensor:
    """:func:`words_for` as tensor comparisons: ``(B,)`` int64 indices into :data:`MEASURED_WORDS`.

    ``1 - (v < low) + (v > high)`` is 0 / 1 / 2 for low / moderate / high and 1 for NaN, like the readable rule.
    The comparisons are made in float64, as Python compares the statistics it reads: in float32 a statistic
    that rounds to a threshold (float32(0.4) > 0.4 in float64) would get the other word.
    """
    noise, contrast, sharpness = noise.double(), contrast.double(), sharpness.double()
    n = 1 - (noise < NOISE_LOW).long() + (noise > NOISE_HIGH).long()
    c = 1 - (contrast < CONTRAST_LOW).long() + (contrast > CONTRAST_HIGH).long()
    s = 1 - (sharpness < BLURRED_BELOW).long()
    return (n * len(CONTRAST_WORDS) + c) * len(SHARPNESS_WORDS) + s


def measured_word_index(x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` indices into :data:`MEASURED_WORDS` for a patch, computed on its device without a host sync."""
    return word_index_from_statistics(*patch_statistics(x))
