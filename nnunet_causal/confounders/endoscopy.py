"""Endoscopy confounders (RGB 2D, working space [0, 1]): the scene, light, optics and sensor of a colonoscope.

Reused from kornia: defocus (``gaussian_blur2d``), motion blur (``motion_blur``) and JPEG blocking
(``jpeg_codec_differentiable``), all batched with per-sample parameters on the device. Written here because
no well-kept library has them as batched tensor ops: specular highlights placed anywhere, highlight removal
(in-painting by normalised convolution), label-aware structure colour and texture, NBI-like channel
mixing, vignetting, uneven illumination, mucus / bubbles, blood tint, black borders, label-aware structure
conspicuity (in-painting from the surroundings).

Sizes are fractions of the image's shorter side, so one dictionary range fits any patch size. Near / far
(zoom) is not simulated here: it moves the anatomy, so it is nnU-Net's scaling augmentation, not an
image-only do(z); the dictionary's distance lines use what distance does to light and focus instead.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch.nn import functional as F

from nnunet_causal.confounders.base import (DIGITAL, LIGHT, OPTICS, SCENE, SENSOR, Param, Simulator, coordinates,
                                            expand, gaussian_blur, rand, smooth_field, soft_mask)

Theta = Dict[str, torch.Tensor]


def _blobs(shape, centres: torch.Tensor, radii: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) union of soft discs: ``centres`` (B, N, 2) in [-1, 1], ``radii`` (B, N) in [-1, 1] units,
    ``active`` (B, N) bool."""
    grid = coordinates(shape, centres)                              # (2, H, W)
    d2 = ((grid[None, None] - centres[..., None, None]) ** 2).sum(2)  # (B, N, H, W)
    m = torch.sigmoid((1 - d2.sqrt() / radii[..., None, None].clamp_min(1e-4)) * 6.0)
    return (m * active[..., None, None]).amax(1, keepdim=True)


class SpecularHighlights(Simulator):
    """Small saturated white reflections placed uniformly over the frame (on mucosa and lesions alike)."""
    name, dims, channels, stage, order = "specular_highlights", (2,), 3, SCENE, 1
    params = {"count": Param((0, 40), (2, 10), True, "highlights per frame"),
              "radius": Param((0.002, 0.2), (0.01, 0.03), doc="radius, fraction of the shorter side")}

    def apply(self, x, seg, theta: Theta, generator=None):
        b = x.shape[0]
        n = int(theta["count"].max().item()) if b else 0
        if n == 0:
            return x
        centres = (torch.rand(b, n, 2, generator=generator) * 1.9 - 0.95).to(x.device, x.dtype)
        jitter = (torch.rand(b, n, generator=generator) * 0.8 + 0.6).to(x.device, x.dtype)
        radii = 2 * theta["radius"][:, None] * jitter                 # fraction of the side -> [-1, 1] units
        active = torch.arange(n, device=x.device)[None] < theta["count"][:, None]
        glow = _blobs(x.shape[2:], centres, radii, active)
        return x * (1 - glow) + glow * 1.0


