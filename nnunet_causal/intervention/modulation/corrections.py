"""Simulated corrections: what a command should turn the model's current mask into (training targets of the
FiLM generator), and the image change that makes a model miss part of a structure (for ``add``).

Seed 000 trains TCI on simulated clinician corrections; here a correction is defined *relative to the frozen
model's own prediction* ``P`` of the target on the training patch, so every command moves the mask the
right way from where it is:

* ``expand``: ``dilate(P, r)``; ``shrink``: ``erode(P, r)``; ``r`` = the strength's radius in voxels of the
  finest axis (default slight 1, moderate 2, strong 4; a coarser axis gets ``round(r * finest / spacing)``);
* ``remove``: the empty mask;
* ``add``: ``P | G`` (the ground truth where the prediction missed it). On clean training patches the model
  rarely misses anything, so "add" samples get part of the target faded into its surroundings first
  (:func:`fade_part`): the model then misses that part and learns to recover weak evidence.

Dilation and erosion use an ellipsoidal structuring element (one convolution), 2D or 3D, on any device.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch.nn import functional as F

#: default radius in voxels of each strength word
DEFAULT_RADII = {"slight": 1, "moderate": 2, "strong": 4}


def axis_radii(radius: int, spacing: Optional[Sequence[float]], ndim: int) -> Tuple[int, ...]:
    """Per-axis radius for an isotropic radius ``radius`` in voxels of the finest axis."""
    if spacing is None:
        return (int(radius),) * ndim
    sp = [float(s) for s in spacing][-ndim:]
    finest = min(sp)
    return tuple(int(round(radius * finest / s)) for s in sp)


def ball(radii: Sequence[int], device=None) -> torch.Tensor:
    """Ellipsoidal structuring element (1, 1, *[2 r + 1]) of ones inside ``sum (x_i / r_i)^2 <= 1``."""
    axes = [torch.arange(-r, r + 1, device=device, dtype=torch.float32) for r in radii]
    grids = torch.meshgrid(*axes, indexing="ij")
    d = sum((g / max(r, 1e-6)) ** 2 if r > 0 else torch.where(g == 0, 0.0, math.inf)
            for g, r in zip(grids, radii))
    return (d <= 1.0 + 1e-6).float()[None, None]


def dilate(mask: torch.Tensor, radii: Sequence[int]) -> torch.Tensor:
    """Binary dilation of ``mask`` (B, 1, *spatial) bool/float by an ellipsoid of ``radii`` (per axis)."""
    if not any(radii):
        return mask.bool()
    k = ball(radii, mask.device)
    conv = F.conv3d if mask.ndim == 5 else F.conv2d
    pad = tuple(r for r in radii for _ in range(2))[::-1]  # F.pad order: last axis first
    x = F.pad(mask.float(), pad)
    return conv(x, k) > 0.5


def erode(mask: torch.Tensor, radii: Sequence[int]) -> torch.Tensor:
    """Binary erosion (the complement's dilation); outside the patch counts as foreground, so a structure
    cut by the patch border is not eroded from that side."""
    if not any(radii):
        return mask.bool()
    k = ball(radii, mask.device)
    conv = F.conv3d if mask.ndim == 5 else F.conv2d
    pad = tuple(r for r in radii for _ in range(2))[::-1]
    x = F.pad((~mask.bool()).float(), pad, value=0.0)
    return ~(conv(x, k) > 0.5)


def wanted_mask(action: str, prediction: torch.Tensor, truth: torch.Tensor, radius: Sequence[int]) -> torch.Tensor:
    """The corrected mask (1, 1, *spatial) bool for one sample: see the module docstring."""
    if action == "expand":
        return dilate(prediction, radius)
    if action == "shrink":
        return erode(prediction, radius)
    if action == "remove":
        return torch.zeros_like(prediction, dtype=torch.bool)
    if action == "add":
        return prediction.bool() | truth.bool()
    raise ValueError(f"no simulated correction for action '{action}'")


def fade_part(image: torch.Tensor, mask: torch.Tensor, generator: Optional[torch.Generator] = None,
              fraction: Tuple[float, float] = (0.3, 0.7), amount: Tuple[float, float] = (0.6, 0.95),
              ring: int = 3) -> Tuple[torch.Tensor, torch.Tensor]:
    """Blend part of a structure into its surroundings: ``x <- x + a (m_ring - x)`` on the voxels of ``mask``
    beyond a random plane that keeps about ``fraction`` of them faded; ``m_ring`` is the per-channel mean of a
    ``ring``-voxel shell around the structure and ``a ~ U(amount)``.

    image (C, *spatial), mask (*spatial) bool. Returns the changed image and the faded voxels (*spatial).
    Works on any intensity scale (z-scored or raw), since it only blends values of the image itself.
    """
    m = mask.bool()
    if not m.any():
        return image, m
    nd = m.ndim
    shell = dilate(m[None, None], (ring,) * nd)[0, 0] & ~m
    if not shell.any():
        return image, torch.zeros_like(m)
    coords = torch.nonzero(m).float()                       # (N, nd)
    direction = torch.randn(nd, generator=generator)
    direction = (direction / direction.norm().clamp_min(1e-6)).to(coords)
    proj = coords @ direction
    lo, hi = fraction
    keep = float(torch.rand((), generator=generator)) * (hi - lo) + lo
    threshold = torch.quantile(proj, 1.0 - keep)
    part = torch.zeros_like(m)
    sel = coords[proj >= threshold].long()
    part[tuple(sel.t())] = True
    a = float(torch.rand((), generator=generator)) * (amount[1] - amount[0]) + amount[0]
    surround = image[:, shell].mean(1)                       # (C,)
    view = (-1,) + (1,) * nd
    faded = image + a * (surround.view(view) - image)
    return torch.where(part[None], faded, image), part


# ------------------------------------------------------------------ where an edit applies (array directions)
_DIRECTIONS: Dict[str, Tuple[int, int]] = {  # word -> (axis from the end, half: 0 first / 1 second)
    "top": (2, 0), "upper": (2, 0), "superior": (2, 0), "above": (2, 0),
    "bottom": (2, 1), "lower": (2, 1), "inferior": (2, 1), "below": (2, 1),
    "left": (1, 0), "right": (1, 1),
}


def location_region(location: Optional[str], shape: Sequence[int]) -> Optional[torch.Tensor]:
    """Bool mask (*shape) of the part of the array a location phrase names, or None if it names none.

    Directions are those of the array as displayed (rows top to bottom, columns left to right, in every
    slice): "top left" is the first half of the rows and of the columns. Patient directions would need the
    image orientation, which nnU-Net's preprocessed arrays do not carry; the edit log says which was used.
    """
    if not location:
        return None
    words = [w.strip(".,;:") for w in location.lower().replace("-", " ").split()]
    hits = [_DIRECTIONS[w] for w in words if w in _DIRECTIONS]
    if not hits:
        return None
    region = torch.ones(tuple(shape), dtype=torch.bool)
    for axis_from_end, half in hits:
        n = shape[-axis_from_end]
        idx = torch.arange(n)
        keep = idx < n / 2 if half == 0 else idx >= n / 2
        view = [1] * len(shape)
        view[-axis_from_end] = n
        region &= keep.view(view)
    return region


def location_gate(kind: str, location: Optional[str], target_logits: torch.Tensor,
                  record: dict) -> Optional[torch.Tensor]:
    """The spatial gate of an action with a location (None: everywhere); ``remove`` gates the target's
    connected components whose centre lies in the region, dilated by 2 voxels. Notes what it did in ``record``."""
    if not location:
        return None
    region = location_region(location, target_logits.shape)
    record["location_applied"] = region is not None
    if region is None:
        record["location_note"] = (f"no array direction in '{location}' (top/bottom/left/right...): the "
                                   f"action was applied everywhere")
        return None
    if kind != "remove":
        return region.float()
    import numpy as np
    from scipy import ndimage
    mask = (target_logits > 0).numpy()
    comps, n = ndimage.label(mask)
    chosen = np.zeros_like(mask)
    for c, centre in enumerate(ndimage.center_of_mass(mask, comps, range(1, n + 1)), start=1):
        if region[tuple(int(round(v)) for v in centre)]:
            chosen |= comps == c
    record["components_removed"] = int(len(np.unique(comps[chosen]))) if chosen.any() else 0
    grown = dilate(torch.from_numpy(chosen)[None, None], (2,) * chosen.ndim)[0, 0]
    return grown.float()
