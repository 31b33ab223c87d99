"""Overlap and surface metrics for binary masks, spacing-aware.

Conventions (tested):

* Dice = 2|A∩B| / (|A| + |B|). Both masks empty -> Dice 1.0 (nothing to find, nothing found; nnU-Net
  itself reports NaN there, which is why our Dice is compared with nnU-Net's on non-empty cases only).
  One mask empty -> 0.0.
* HD95 (mm) = the 95th percentile of the pooled symmetric surface distances: distances from every
  surface voxel of A to the surface of B together with those from B to A (the definition of medpy's
  ``hd95``; ``mode="max"`` gives the larger of the two directed 95th percentiles, as MONAI does).
  Surfaces are the mask minus its erosion with face connectivity (as medpy); distances use the voxel
  spacing (mm). Both empty -> 0.0; one empty -> NaN (undefined; excluded from means, counted).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    denom = int(a.sum()) + int(b.sum())
    if denom == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / denom


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure, border_value=0)


def surface_distances(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distances (mm) from each surface voxel of ``a`` to the nearest surface voxel of ``b``."""
    sa, sb = _surface(a), _surface(b)
    dt = ndimage.distance_transform_edt(~sb, sampling=spacing)
    return dt[sa]


def hd95(a: np.ndarray, b: np.ndarray, spacing: Sequence[float], mode: str = "pooled") -> float:
    """95th-percentile Hausdorff distance in mm (see module docstring for conventions)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if len(spacing) != a.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match a {a.ndim}D mask")
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return float("nan")
    d_ab, d_ba = surface_distances(a, b, spacing), surface_distances(b, a, spacing)
    if mode == "pooled":
        return float(np.percentile(np.concatenate([d_ab, d_ba]), 95))
    if mode == "max":
        return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))
    raise ValueError(f"unknown hd95 mode '{mode}' (pooled | max)")
