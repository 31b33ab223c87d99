"""What a confounder simulator is: a do(z) on a batch, with named parameters and their allowed ranges.

A simulator sets one imaging confounder z of a batch ``x`` (B, C, *spatial) -- 2D or 3D, on any device --
independently of the anatomy: ``x' = s(x, seg; theta)``, ``theta ~ U(lo, hi)`` per sample. It may *read*
the label map ``seg`` (B, 1, *spatial; integer values, nnU-Net's ignore label excluded by the caller) to act
on a structure relative to its surroundings (colour / intensity contrast, texture: the cue a global change
keeps), but never changes it: the label of a counterfactual image is the factual label.

Simulators work in a physical *working space* (RGB in [0, 1], CT in HU, MR intensities in [0, 1]) that
:class:`IntensityFrame` maps to and from nnU-Net's normalised values, so one parameter range means the same
thing on every dataset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch.nn import functional as F

#: order in which drawn simulators are applied (scene -> light -> optics -> sensor -> digital), so that e.g.
#: a highlight is blurred by defocus and compressed by JPEG, as in a real camera
SCENE, LIGHT, OPTICS, SENSOR, DIGITAL = range(5)


@dataclass(frozen=True)
class Param:
    """One parameter: hard ``bounds`` (a dictionary line may not leave them) and the ``default`` range used
    when a line does not give one. ``integer`` parameters are rounded after drawing."""
    bounds: Tuple[float, float]
    default: Tuple[float, float]
    integer: bool = False
    doc: str = ""


class Simulator:
    """Base class. Subclasses set the class attributes and implement :meth:`apply`.

    name: registry name used in dictionary lines; dims: supported spatial dimensionalities; channels: the
    channel count required (None = any); stage: application order (see module constants); order: order
    within a stage (lower first: what removes content already in the image, e.g. reflections, runs before
    what changes a structure's appearance, and what paints on top, e.g. new reflections, runs last -- a
    removal after a rescaling no longer finds the saturated pixels it looks for); params: the
    :class:`Param` of each keyword; label_aware: whether :meth:`apply` reads ``seg``.
    """
    name: str = ""
    dims: Tuple[int, ...] = (2, 3)
    channels: Optional[int] = None
    stage: int = LIGHT
    order: int = 0
    params: Dict[str, Param] = {}
    label_aware: bool = False

    def __init__(self, **ranges: Tuple[float, float]):
        """``ranges[param] = (lo, hi)`` overrides a parameter's default range; checked against its bounds."""
        unknown = sorted(set(ranges) - set(self.params))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} of simulator '{self.name}' (parameters: "
                             f"{', '.join(self.params) or 'none'})")
        self.ranges: Dict[str, Tuple[float, float]] = {}
        for key, p in self.params.items():
            lo, hi = (float(v) for v in ranges.get(key, p.default))
            if lo > hi:
                raise ValueError(f"simulator '{self.name}': {key}={lo:g}..{hi:g} has lo > hi")
            if lo < p.bounds[0] or hi > p.bounds[1]:
                raise ValueError(f"simulator '{self.name}': {key}={lo:g}..{hi:g} lies outside the allowed "
                                 f"{p.bounds[0]:g}..{p.bounds[1]:g}")
            self.ranges[key] = (lo, hi)

    def draw(self, batch: int, like: torch.Tensor, generator: Optional[torch.Generator] = None
             ) -> Dict[str, torch.Tensor]:
        """Per-sample parameters ``theta[param]`` (B,), uniform in the ranges (integers rounded)."""
        theta = {}
        for key, (lo, hi) in self.ranges.items():
            v = rand(batch, lo, hi, like, generator)
            theta[key] = v.round() if self.params[key].integer else v
        return theta

    def uniform(self, key: str, shape: Tuple[int, ...], like: torch.Tensor, generator=None) -> torch.Tensor:
        """Extra draws of parameter ``key`` in its range (e.g. one gain per channel), shape ``shape``."""
        lo, hi = self.ranges[key]
        return (torch.rand(shape, generator=generator) * (hi - lo) + lo).to(like.device, like.dtype)

    def __repr__(self) -> str:
        return f"{self.name}(" + ", ".join(f"{k}={lo:g}..{hi:g}" for k, (lo, hi) in self.ranges.items()) + ")"

    def apply(self, x: torch.Tensor, seg: Optional[torch.Tensor], theta: Dict[str, torch.Tensor],
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``x`` (B, C, *spatial) in working space; ``theta[name]`` (B,) per-sample values; returns the same
        shape. Must not modify ``x`` or ``seg`` in place."""
        raise NotImplementedError

    def supports(self, ndim: int, num_channels: int) -> Optional[str]:
        """None if the simulator runs on such data, else the reason why not (for error messages)."""
        if ndim not in self.dims:
            return f"works on {' / '.join(f'{d}D' for d in self.dims)} data only, the data are {ndim}D"
        if self.channels is not None and num_channels != self.channels:
            return f"needs {self.channels} channel(s), the data have {num_channels}"
        return None


# ------------------------------------------------------------------ small batched helpers (any device)
def rand(batch: int, lo: float, hi: float, like: torch.Tensor, generator=None) -> torch.Tensor:
    """(B,) uniform draws on ``like``'s device (drawn on the CPU generator for reproducibility)."""
    return (torch.rand(batch, generator=generator) * (hi - lo) + lo).to(like.device, like.dtype)


def expand(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) broadcastable against a (B, C, *spatial) tensor of ``ndim`` dims."""
    return v.view(-1, *([1] * (ndim - 1)))


def coordinates(shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """(D, *shape) coordinates in [-1, 1] per spatial axis."""
    axes = [torch.linspace(-1, 1, s, device=like.device, dtype=like.dtype) for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def smooth_field(batch: int, shape: Sequence[int], grid: int, like: torch.Tensor, generator=None) -> torch.Tensor:
    """(B, 1, *shape) smooth random field with zero mean and unit std per sample (low-res noise, upsampled)."""
    coarse = torch.randn((batch, 1) + (grid,) * len(shape), generator=generator).to(like.device, like.dtype)
    f = F.interpolate(coarse, size=tuple(shape), mode="bicubic" if len(shape) == 2 else "trilinear",
                      align_corners=True)
    dims = tuple(range(2, f.ndim))
    return (f - f.mean(dims, keepdim=True)) / f.std(dims, keepdim=True).clamp_min(1e-6)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, axes: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, *spatial) with a per-sample ``sigma`` (B,) in voxels, along the given
    spatial ``axes`` (default all). Written here because kornia's blurs are 2D or take one sigma per batch in
    3D; one grouped convolution per axis."""
    b, c = x.shape[:2]
    nd = x.ndim - 2
    axes = list(range(nd)) if axes is None else list(axes)
    smax = float(sigma.max()) if sigma.numel() else 0.0
    if smax <= 0.05:
        return x
    radius = max(1, int(math.ceil(3 * smax)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.clamp_min(1e-3).to(x.dtype).view(b, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / s) ** 2)
    k = k / k.sum(1, keepdim=True)                      # (B, K)
    k = k.repeat_interleave(c, 0)                       # (B*C, K)
    conv = F.conv2d if nd == 2 else F.conv3d
    h = x.reshape(1, b * c, *x.shape[2:])
    for ax in axes:
        shape = [1] * nd
        shape[ax] = 2 * radius + 1
        pad = [0] * (2 * nd)
        pad[2 * (nd - 1 - ax)] = pad[2 * (nd - 1 - ax) + 1] = radius
        h = conv(F.pad(h, pad, mode="replicate"), k.view(b * c, 1, *shape), groups=b * c)
    out = h.reshape(x.shape)
    keep = expand(sigma <= 0.05, x.ndim)
    return torch.where(keep, x, out)


def soft_mask(seg: torch.Tensor, value: Optional[int] = None, sigma: float = 0.7) -> torch.Tensor:
    """(B, 1, *spatial) float mask of ``seg > 0`` (or ``seg == value``) with a slightly blurred edge."""
    m = (seg > 0) if value is None else (seg == value)
    m = m.float()
    return gaussian_blur(m, torch.full((m.shape[0],), sigma, device=m.device)).clamp(0, 1)


def per_sample_stat(x: torch.Tensor, fn: str) -> torch.Tensor:
    """(B, C, 1, ...) min / max / mean / std over the spatial axes of each sample and channel."""
    flat = x.flatten(2)
    v = {"min": lambda t: t.amin(2), "max": lambda t: t.amax(2), "mean": lambda t: t.mean(2),
         "std": lambda t: t.std(2)}[fn](flat)
    return v.view(*x.shape[:2], *([1] * (x.ndim - 2)))
