"""Text descriptions of imaging style, built from generator parameters or measured from an image.

The descriptions end up in dataset.json's per-case domain records (``"style"``) and are later embedded by a
text encoder as confounder descriptions, so they use plain words ("strong red colour cast", "low noise")
rather than numbers. :func:`measure_image_statistics` gives the numbers for real data, where no generator
parameters exist.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence

import numpy as np
from scipy import ndimage

from nnunet_causal.errors import DatasetError

logger = logging.getLogger(__name__)


def level_word(value: float, thresholds: Sequence[float], words: Sequence[str]) -> str:
    """``words[i]`` for the first ``thresholds[i]`` that ``value`` is below, else the last word.

    ``len(words) == len(thresholds) + 1``; e.g. ``level_word(0.3, (0.1, 0.4), ("no", "mild", "strong"))``
    gives ``"mild"``.
    """
    for t, w in zip(thresholds, words):
        if value < t:
            return w
    return words[len(thresholds)]


def describe_endoscopy_style(site: str, style) -> str:
    """One line describing an :class:`~nnunet_causal.synthetic.endoscopy2d.EndoscopyStyle`.

    E.g. ``"site siteB, white-light colonoscope with strong red colour cast, low noise, strong vignetting,
    slight blur, JPEG compression artefacts, few specular highlights, dim"``.
    """
    r, g, b = (float(c) for c in style.colour_gain)
    excess_red = r - (g + b) / 2
    excess_blue = (g + b) / 2 - r
    if excess_red > 0.05:
        cast = level_word(excess_red, (0.15,), ("mild", "strong")) + " red colour cast"
    elif excess_blue > 0.05:
        cast = level_word(excess_blue, (0.15,), ("mild", "strong")) + " blue-green colour cast"
    else:
        cast = "neutral colour"
    scope = "narrow-band imaging (NBI) colonoscope" if style.nbi else "white-light colonoscope"
    parts = [f"site {site}", f"{scope} with {cast}",
             level_word(style.noise_sigma, (0.02, 0.04), ("low", "moderate", "high")) + " noise",
             level_word(style.vignetting, (0.1, 0.4), ("no", "mild", "strong")) + " vignetting",
             level_word(style.blur_sigma, (0.3, 0.9), ("sharp", "slight blur", "strong blur"))]
    if style.jpeg_quality is not None:
        parts.append(level_word(style.jpeg_quality, (40,), ("strong JPEG compression artefacts",
                                                             "JPEG compression artefacts")))
    parts.append(level_word(style.highlights, (1, 5), ("no", "few", "many")) + " specular highlights")
    if abs(style.brightness - 1.0) > 0.08:
        parts.append("dim" if style.brightness < 1.0 else "bright")
    return ", ".join(parts)


def describe_ct_style(scanner: str, style) -> str:
    """One line describing a :class:`~nnunet_causal.synthetic.ct3d.ScannerStyle`.

    E.g. ``"scanner scannerB, arterial phase, high noise, 5 mm slices, smooth kernel, bias field"``.
    """
    parts = [f"scanner {scanner}", f"{style.contrast_phase} phase",
             level_word(style.noise_hu, (10, 20), ("low", "moderate", "high")) + " noise",
             f"{style.slice_thickness_mm:g} mm slices",
             "smooth kernel" if style.blur_sigma > 0.6 else "sharp kernel"]
    if style.bias > 0.03:
        parts.append("intensity bias field")
    if style.streaks:
        parts.append("metal streak artefacts")
    if abs(style.hu_scale - 1.0) > 0.03 or abs(style.hu_offset) > 5:
        parts.append("miscalibrated HU")
    return ", ".join(parts)


def measure_image_statistics(image: np.ndarray, channel_axis: Optional[int] = None) -> Dict[str, float]:
    """Style statistics measured from an image itself (2D or 3D), averaged over channels.

    Args:
        image: array ``(*spatial)`` or, with ``channel_axis``, one axis holding channels (e.g. ``(C, H, W)``
            with ``channel_axis=0``, or ``(H, W, 3)`` with ``channel_axis=-1``). Spatial dims: 2 or 3.
        channel_axis: the channel axis, or None for a single-channel image.

    Returns:
        ``noise_sigma``: robust standard deviation of white noise, in image intensity units (HU for CT,
        0-255 for 8-bit RGB). The Laplacian (a high-pass filter) is applied; its residual's median absolute
        deviation times 1.4826 estimates its noise sigma, divided by the Laplacian's noise gain (sqrt(20) for
        the 5-point 2D stencil, sqrt(42) for the 7-point 3D stencil). Edges are rare, so the median ignores
        them.
        ``contrast``: 99th minus 1st intensity percentile, in intensity units.
        ``blur``: variance of the Laplacian of the image divided by ``contrast**2`` (unitless, per voxel^2;
        LOW means blurred, the classic variance-of-Laplacian focus measure made independent of the
        intensity scale). Noise raises it too, so compare images of similar ``noise_sigma``.
    """
    img = np.asarray(image, dtype=np.float64)
    channels = [img] if channel_axis is None else list(np.moveaxis(img, channel_axis, 0))
    if channels[0].ndim not in (2, 3):
        raise DatasetError(f"measure_image_statistics: expected a 2D or 3D image (plus an optional channel axis), "
                           f"got shape {img.shape} with channel_axis={channel_axis}")
    if min(channels[0].shape) < 3:
        raise DatasetError(f"measure_image_statistics: image of shape {img.shape} is too small (need >= 3 "
                           f"pixels along every spatial axis)")
    noise, contrast, blur = [], [], []
    for ch in channels:
        lap = ndimage.laplace(ch, mode="reflect")
        inner = lap[tuple(slice(1, -1) for _ in range(ch.ndim))]  # border values are biased by the padding
        gain = np.sqrt(20.0 if ch.ndim == 2 else 42.0)
        noise.append(1.4826 * np.median(np.abs(inner - np.median(inner))) / gain)
        lo, hi = np.percentile(ch, (1, 99))
        contrast.append(hi - lo)
        blur.append(inner.var() / max((hi - lo) ** 2, 1e-12))
    return {"noise_sigma": float(np.mean(noise)), "contrast": float(np.mean(contrast)),
            "blur": float(np.mean(blur))}