class HighlightRemoval(Simulator):
    """Removes specular reflections where present: near-saturated pixels (every channel above ``threshold`` of
    the frame's maximum), dilated by ``dilate`` px, are in-painted from their surroundings by normalised
    convolution (Gaussian-weighted mean of the valid pixels at sigma 4 then 1.5 px; the frame's mean colour
    where no valid pixel is near). The pixels used to fill exclude a 2-px ring beyond the hole: a reflection's
    glow fades over a few pixels, and filling from its own halo left pale blobs where the reflection had been
    (a residue that still marks where highlights were, i.e. the cue this simulator is meant to remove)."""
    name, dims, channels, stage, order = "highlight_removal", (2,), 3, SCENE, -1
    params = {"threshold": Param((0.5, 0.999), (0.85, 0.95), doc="fraction of the frame's maximum"),
              "dilate": Param((0, 5), (2, 3), True, "dilation in pixels")}
    halo = 2

    def apply(self, x, seg, theta: Theta, generator=None):
        b = x.shape[0]
        mx = x.flatten(2).amax(2).view(b, 3, 1, 1)
        sat = (x >= expand(theta["threshold"], 4) * mx).all(1, keepdim=True).float()
        r = int(theta["dilate"].max().item())
        hole = _dilate(sat, r) if r > 0 else sat
        valid = 1 - _dilate(sat, r + self.halo)
        # valid pixels' mean per channel: the fallback where no valid pixel is near (a huge reflection)
        fill = ((x * valid).flatten(2).sum(2) / valid.flatten(2).sum(2).clamp_min(1)).view(b, 3, 1, 1).expand_as(x)
        todo = hole.bool()
        for sigma in (4.0, 1.5):   # coarse first, then finer where enough valid pixels are close
            s = torch.full((b,), sigma, device=x.device)
            num, den = gaussian_blur(x * valid, s), gaussian_blur(valid, s)
            fill = torch.where(todo & (den > 0.05), num / den.clamp_min(1e-3), fill)
        return torch.where(todo, fill, x)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    pool = F.max_pool2d if mask.ndim == 4 else F.max_pool3d
    return pool(mask, 2 * radius + 1, stride=1, padding=radius)


def set_structure_contrast(x: torch.Tensor, seg: torch.Tensor, ratio_of, ring: int = 3) -> torch.Tensor:
    """do(contrast): for every labelled structure, scale its voxels (soft edge) so that the ratio of its mean
    to the mean of a ``ring``-voxel band around it becomes ``ratio_of(label) -> (B, C)``, whatever it was.
    Setting the ratio (instead of multiplying it) is what makes the contrast independent of the label: a
    lesion that was redder than its surroundings in every source image is not, on average, after it."""
    b, c = x.shape[:2]
    dims = tuple(range(2, x.ndim))
    out = x
    for v in torch.unique(seg).tolist():
        if v <= 0:
            continue
        hard = (seg == v).to(x.dtype)
        band = (_dilate(hard, ring) - hard).clamp(0, 1)
        n_in, n_band = hard.sum(dims), band.sum(dims)                   # (B, 1)
        mean_in = (x * hard).sum(dims) / n_in.clamp_min(1)
        mean_band = (x * band).sum(dims) / n_band.clamp_min(1)
        target = ratio_of(int(v))                                         # (B, C)
        gain = torch.where(n_band > 0, target * mean_band / mean_in.clamp_min(1e-4), target).clamp(0.2, 5.0)
        gain = torch.where(n_in > 0, gain, torch.ones_like(gain))
        out = out * (1 + soft_mask(seg, int(v)) * (gain.view(b, c, *([1] * (x.ndim - 2))) - 1))
    return out


class StructureColour(Simulator):
    """Label-aware do(colour contrast): each labelled structure's mean colour is set, per channel, to
    ``contrast`` times the mean colour of its surroundings (a 3-pixel band), drawn independently of the
    label and of what the ratio was (e.g. polyps redder than the mucosa in every source frame become as
    often paler); applied through a softly edged mask."""
    name, dims, channels, stage, label_aware = "structure_colour", (2, 3), None, SCENE, True
    params = {"contrast": Param((0.3, 3.0), (0.85, 1.15),
                                doc="per-channel ratio of the structure's mean to its surroundings' mean")}

    def apply(self, x, seg, theta: Theta, generator=None):
        if seg is None:
            return x
        return set_structure_contrast(x, seg, lambda v: self.uniform("contrast", tuple(x.shape[:2]), x, generator))


