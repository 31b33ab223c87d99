"""Modality change as a confounder: CT <-> MR of the same anatomy (one channel or more, 2D or 3D).

A change of modality keeps every structure's shape and position and changes what each tissue looks like:
fat is dark on CT and bright on T1-weighted MR, the aorta is the brightest organ of a contrast CT and a flow
void on MR, bone is bright on CT and grey on MR; MR adds a smooth coil bias field and Rician noise, CT has
flat air and Gaussian-like quantum noise. The simulators here set that change as a do-intervention.

What the single-source cross-modality literature teaches (read, not copied):

* **BigAug** (Zhang et al., TMI 2020) stacks quality (blur, sharpness, noise), appearance (brightness,
  contrast, gamma) and spatial transforms. It generalises across sites and vendors of one modality; its
  appearance transforms are *monotone*, so the order of tissue intensities stays the CT order and they do not
  bridge CT and MR on their own.
* **GIN / IPA** (Ouyang et al., TMI 2022): a random shallow convolutional network remaps intensities
  non-linearly (and non-monotonically); IPA blends two such views through a smooth mask so that regions
  change independently. Already in the package (:mod:`nnunet_causal.augmentation.gin`, the ``contrast_remap``
  simulator); non-monotone remapping is what moves abdominal CT -> MR in their ablations.
* **SLAug** (Su et al., AAAI 2023): a *global* location-scale transform through a random Bezier curve (GLA)
  plus a *class-specific local* location-scale transform (LLA) that gives every labelled class its own
  intensity and texture scale, fused by a saliency map. The class-wise part is what lets a structure lose or
  invert its contrast against its surroundings -- the cue a global curve keeps -- and is the largest single
  gain in their CT -> MR table.

So the families here: :class:`StructureIntensity` (label-aware, SLAug's LLA idea: each structure and the
unlabelled background gets its own new level and texture scale), :class:`IntensityCurve` (global random
piecewise-linear curve that may invert the intensity order, MONAI ``RandHistogramShift``-like, the GLA / GIN
idea), :class:`MRAppearance` (coil bias field and Rician noise, the forms of torchio ``RandomBiasField`` /
MONAI ``RandRicianNoise``) and :class:`CTAppearance` (flat air and correlated quantum noise).

Working space: every simulator maps each sample and channel to [0, 1] by its own minimum and maximum, acts
there and maps back to the sample's range, so one parameter range means the same in the HU space of a
``CTNormalization`` channel and in the unit space of a z-scored one. On a CT channel the result is then
clipped to the plans' HU window, as nnU-Net would clip an MR image given to that model: cross-modality
training should use a z-scored channel (``docs/cross_modality.md``). Written here as batched tensor ops on
the training device because torchio and MONAI transform one subject at a time on the host (neither is a
dependency) and kornia has no label-aware or piecewise intensity transform.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from nnunet_causal.confounders.base import (LIGHT, SCENE, SENSOR, Param, Simulator, expand, gaussian_blur,
                                            per_sample_stat, soft_mask)
from nnunet_causal.confounders.mri import BiasField, RicianNoise

Theta = Dict[str, torch.Tensor]


def to_unit(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(u, lo, hi)``: (B, C, *spatial) mapped to [0, 1] per sample and channel by its min / max."""
    lo, hi = per_sample_stat(x, "min"), per_sample_stat(x, "max")
    return (x - lo) / (hi - lo).clamp_min(1e-6), lo, hi


