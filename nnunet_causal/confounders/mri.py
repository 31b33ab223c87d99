"""MRI confounders (any channel count, working space [0, 1] per channel, 2D or 3D).

Written here as batched tensor ops on the training device; torchio's ``RandomBiasField`` /
``RandomGhosting`` / ``RandomMotion`` and MONAI's ``RandGibbsNoise`` / ``RandRicianNoise`` model the same
effects but run per subject (numpy / CPU for torchio), which would move the work back into nnU-Net's
augmentation workers. The forms follow them: bias field = exp of a smooth field, Rician noise = magnitude of
complex Gaussian noise, ghosting = attenuated k-space lines, motion = k-space of a shifted image after a
random time point, Gibbs = truncated k-space. Contrast remapping reuses GIN
(:mod:`nnunet_causal.augmentation.gin`); tissue contrast is the label-aware per-structure gain.
"""
from __future__ import annotations

from typing import Dict

import torch

from nnunet_causal.confounders.base import (LIGHT, OPTICS, SCENE, SENSOR, Param, Simulator, expand, smooth_field,
                                            soft_mask)

Theta = Dict[str, torch.Tensor]


class BiasField(Simulator):
    """Smooth multiplicative intensity inhomogeneity ``x * exp(strength * f)``."""
    name, dims, channels, stage = "bias_field", (2, 3), None, LIGHT
    params = {"strength": Param((0.0, 2.0), (0.2, 0.6))}

    def apply(self, x, seg, theta: Theta, generator=None):
        f = smooth_field(x.shape[0], x.shape[2:], 3, x, generator)
        return x * torch.exp(expand(theta["strength"], x.ndim) * f)


class RicianNoise(Simulator):
    """Rician noise: ``sqrt((x + n1)^2 + n2^2)``, ``n ~ N(0, sigma^2)`` (magnitude images)."""
    name, dims, channels, stage = "rician_noise", (2, 3), None, SENSOR
    params = {"sigma": Param((0.0, 0.5), (0.01, 0.06))}

    def apply(self, x, seg, theta: Theta, generator=None):
        s = expand(theta["sigma"], x.ndim)
        n1 = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        n2 = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        return ((x + s * n1) ** 2 + (s * n2) ** 2).sqrt()


def _kspace(x):
    return torch.fft.fftshift(torch.fft.fftn(x, dim=tuple(range(2, x.ndim))), dim=tuple(range(2, x.ndim)))


def _image(k):
    return torch.fft.ifftn(torch.fft.ifftshift(k, dim=tuple(range(2, k.ndim))), dim=tuple(range(2, k.ndim))).abs()


class Ghosting(Simulator):
    """Ghosting: every ``spacing``-th phase-encoding line (first in-plane axis) of k-space attenuated, which
    puts faint copies of the anatomy at 1/spacing of the field of view."""
    name, dims, channels, stage = "ghosting", (2, 3), None, OPTICS
    params = {"spacing": Param((2, 16), (2, 6), True), "intensity": Param((0.0, 1.0), (0.3, 0.8))}

    def apply(self, x, seg, theta: Theta, generator=None):
        k = _kspace(x)
        ax = x.ndim - 2
        n = x.shape[ax]
        idx = torch.arange(n, device=x.device)
        keep = torch.ones((x.shape[0], n), device=x.device)
        centre = n // 2
        for i in range(x.shape[0]):
            lines = (idx % int(theta["spacing"][i].item()) == 0) & ((idx - centre).abs() > 1)
            keep[i, lines] = 1 - theta["intensity"][i]
        shape = [x.shape[0], 1] + [1] * (x.ndim - 2)
        shape[ax] = n
        return _image(k * keep.view(shape))