def inpaint(x: torch.Tensor, hole: torch.Tensor, sigmas=(8.0, 4.0, 1.5)) -> torch.Tensor:
    """Fill ``hole`` (B, 1, *spatial, 0/1) of ``x`` from its surroundings by normalised convolution (Gaussian-
    weighted mean of the valid voxels, coarse to fine); the rest of ``x`` is returned unchanged."""
    b = x.shape[0]
    valid = 1 - hole
    dims = tuple(range(2, x.ndim))
    fill = ((x * valid).sum(dims, keepdim=True) / valid.sum(dims, keepdim=True).clamp_min(1)).expand_as(x)
    todo = hole.bool()
    for sigma in sigmas:
        s = torch.full((b,), sigma, device=x.device)
        num, den = gaussian_blur(x * valid, s), gaussian_blur(valid, s)
        fill = torch.where(todo & (den > 0.02), num / den.clamp_min(1e-4), fill)
    return torch.where(todo, fill, x)


class StructureConspicuity(Simulator):
    """Label-aware do(conspicuity): each labelled structure is faded towards what its surroundings would look
    like there (in-painted from a band around it): ``x' = x + fade (inpaint(x) - x)`` inside the structure.
    Lighting, imaging mode and contrast agents change how much a lesion stands out from its surroundings
    independently of the lesion; ``fade`` stays below 1, so the structure is fainter, never gone (its own
    shading and outline survive at ``1 - fade`` of their contrast)."""
    name, dims, channels, stage, label_aware = "structure_conspicuity", (2, 3), None, SCENE, True
    params = {"fade": Param((0.0, 0.9), (0.3, 0.7), doc="fraction of the structure's own contrast removed")}

    def apply(self, x, seg, theta: Theta, generator=None):
        if seg is None or not bool((seg > 0).any()):
            return x
        hole = (seg > 0).to(x.dtype)
        filled = inpaint(x, _dilate(hole, 1))
        m = soft_mask(seg) * expand(theta["fade"], x.ndim)
        return x + m * (filled - x)


class StructureTexture(Simulator):
    """Label-aware: the texture inside each structure is smoothed (``amount < 0``) or roughened with fine
    noise (``amount > 0``), independently of the label."""
    name, dims, channels, stage, label_aware = "structure_texture", (2, 3), None, SCENE, True
    params = {"amount": Param((-1.0, 1.0), (-1.0, 1.0), doc="< 0 smooth, > 0 add grain (fraction of 0.1)")}

    def apply(self, x, seg, theta: Theta, generator=None):
        if seg is None:
            return x
        m = soft_mask(seg)
        a = expand(theta["amount"], x.ndim)
        smooth = gaussian_blur(x, torch.full((x.shape[0],), 1.5, device=x.device))
        grain = 0.1 * torch.randn(x.shape, generator=generator).to(x.device, x.dtype) * x
        changed = torch.where(a < 0, x + (-a) * (smooth - x), x + a * grain)
        return x + m * (changed - x)


class ColourCast(Simulator):
    """White balance / video-processor colour cast: a per-channel gain for the whole frame."""
    name, dims, channels, stage = "colour_cast", (2,), 3, LIGHT
    params = {"gain": Param((0.3, 3.0), (0.8, 1.2), doc="per-channel gain")}

    def apply(self, x, seg, theta: Theta, generator=None):
        b = x.shape[0]
        return (x * self.uniform("gain", (b, 3), x, generator).view(b, 3, 1, 1)).clamp(0, 1)  # sensor saturates


class NarrowBandImaging(Simulator):
    """NBI-like channel mapping: red suppressed, green and blue carry the signal. A generic NBI matrix,
    jittered per sample (+-0.15 per entry) so no single mapping is learned, blended with the input by
    ``amount``."""
    name, dims, channels, stage = "nbi", (2,), 3, LIGHT
    params = {"amount": Param((0.0, 1.0), (0.6, 1.0), doc="blend between the input (0) and full NBI (1)")}
    _BASE = torch.tensor([[0.25, 0.15, 0.0], [0.45, 0.75, 0.1], [0.35, 0.1, 0.85]])

    def apply(self, x, seg, theta: Theta, generator=None):
        b = x.shape[0]
        m = self._BASE[None] + (torch.rand(b, 3, 3, generator=generator) - 0.5) * 0.3
        y = torch.einsum("bij,bjhw->bihw", m.clamp_min(0).to(x.device, x.dtype), x)
        a = expand(theta["amount"], 4)
        return a * y + (1 - a) * x


