"""Image-level causal interventions: GIN and IPA (Ouyang et al., "Causality-inspired single-source domain
generalization for medical image segmentation", IEEE TMI 2022).

GIN -- global intensity non-linear augmentation. A shallow convolutional network with random weights,
re-drawn for every sample, maps the image to a new appearance while keeping its geometry::

    y = conv_L(lrelu(... lrelu(conv_1(x))))      kernels k_l in {1, 3}, weights ~ N(0, 1), hidden width 2C
    y <- (y - mean(y)) / std(y) * std(x) + mean(x)   per sample and channel (input statistics restored)
    x_GIN = a * y + (1 - a) * x,   a ~ U(0, 1)

IPA -- interventional pseudo-correlation augmentation. Two independent GIN views are blended through a
smooth random mask ``b`` (low-resolution uniform noise upsampled with cubic interpolation and blurred,
values in [0, 1]) so the appearance of different regions changes independently, which breaks correlations
between the appearance of one object and its surroundings::

    x_IPA = b * GIN_1(x) + (1 - b) * GIN_2(x)

The paper pairs IPA with a consistency term between the predictions for the GIN view and the IPA view of
the same image: we use the symmetric KL divergence between the softmax (or sigmoid) outputs at full
resolution, weight ``consistency_weight = 1.0`` (our choice: the segmentation loss is O(1) on nnU-Net's
Dice + CE scale, so a unit weight keeps both terms comparable; the paper's value is tuned to its loss).

Intervention probability: the paper turns every training image into a GIN/IPA view. The trainers apply the
views to a random half of the samples by default (:func:`mix_with_original`, ``intervention_probability =
0.5``; ``*_AlwaysIntervene`` trainers use 1.0): on our synthetic leave-one-site-out benchmark (short CPU
schedule) every-sample interventions trailed stock in-domain by 5-20 Dice points in one 3-seed run; with
half of the samples the in-domain mean was at or above stock (benchmarks/RESULTS_cpu.md).

Defaults: 4 layers, hidden width 2C (at least 4), kernels drawn from {1, 3}, leaky-ReLU slope 0.2,
mask grid 4 cells per axis. Both run batched on the training device (one grouped convolution per layer
for the whole batch); :class:`GINTransform` runs the same code per sample in nnU-Net's augmentation
workers instead.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from batchgeneratorsv2.transforms.base.basic_transform import ImageOnlyTransform
from torch.nn import functional as F

from nnunet_causal.errors import DatasetError


def _conv(ndim: int):
    return F.conv2d if ndim == 2 else F.conv3d


def check_patch(x: torch.Tensor, kernel: int = 3) -> None:
    """A clear error for patches smaller than the random kernels (shapes only: no host-device sync)."""
    if min(x.shape[2:]) < kernel:
        raise DatasetError(f"patch {tuple(x.shape[2:])} is smaller than the random GIN kernels ({kernel}); "
                           f"use a larger patch size")


def check_batch(x: torch.Tensor, keys: Optional[Sequence[str]] = None, kernel: int = 3) -> None:
    """Clear errors for NaN/inf intensities (naming the cases) and patches smaller than the kernels, at once
    (this reads the device; trainers use :func:`~nnunet_causal.training.steps.nonfinite_flags` instead)."""
    finite = torch.isfinite(x.flatten(1)).all(1)
    if not bool(finite.all()):
        bad = [str(keys[i]) if keys is not None else f"sample {i}" for i in torch.nonzero(~finite).flatten().tolist()]
        raise DatasetError(f"NaN or infinite intensities in case(s) {', '.join(bad)}: fix or remove them before "
                           f"training")
    check_patch(x, kernel)


def gin(x: torch.Tensor, num_layers: int = 4, hidden: Optional[int] = None, slope: float = 0.2,
        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One random GIN view per sample of ``x`` (B, C, *spatial), 2D or 3D, any channel count."""
    b, c = x.shape[:2]
    ndim = x.ndim - 2
    conv = _conv(ndim)
    hidden = hidden or max(4, 2 * c)
    dev, dt = x.device, x.dtype
    h = x.reshape(1, b * c, *x.shape[2:])
    cin = c
    for layer in range(num_layers):
        cout = c if layer == num_layers - 1 else hidden
        k = int(torch.randint(0, 2, (1,), generator=generator).item()) * 2 + 1  # 1 or 3 (a CPU draw: no sync)
        w = _randn((b * cout, cin, *([k] * ndim)), dev, dt, generator)
        w = w / math.sqrt(cin * k ** ndim)
        h = conv(h, w, padding=k // 2, groups=b)
        if layer < num_layers - 1:
            h = F.leaky_relu(h, slope)
        cin = cout
    y = h.reshape(b, c, *x.shape[2:])
    dims = tuple(range(2, x.ndim))
    mx, sx = x.mean(dims, keepdim=True), x.std(dims, keepdim=True)
    my, sy = y.mean(dims, keepdim=True), y.std(dims, keepdim=True)
    y = (y - my) / sy.clamp_min(1e-6) * sx + mx
    y = torch.where(sx > 1e-6, y, x)  # constant channels stay as they are
    a = _rand((b,) + (1,) * (x.ndim - 1), dev, dt, generator)
    return a * y + (1 - a) * x


def _randn(shape, device, dtype, generator=None) -> torch.Tensor:
    """Random normal numbers drawn where they are used (on the training device) unless a CPU ``generator``
    asks for reproducible draws; no host-to-device copy per layer on a GPU."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=generator).to(device, dtype)


def _rand(shape, device, dtype, generator=None) -> torch.Tensor:
    if generator is None:
        return torch.rand(shape, device=device, dtype=dtype)
    return torch.rand(shape, generator=generator).to(device, dtype)


def mix_with_original(views: torch.Tensor, original: torch.Tensor, probability: float,
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Per sample, ``views[b]`` with probability ``probability``, else the untouched ``original[b]``.

    ``probability = 1`` (the paper's setting) returns ``views``; lower values keep some clean images in every
    batch, which trades some robustness for in-domain accuracy on short schedules.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"intervention probability must lie in [0, 1], got {probability}")
    if probability >= 1.0:
        return views
    b = views.shape[0]
    chosen = (torch.rand(b, generator=generator) < probability).to(views.device)
    return torch.where(chosen.view(b, *([1] * (views.ndim - 1))), views, original)


def smooth_mask(shape: Sequence[int], batch: int, grid: int = 4, device=None, dtype=torch.float32,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Low-frequency random mask ``(B, 1, *shape)`` in [0, 1]."""
    ndim = len(shape)
    coarse = _rand((batch, 1) + (grid,) * ndim, device, torch.float32, generator)  # upsampled on the device
    mode = "bicubic" if ndim == 2 else "trilinear"
    m = F.interpolate(coarse, size=tuple(shape), mode=mode, align_corners=False)
    return m.clamp(0, 1).to(dtype=dtype)


def ipa(x: torch.Tensor, grid: int = 4, generator: Optional[torch.Generator] = None, **gin_kwargs) -> torch.Tensor:
    """IPA view: two GIN views blended through a smooth mask."""
    m = smooth_mask(x.shape[2:], x.shape[0], grid, x.device, x.dtype, generator)
    return m * gin(x, generator=generator, **gin_kwargs) + (1 - m) * gin(x, generator=generator, **gin_kwargs)


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor, sigmoid: bool = False) -> torch.Tensor:
    """Symmetric KL between the class distributions of two predictions (mean over voxels)."""
    if sigmoid:
        pa, pb = torch.sigmoid(logits_a), torch.sigmoid(logits_b)
        la, lb = F.logsigmoid(logits_a), F.logsigmoid(logits_b)
        na, nb = F.logsigmoid(-logits_a), F.logsigmoid(-logits_b)
        kl = pa * (la - lb) + (1 - pa) * (na - nb) + pb * (lb - la) + (1 - pb) * (nb - na)
        return kl.mean()
    la, lb = F.log_softmax(logits_a, 1), F.log_softmax(logits_b, 1)
    return ((la.exp() * (la - lb)).sum(1) + (lb.exp() * (lb - la)).sum(1)).mean() / 2


class GINTransform(ImageOnlyTransform):
    """batchgeneratorsv2 transform running GIN (or IPA) on one sample's image ``(C, *spatial)`` in nnU-Net's
    data-augmentation workers; segmentations are untouched."""

    def __init__(self, p: float = 1.0, use_ipa: bool = False, num_layers: int = 4):
        super().__init__()
        self.p, self.use_ipa, self.num_layers = p, use_ipa, num_layers

    def get_parameters(self, **data_dict) -> dict:
        return {"apply": bool(torch.rand(()) < self.p)}

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        if not params["apply"]:
            return img
        x = img.unsqueeze(0).float()
        y = ipa(x, num_layers=self.num_layers) if self.use_ipa else gin(x, num_layers=self.num_layers)
        return y[0].to(img.dtype)
