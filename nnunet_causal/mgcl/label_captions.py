"""Captions from the labels when a case has no report: presence, size and position words measured on the mask.

Per structure of a case (label value ``v`` in its segmentation, nnU-Net's preprocessed array):

* absent (no voxel): "No {name} is seen." -- a negated caption (kept, never paired with a feature);
* present: three captions, "The {name} is present.", "The {name} is {size}." and "The {name} lies in the
  {position}." (varied wording), where

  - ``size`` compares the voxel count with the median count of that structure over the dataset's cases
    where it is present: below 0.8 times "small", above 1.25 times "enlarged", else "normal in size";
  - ``position`` is the mask's centroid in the array, in the original axis order (nnU-Net's
    ``transpose_backward``). 3D: axes (z, y, x) as SimpleITK reads them; with an identity direction
    (LPS, the synthetic phantoms) larger x is the patient's left and larger z superior, so the words are
    "upper"/"lower" and "left"/"right" *of the patient*. 2D: "upper"/"lower" and "left"/"right" *of the
    image*. Other directions are not corrected (the words then describe the array, said here on purpose).

Structure names are the dataset's first prompt of each label (``label_to_text`` of the name otherwise).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence

import numpy as np

from nnunet_causal.mgcl.captions import Caption

SMALL, LARGE = 0.8, 1.25


def _position_words(mask: np.ndarray, is_3d: bool) -> str:
    idx = np.nonzero(mask)
    centre = [float(i.mean()) / max(1, n - 1) for i, n in zip(idx, mask.shape)]
    if is_3d:
        z, _, x = centre
        vert = "upper" if z > 0.6 else ("lower" if z < 0.4 else "middle")
        side = "left" if x > 0.55 else ("right" if x < 0.45 else "central")
        return f"{vert} {side} part of the body" if side != "central" else f"{vert} central part of the body"
    y, x = centre[-2:]
    vert = "upper" if y < 0.4 else ("lower" if y > 0.6 else "middle")
    side = "left" if x < 0.4 else ("right" if x > 0.6 else "central")
    return f"{vert} {side} part of the image"


def size_word(count: int, median: float) -> str:
    ratio = count / max(median, 1.0)
    return "small" if ratio < SMALL else ("enlarged" if ratio > LARGE else "normal in size")


def label_captions(seg: np.ndarray, structures: Mapping[str, int], names: Mapping[str, str],
                   medians: Mapping[str, float], transpose_backward: Sequence[int] = (0, 1, 2)) -> List[Caption]:
    """Captions of one case. ``seg``: integer array (spatial dims, possibly with a leading channel of 1) in
    nnU-Net's preprocessed axis order; ``structures``: label name -> value; ``names``: label -> text;
    ``medians``: label -> median voxel count where present (see :func:`structure_volumes`)."""
    seg = np.asarray(seg)
    if seg.ndim == 4:
        seg = seg[0]
    if seg.shape[0] == 1 and len(transpose_backward) == 3:
        is_3d = False
    else:
        is_3d = seg.ndim == 3
    seg = np.transpose(seg, list(transpose_backward)[:seg.ndim])
    out: List[Caption] = []
    for label, value in structures.items():
        name = names[label]
        mask = seg == value
        count = int(mask.sum())
        if count == 0:
            out.append(Caption(label, f"No {name} is seen.", True, "labels"))
            continue
        out += [Caption(label, f"The {name} is present.", False, "labels"),
                Caption(label, f"The {name} is {size_word(count, medians.get(label, count))}.", False, "labels"),
                Caption(label, f"The {name} lies in the {_position_words(mask, is_3d)}.", False, "labels")]
    return out


def structure_volumes(segs: Mapping[str, np.ndarray], structures: Mapping[str, int]) -> Dict[str, float]:
    """Median voxel count of each structure over the cases where it is present (0 if never present)."""
    out = {}
    for label, value in structures.items():
        counts = [int((np.asarray(s) == value).sum()) for s in segs.values()]
        counts = [c for c in counts if c > 0]
        out[label] = float(np.median(counts)) if counts else 0.0
    return out
