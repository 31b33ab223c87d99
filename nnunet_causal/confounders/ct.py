"""CT confounders (one channel, working space HU, 2D slices or 3D volumes; in-plane = the last two axes).

Written here as batched tensor ops because torchio / MONAI offer none of them for CT: metal streaks through
random positions, low-dose noise, window / level and HU calibration, slice thickness (blur along the slice
axis, 3D only), cupping (beam hardening), contrast-phase enhancement per labelled structure, reconstruction
kernel (smooth / sharp), breathing ghosts, truncated field of view. Vendor lines of the dictionary combine
calibration, kernel and noise (a vendor is a style, not one artefact).
"""
from __future__ import annotations

from typing import Dict

import math

import torch

from nnunet_causal.confounders.base import (LIGHT, OPTICS, SCENE, SENSOR, Param, Simulator, coordinates, expand,
                                            gaussian_blur, soft_mask)

Theta = Dict[str, torch.Tensor]


class MetalStreaks(Simulator):
    """Bright/dark streaks radiating from a few random points (metal) in every slice, decaying with distance."""
    name, dims, channels, stage = "metal_streaks", (2, 3), 1, SCENE
    params = {"count": Param((0, 10), (1, 3), True, "metal objects"),
              "amplitude": Param((0.0, 3000.0), (150.0, 600.0), doc="streak amplitude in HU")}

    def apply(self, x, seg, theta: Theta, generator=None):
        b = x.shape[0]
        n = int(theta["count"].max().item())
        if n == 0:
            return x
        plane = x.shape[-2:]
        yx = coordinates(plane, x)                                           # (2, H, W)
        c = (torch.rand(b, n, 2, generator=generator) * 1.2 - 0.6).to(x.device, x.dtype)
        d = yx[None, None] - c[..., None, None]                              # (B, N, 2, H, W)
        ang = torch.atan2(d[:, :, 0], d[:, :, 1])
        r = d.pow(2).sum(2).sqrt()
        freq = torch.randint(6, 16, (b, n, 1, 1), generator=generator).to(x.device, x.dtype)
        phase = (torch.rand(b, n, 1, 1, generator=generator) * 2 * math.pi).to(x.device, x.dtype)
        streak = torch.cos(freq * ang + phase).sign() * torch.cos(freq * ang + phase).abs() ** 8
        core = torch.exp(-(r / 0.03) ** 2) * 2.0
        active = (torch.arange(n, device=x.device)[None] < theta["count"][:, None]).to(x.dtype)[..., None, None]
        pattern = ((streak * torch.exp(-r / 0.5) + core) * active).sum(1)    # (B, H, W)
        pattern = pattern.view(b, 1, *([1] * (x.ndim - 4)), *plane)
        return x + expand(theta["amplitude"], x.ndim) * pattern


class LowDoseNoise(Simulator):
    """Low-dose quantum noise: slightly correlated Gaussian noise (sigma in HU)."""
    name, dims, channels, stage = "low_dose_noise", (2, 3), 1, SENSOR
    params = {"sigma": Param((0.0, 300.0), (10.0, 50.0), doc="noise sigma in HU")}

    def apply(self, x, seg, theta: Theta, generator=None):
        n = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        n = gaussian_blur(n, torch.full((x.shape[0],), 0.6, device=x.device))
        n = n / n.flatten(1).std(1).view(-1, *([1] * (x.ndim - 1))).clamp_min(1e-6)
        return x + expand(theta["sigma"], x.ndim) * n


class HUCalibration(Simulator):
    """Window / level and HU calibration: ``HU' = scale * HU + offset``."""
    name, dims, channels, stage = "hu_calibration", (2, 3), 1, SENSOR
    params = {"offset": Param((-500.0, 500.0), (-40.0, 40.0), doc="HU"), "scale": Param((0.5, 2.0), (0.95, 1.05))}

    def apply(self, x, seg, theta: Theta, generator=None):
        return x * expand(theta["scale"], x.ndim) + expand(theta["offset"], x.ndim)


