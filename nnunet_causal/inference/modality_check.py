"""A warning when an image that does not look like CT in Hounsfield units meets a CT-normalised model.

nnU-Net's ``CTNormalization`` clips every input to the training set's foreground HU window (its 0.5 / 99.5
percentiles, e.g. -60..220 HU for abdominal organs) and z-scores with that set's statistics. An MR image
(arbitrary positive numbers) or a CT stored without its rescale slope / intercept goes through the same clip
without any error and comes out as a nearly flat image, and the model segments nothing -- silently. This
check reads what any HU image of a body has: air near -1000 HU around it and fat below 0. An image with no
voxel below -500 and no intensity below -50 (MR; unscaled stored values, whose air is 0), or whose whole
intensity range is under 50 (an image already scaled to [0, 1]), is reported.

The predictor calls :func:`warn_if_not_ct` once per case when it reads the case's files, so the warning comes
once per case; :func:`not_ct_reasons` is the pure test the warning is built on.
"""
from __future__ import annotations

import logging
from typing import List, Mapping, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

AIR_BELOW_HU = -500.0      # a body CT has air (-1000 HU) around the patient or in the lungs / bowel
NEGATIVE_BELOW_HU = -50.0  # fat is -100 HU: a CT in HU has values below this
MIN_HU_RANGE = 50.0        # any CT spans far more than this (air to soft tissue is ~1000 HU)


def not_ct_reasons(channel: np.ndarray) -> List[str]:
    """Why the intensities of one channel (any shape) are not CT in HU; empty if they may be."""
    v = np.asarray(channel, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return []
    lo, hi = float(v.min()), float(v.max())
    reasons = []
    if lo >= NEGATIVE_BELOW_HU and not (v < AIR_BELOW_HU).any():
        reasons.append(f"no air (no voxel below {AIR_BELOW_HU:g} HU) and no intensity below "
                       f"{NEGATIVE_BELOW_HU:g} (range {lo:.4g}..{hi:.4g})")
    if hi - lo < MIN_HU_RANGE:
        reasons.append(f"its intensities span only {hi - lo:.3g} (range {lo:.4g}..{hi:.4g}), where HU images span "
                       f"~1000 from air to soft tissue")
    return reasons


def modality_warning(image: np.ndarray, case: str, normalization_schemes: Sequence[str],
                     intensity_properties: Optional[Mapping] = None) -> Optional[str]:
    """The warning for ``image`` (C, *spatial) of ``case`` under the plans' ``normalization_schemes`` (one per
    channel) and ``foreground_intensity_properties_per_channel``; None when every CT-normalised channel may
    be HU (or no channel is CT-normalised)."""
    parts = []
    for c, scheme in enumerate(normalization_schemes):
        if scheme != "CTNormalization" or c >= image.shape[0]:
            continue
        reasons = not_ct_reasons(image[c])
        if not reasons:
            continue
        props = (intensity_properties or {}).get(str(c)) or {}
        window = (f"{props['percentile_00_5']:.4g}..{props['percentile_99_5']:.4g} HU"
                  if "percentile_00_5" in props and "percentile_99_5" in props else "HU")
        parts.append(f"channel {c}: {'; '.join(reasons)}; the model's plans normalise it with CTNormalization "
                     f"(clipped to the training set's {window} window, then z-scored with its statistics)")
    if not parts:
        return None
    return (f"case {case} does not look like CT in Hounsfield units -- {' | '.join(parts)}. An MR image (or a CT "
            f"without its rescale slope/intercept) keeps almost no contrast in that window and the prediction will "
            f"likely be empty. For MR, use a model trained for cross-modality segmentation (per-image z-score; see "
            f"docs/cross_modality.md)")


def warn_if_not_ct(image: np.ndarray, case: str, normalization_schemes: Sequence[str],
                   intensity_properties: Optional[Mapping] = None) -> Optional[str]:
    """Log :func:`modality_warning` (level WARNING) if there is one, and return it."""
    message = modality_warning(image, case, normalization_schemes, intensity_properties)
    if message:
        logger.warning(message)
    return message