class Motion(Simulator):
    """Rigid motion during the acquisition: after a random fraction of the phase-encoding lines the k-space
    comes from the image shifted by ``translation`` voxels."""
    name, dims, channels, stage = "mri_motion", (2, 3), None, OPTICS
    params = {"translation": Param((0.0, 20.0), (1.0, 4.0)), "fraction": Param((0.0, 1.0), (0.2, 0.5))}

    def apply(self, x, seg, theta: Theta, generator=None):
        ax = x.ndim - 2
        n = x.shape[ax]
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            s = int(round(float(theta["translation"][i])))
            moved = torch.roll(x[i:i + 1], s, dims=ax) if s else x[i:i + 1]
            k, km = _kspace(x[i:i + 1]), _kspace(moved)
            cut = int(n * (1 - float(theta["fraction"][i])))
            mask = torch.zeros(n, device=x.device, dtype=torch.bool)
            mask[cut:] = True
            shape = [1] * x.ndim
            shape[ax] = n
            out[i:i + 1] = _image(torch.where(mask.view(shape), km, k))
        return out


class GibbsRinging(Simulator):
    """Gibbs ringing: k-space truncated to the central ``keep`` fraction along every in-plane axis."""
    name, dims, channels, stage = "gibbs_ringing", (2, 3), None, OPTICS
    params = {"keep": Param((0.1, 1.0), (0.4, 0.8))}

    def apply(self, x, seg, theta: Theta, generator=None):
        k = _kspace(x)
        mask = torch.ones((x.shape[0], 1, *x.shape[2:]), device=x.device)
        for ax in (x.ndim - 2, x.ndim - 1):
            n = x.shape[ax]
            dist = (torch.arange(n, device=x.device) - n // 2).abs().to(x.dtype) / (n / 2)
            shape = [1, 1] + [1] * (x.ndim - 2)
            shape[ax] = n
            m = (dist.view(shape) <= expand(theta["keep"], x.ndim)).to(mask.dtype)
            mask = mask * m
        return _image(k * mask)


class ContrastRemap(Simulator):
    """Sequence / weighting change: GIN's random shallow-network intensity remapping (global)."""
    name, dims, channels, stage = "contrast_remap", (2, 3), None, LIGHT
    params = {"layers": Param((1, 8), (2, 4), True)}

    def apply(self, x, seg, theta: Theta, generator=None):
        from nnunet_causal.augmentation.gin import gin

        return gin(x, num_layers=int(theta["layers"].max().item()), generator=generator)


class TissueContrast(Simulator):
    """Label-aware: every labelled structure's intensity scaled by its own gain (fat suppression, weighting
    and contrast agent change a tissue against its surroundings)."""
    name, dims, channels, stage, label_aware = "tissue_contrast", (2, 3), None, SCENE, True
    params = {"gain": Param((0.2, 5.0), (0.7, 1.4))}

    def apply(self, x, seg, theta: Theta, generator=None):
        if seg is None:
            return x
        out = x
        b, c = x.shape[:2]
        for v in torch.unique(seg).tolist():
            if v > 0:
                g = self.uniform("gain", (b, c), x, generator).view(b, c, *([1] * (x.ndim - 2)))
                out = out * (1 + soft_mask(seg, int(v)) * (g - 1))
        return out


class WrapAround(Simulator):
    """Aliasing (wrap-around) along the last axis: a field of view too small by ``fraction`` folds the anatomy
    onto itself -- a copy shifted by ``(1 - fraction)`` of the field of view, at half intensity."""
    name, dims, channels, stage = "wraparound", (2, 3), None, OPTICS
    params = {"fraction": Param((0.0, 0.5), (0.1, 0.25))}

    def apply(self, x, seg, theta: Theta, generator=None):
        n = x.shape[-1]
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            shift = int(round(n * (1 - float(theta["fraction"][i]))))
            out[i] = x[i] + 0.5 * torch.roll(x[i], shift, dims=x.ndim - 2)
        return out


MRI_SIMULATORS = (BiasField, RicianNoise, Ghosting, Motion, GibbsRinging, ContrastRemap, TissueContrast, WrapAround)