class SliceThickness(Simulator):
    """Thick slices: partial-volume blur along the slice axis (the first spatial axis; 3D only)."""
    name, dims, channels, stage = "slice_thickness", (3,), 1, OPTICS
    params = {"sigma": Param((0.0, 6.0), (0.5, 2.0), doc="Gaussian sigma in slices")}

    def apply(self, x, seg, theta: Theta, generator=None):
        return gaussian_blur(x, theta["sigma"], axes=[0])


class Cupping(Simulator):
    """Beam hardening: the body centre is darker than its rim (a radial dip of ``depth`` HU inside tissue)."""
    name, dims, channels, stage = "cupping", (2, 3), 1, OPTICS
    params = {"depth": Param((0.0, 300.0), (20.0, 80.0), doc="HU at the centre")}

    def apply(self, x, seg, theta: Theta, generator=None):
        yx = coordinates(x.shape[-2:], x)
        r2 = (yx ** 2).sum(0).clamp(max=1.0)
        dip = (1 - r2).view(1, 1, *([1] * (x.ndim - 4)), *x.shape[-2:])
        tissue = (x > -500).to(x.dtype)
        return x - expand(theta["depth"], x.ndim) * dip * tissue


class ContrastPhase(Simulator):
    """Label-aware contrast-phase change: every labelled structure's enhancement shifts by its own HU offset
    (organs enhance differently in arterial / portal-venous / non-contrast phases)."""
    name, dims, channels, stage, label_aware = "contrast_phase", (2, 3), 1, SCENE, True
    params = {"offset": Param((-400.0, 400.0), (-60.0, 60.0), doc="HU shift per structure")}

    def apply(self, x, seg, theta: Theta, generator=None):
        if seg is None:
            return x
        out = x
        for v in torch.unique(seg).tolist():
            if v > 0:
                out = out + soft_mask(seg, int(v)) * self.uniform("offset", (x.shape[0],), x, generator).view(
                    -1, *([1] * (x.ndim - 1)))
        return out


class ReconstructionKernel(Simulator):
    """Reconstruction kernel: ``sharpness < 0`` smooths (soft-tissue kernel), ``> 0`` sharpens (bone kernel,
    unsharp masking), in-plane."""
    name, dims, channels, stage = "reconstruction_kernel", (2, 3), 1, OPTICS
    params = {"sharpness": Param((-1.0, 1.0), (-1.0, 1.0))}

    def apply(self, x, seg, theta: Theta, generator=None):
        nd = x.ndim - 2
        blur = gaussian_blur(x, torch.full((x.shape[0],), 1.0, device=x.device), axes=[nd - 2, nd - 1])
        s = expand(theta["sharpness"], x.ndim)
        return torch.where(s < 0, x + (-s) * (blur - x), x + 1.5 * s * (x - blur))


class BreathingGhosts(Simulator):
    """Motion from breathing: a faint copy shifted along the anterior-posterior (first in-plane) axis."""
    name, dims, channels, stage = "breathing_motion", (2, 3), 1, OPTICS
    params = {"shift": Param((1, 20), (2, 6), True, "pixels"), "weight": Param((0.0, 0.8), (0.15, 0.4))}

    def apply(self, x, seg, theta: Theta, generator=None):
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            s = int(theta["shift"][i].item())
            out[i] = torch.roll(x[i], s, dims=x.ndim - 3)
        w = expand(theta["weight"], x.ndim)
        return (1 - w) * x + w * out


class TruncatedFOV(Simulator):
    """Truncated field of view: air (-1000 HU) outside an in-plane circle."""
    name, dims, channels, stage = "truncated_fov", (2, 3), 1, LIGHT
    params = {"radius": Param((0.5, 1.5), (0.9, 1.1), doc="circle radius, 1 = touches the borders")}

    def apply(self, x, seg, theta: Theta, generator=None):
        yx = coordinates(x.shape[-2:], x)
        r = (yx ** 2).sum(0).sqrt().view(1, 1, *([1] * (x.ndim - 4)), *x.shape[-2:])
        inside = torch.sigmoid((expand(theta["radius"], x.ndim) - r) * 60)
        return inside * x + (1 - inside) * -1000.0


CT_SIMULATORS = (MetalStreaks, LowDoseNoise, HUCalibration, SliceThickness, Cupping, ContrastPhase,
                 ReconstructionKernel, BreathingGhosts, TruncatedFOV)