class Vignetting(Simulator):
    """Radial darkening towards the corners, centre jittered by up to 10 % of the frame."""
    name, dims, channels, stage = "vignetting", (2,), None, OPTICS
    params = {"strength": Param((0.0, 1.0), (0.2, 0.6), doc="relative darkening at the corners")}

    def apply(self, x, seg, theta: Theta, generator=None):
        b = x.shape[0]
        grid = coordinates(x.shape[2:], x)
        off = ((torch.rand(b, 2, generator=generator) - 0.5) * 0.2).to(x.device, x.dtype)
        r2 = ((grid[None] - off[..., None, None]) ** 2).sum(1, keepdim=True) / 2
        return x * (1 - expand(theta["strength"], 4) * r2).clamp_min(0)


class Exposure(Simulator):
    """Over- / under-exposure: global gain then gamma, clipped at saturation."""
    name, dims, channels, stage = "exposure", (2, 3), None, LIGHT
    params = {"gain": Param((0.2, 4.0), (0.6, 1.5)), "gamma": Param((0.3, 3.0), (0.8, 1.25))}

    def apply(self, x, seg, theta: Theta, generator=None):
        return (x * expand(theta["gain"], x.ndim)).clamp(0, 1) ** expand(theta["gamma"], x.ndim)


class UnevenIllumination(Simulator):
    """Uneven lighting and shadows: a smooth random multiplicative field ``exp(strength * f)``."""
    name, dims, channels, stage = "uneven_illumination", (2, 3), None, LIGHT
    params = {"strength": Param((0.0, 1.5), (0.2, 0.6))}

    def apply(self, x, seg, theta: Theta, generator=None):
        f = smooth_field(x.shape[0], x.shape[2:], 3, x, generator)
        return x * torch.exp(expand(theta["strength"], x.ndim) * f)


class DefocusBlur(Simulator):
    """Out-of-focus blur (kornia ``gaussian_blur2d``, per-sample sigma in pixels)."""
    name, dims, channels, stage = "defocus_blur", (2,), None, OPTICS
    params = {"sigma": Param((0.0, 8.0), (0.5, 2.0), doc="Gaussian sigma in pixels")}

    def apply(self, x, seg, theta: Theta, generator=None):
        from kornia.filters import gaussian_blur2d

        s = theta["sigma"].clamp_min(0.05)
        k = 2 * int(torch.ceil(3 * s.max()).item()) + 1
        return gaussian_blur2d(x, (k, k), torch.stack([s, s], 1), border_type="replicate")


class MotionBlur(Simulator):
    """Motion blur along a random direction (kornia ``motion_blur``)."""
    name, dims, channels, stage = "motion_blur", (2,), None, OPTICS
    params = {"length": Param((3, 31), (3, 9), True, "kernel length in pixels (odd)")}

    def apply(self, x, seg, theta: Theta, generator=None):
        from kornia.filters import motion_blur

        b = x.shape[0]
        k = int(theta["length"].max().item()) | 1
        angle = (torch.rand(b, generator=generator) * 360).to(x.device, x.dtype)
        direction = (torch.rand(b, generator=generator) * 2 - 1).to(x.device, x.dtype)
        return motion_blur(x, k, angle, direction, border_type="replicate")


class SensorNoise(Simulator):
    """Additive Gaussian sensor noise plus signal-dependent shot noise of the same sigma at full scale."""
    name, dims, channels, stage = "sensor_noise", (2, 3), None, SENSOR
    params = {"sigma": Param((0.0, 0.3), (0.01, 0.06), doc="noise sigma (fraction of full scale)")}

    def apply(self, x, seg, theta: Theta, generator=None):
        s = expand(theta["sigma"], x.ndim)
        n = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        return x + s * n * (0.5 + 0.5 * x.clamp(0, 1).sqrt())