def from_unit(u: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_unit` (values outside [0, 1] map outside the original range)."""
    return u * (hi - lo) + lo


def _coin(prob: torch.Tensor, generator=None) -> torch.Tensor:
    """(B,) booleans, True with per-sample probability ``prob`` (drawn on the CPU generator)."""
    return torch.rand(prob.shape[0], generator=generator).to(prob.device) < prob


class StructureIntensity(Simulator):
    """Label-aware modality change: every labelled structure, and the unlabelled background, gets its own
    location-scale transform in unit space, ``u' = m_v + s_v (u - mean_v(u))``, blended through soft masks.
    The background's new level is drawn in [0, 1]; a structure's is ``m_v = (1 - level) mean_v + level t_v``
    with ``t_v`` at least ``separation`` above or below (sign drawn, reflected into [0, 1]) the mean of its
    transformed surroundings (the background within two voxels of it): the structure's CT contrast to its
    surroundings is gone at level 1, its new contrast may be inverted, and it stays visible. Without the
    margin a quarter to two fifths of the structures of a view were at their surroundings' level (Fisher
    contrast < 1, against 2-10 on the rendered MR of the same phantoms): views that cannot be segmented. The
    texture scale ``s_v ~ U(texture)``, its sign flipped with probability 1/2. Shape and position stay."""
    name, dims, channels, stage, label_aware = "structure_intensity", (2, 3), None, SCENE, True
    params = {"level": Param((0.0, 1.0), (0.7, 1.0), doc="share of each structure's level drawn anew"),
              "texture": Param((0.0, 3.0), (0.5, 1.5), doc="gain of the texture within a structure"),
              "separation": Param((0.0, 1.0), (0.15, 0.4),
                                  doc="least distance (unit space) of a new level from its surroundings'")}

    def apply(self, x, seg, theta: Theta, generator=None):
        if seg is None:
            return x
        u, lo, hi = to_unit(x)
        b, c = x.shape[:2]
        shape = (b, c, *([1] * (x.ndim - 2)))
        values = [int(v) for v in torch.unique(seg).tolist() if v > 0]
        masks = [soft_mask(seg, v) for v in values]
        organs = torch.stack(masks).sum(0).clamp(max=1.0) if masks else torch.zeros_like(seg, dtype=x.dtype)
        background = (1.0 - organs).to(x.dtype)
        total = (torch.stack(masks).sum(0) + background).clamp_min(1e-6) if masks else background.clamp_min(1e-6)
        level = expand(theta["level"], x.ndim)
        separation = theta["separation"].to(x.device, x.dtype).view(b, 1, *([1] * (x.ndim - 2)))

        def texture(m):
            hard = (m > 0.5).to(x.dtype)
            n = hard.flatten(1).sum(1).view(b, 1, *([1] * (x.ndim - 2))).clamp_min(1.0)
            mean = (u * hard).flatten(2).sum(2).view(shape) / n
            gain = self.uniform("texture", (b, c), x, generator).view(shape)
            sign = torch.where(torch.rand((b, c), generator=generator) < 0.5, -1.0, 1.0).to(x.device, x.dtype)
            return mean, sign.view(shape) * gain * (u - mean)

        bg_mean, bg_texture = texture(background)
        bg_target = torch.rand((b, c), generator=generator).to(x.device, x.dtype).view(shape)
        bg_out = (1 - level) * bg_mean + level * bg_target + bg_texture
        out = background / total * bg_out
        pool = torch.nn.functional.max_pool2d if x.ndim == 4 else torch.nn.functional.max_pool3d
        bg_hard = (background > 0.5).to(x.dtype)
        for m in masks:
            mean, tex = texture(m)
            hard = (m > 0.5).to(x.dtype)
            ring = (pool(hard, 5, 1, 2) * bg_hard).expand_as(u)
            n_ring = ring.flatten(2).sum(2).view(shape)
            around = torch.where(n_ring > 0, (bg_out * ring).flatten(2).sum(2).view(shape) / n_ring.clamp_min(1.0),
                                 bg_out.mean(dim=tuple(range(2, x.ndim)), keepdim=True))
            around = around.clamp(0, 1)
            d = separation + torch.rand((b, c), generator=generator).to(x.device, x.dtype).view(shape) * (1 - separation)
            up = torch.rand((b, c), generator=generator).to(x.device, x.dtype).view(shape) < 0.5
            # the drawn side if the level fits there, else the other side, else the far end of [0, 1]
            fits_up, fits_down = around + d <= 1, around - d >= 0
            go_up = torch.where(up, fits_up | ~fits_down, ~(fits_down | ~fits_up))
            go_up = torch.where(~fits_up & ~fits_down, around < 0.5, go_up)
            target = torch.where(go_up, (around + d).clamp(max=1.0), (around - d).clamp(min=0.0))
            new_level = (1 - level) * mean + level * target
            out = out + m / total * (new_level + tex)
        return from_unit(out, lo, hi)


class IntensityCurve(Simulator):
    """Global intensity curve: ``u' = f(u)`` piecewise linear through ``knots`` equally spaced points whose
    values are ``(1 - randomness)`` of the identity (or, with probability ``inversion``, of the reversed
    identity ``1 - u``) plus ``randomness`` of uniform draws -- a random, possibly non-monotone remapping of the
    tissue order (MONAI ``RandHistogramShift`` / SLAug GLA / GIN family)."""
    name, dims, channels, stage = "intensity_curve", (2, 3), None, LIGHT
    params = {"knots": Param((2, 12), (4, 6), True, "control points of the curve"),
              "randomness": Param((0.0, 1.0), (0.3, 0.8), doc="share of random knot values"),
              "inversion": Param((0.0, 1.0), (0.5, 0.5), doc="probability of reversing the intensity order")}

    def apply(self, x, seg, theta: Theta, generator=None):
        u, lo, hi = to_unit(x)
        b, c = x.shape[:2]
        k = int(theta["knots"].max().item())
        grid = torch.linspace(0, 1, k, device=x.device, dtype=x.dtype).expand(b, c, k)
        invert = _coin(theta["inversion"], generator).view(b, 1, 1)
        base = torch.where(invert, 1 - grid, grid)
        r = theta["randomness"].view(b, 1, 1)
        knots = (1 - r) * base + r * torch.rand((b, c, k), generator=generator).to(x.device, x.dtype)
        pos = u.clamp(0, 1).flatten(2) * (k - 1)                         # (B, C, N)
        i0 = pos.floor().clamp(max=k - 2).long()
        frac = pos - i0.to(x.dtype)
        y = torch.gather(knots, 2, i0) * (1 - frac) + torch.gather(knots, 2, i0 + 1) * frac
        return from_unit(y.view_as(u), lo, hi)


class MRAppearance(Simulator):
    """The other modality's sensor, MR: a smooth multiplicative coil bias field ``exp(bias * f)`` and Rician
    noise of std ``sigma`` (fraction of the sample's range), applied in unit space through
    :class:`~nnunet_causal.confounders.mri.BiasField` and :class:`~nnunet_causal.confounders.mri.RicianNoise`."""
    name, dims, channels, stage = "mr_appearance", (2, 3), None, SENSOR
    params = {"bias": Param((0.0, 1.5), (0.1, 0.5), doc="bias field strength (log gain std)"),
              "sigma": Param((0.0, 0.3), (0.01, 0.04), doc="Rician noise std, fraction of the range")}

    def apply(self, x, seg, theta: Theta, generator=None):
        u, lo, hi = to_unit(x)
        u = BiasField().apply(u, None, {"strength": theta["bias"]}, generator)
        u = RicianNoise().apply(u, None, {"sigma": theta["sigma"]}, generator)
        return from_unit(u, lo, hi)


class CTAppearance(Simulator):
    """The other modality's sensor, CT: everything below ``floor`` of the sample's range becomes the flat
    minimum (air is one value on CT, a noise floor with ghosts on MR), then slightly correlated Gaussian
    quantum noise of std ``sigma`` (fraction of the range; 10-30 HU over a 1500 HU range is 0.007-0.02)."""
    name, dims, channels, stage = "ct_appearance", (2, 3), None, SENSOR
    params = {"floor": Param((0.0, 0.5), (0.02, 0.1), doc="share of the range flattened to the minimum"),
              "sigma": Param((0.0, 0.2), (0.005, 0.02), doc="noise std, fraction of the range")}

    def apply(self, x, seg, theta: Theta, generator=None):
        u, lo, hi = to_unit(x)
        u = torch.where(u < expand(theta["floor"], x.ndim), torch.zeros_like(u), u)
        n = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        n = gaussian_blur(n, torch.full((x.shape[0],), 0.6, device=x.device))
        n = n / n.flatten(1).std(1).view(-1, *([1] * (x.ndim - 1))).clamp_min(1e-6)
        return from_unit(u + expand(theta["sigma"], x.ndim) * n, lo, hi)


MODALITY_SIMULATORS = (StructureIntensity, IntensityCurve, MRAppearance, CTAppearance)