class JPEGBlocking(Simulator):
    """JPEG compression artefacts (kornia ``jpeg_codec_differentiable``; padded to a multiple of 16 px)."""
    name, dims, channels, stage = "jpeg", (2,), 3, DIGITAL
    params = {"quality": Param((1, 100), (20, 70), doc="JPEG quality")}

    def apply(self, x, seg, theta: Theta, generator=None):
        from kornia.enhance import jpeg_codec_differentiable

        h, w = x.shape[2:]
        ph, pw = (-h) % 16, (-w) % 16
        y = F.pad(x.clamp(0, 1), (0, pw, 0, ph), mode="replicate")
        y = jpeg_codec_differentiable(y, theta["quality"].to(y.dtype))
        return y[..., :h, :w]


class MucusBubbles(Simulator):
    """Translucent bubbles: rings with a bright rim and a slightly brighter, smoother inside."""
    name, dims, channels, stage = "mucus_bubbles", (2,), None, SCENE
    params = {"count": Param((0, 30), (1, 6), True), "radius": Param((0.01, 0.3), (0.03, 0.08))}

    def apply(self, x, seg, theta: Theta, generator=None):
        b = x.shape[0]
        n = int(theta["count"].max().item())
        if n == 0:
            return x
        centres = (torch.rand(b, n, 2, generator=generator) * 1.8 - 0.9).to(x.device, x.dtype)
        radii = 2 * theta["radius"][:, None] * (torch.rand(b, n, generator=generator) * 0.8 + 0.6).to(x.device, x.dtype)
        active = torch.arange(n, device=x.device)[None] < theta["count"][:, None]
        inner = _blobs(x.shape[2:], centres, radii * 0.8, active)
        outer = _blobs(x.shape[2:], centres, radii, active)
        rim = (outer - inner).clamp(0, 1)
        smooth = gaussian_blur(x, torch.full((b,), 1.0, device=x.device))
        y = x + inner * (0.6 * smooth + 0.4 * 0.9 - x) * 0.5
        return y * (1 - rim) + rim * 0.95


class BloodTint(Simulator):
    """Blood on the mucosa: smooth random patches tinted dark red (green and blue absorbed)."""
    name, dims, channels, stage = "blood_tint", (2,), 3, SCENE
    params = {"amount": Param((0.0, 1.0), (0.2, 0.6)), "coverage": Param((0.05, 0.9), (0.1, 0.4))}

    def apply(self, x, seg, theta: Theta, generator=None):
        b = x.shape[0]
        f = smooth_field(b, x.shape[2:], 4, x, generator)
        thr = torch.special.ndtri(1 - theta["coverage"].clamp(0.01, 0.99))   # f is ~N(0, 1) per sample
        m = torch.sigmoid((f - expand(thr, 4)) * 4)
        tint = torch.tensor([0.75, 0.35, 0.35], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        a = expand(theta["amount"], 4) * m
        return x * (1 - a) + x * tint * a


class BlackBorders(Simulator):
    """Partially occluded field of view: black outside a circle (the scope's round field), corners first."""
    name, dims, channels, stage = "black_borders", (2,), None, DIGITAL
    params = {"width": Param((0.0, 0.4), (0.05, 0.2), doc="fraction of the half-diagonal cut off")}

    def apply(self, x, seg, theta: Theta, generator=None):
        grid = coordinates(x.shape[2:], x)
        r = (grid ** 2).sum(0).sqrt()[None, None] / (2 ** 0.5)
        inside = torch.sigmoid(((1 - expand(theta["width"], 4)) - r) * 80)
        return x * inside


ENDOSCOPY_SIMULATORS = (SpecularHighlights, HighlightRemoval, StructureColour, StructureConspicuity, StructureTexture, ColourCast,
                        NarrowBandImaging, Vignetting, Exposure, UnevenIllumination, DefocusBlur, MotionBlur,
                        SensorNoise, JPEGBlocking, MucusBubbles, BloodTint, BlackBorders)
