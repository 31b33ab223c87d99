"""STU-Net (Huang et al. 2023, "STU-Net: Scalable and Transferable Medical Image Segmentation Models
Empowered by Large-Scale Supervised Pre-training"), buildable from nnU-Net plans.

A U-Net whose stages are stacks of residual blocks (conv-norm-act-conv-norm, plus a 1x1 projection on the
skip path when width or stride change, then act). Downsampling is the stride of a stage's first block;
upsampling is nearest-neighbour interpolation followed by a 1x1 convolution; decoder stages concatenate
the skip and apply residual blocks. Sizes (6 stages, widths ``base * [1, 2, 4, 8, 16, 16]``):

=====  =====  ================  =====================================
size   base   blocks per stage  published parameters (105 classes, 3D)
=====  =====  ================  =====================================
S      16     1                 14.6 M
B      32     1                 58.26 M
L      64     2                 440.30 M
H      96     3                 1457.33 M
=====  =====  ================  =====================================

The topology is fixed as in STU-Net's own trainers: 6 stages, 3x3x3 kernels, the plan's first 5 pooling
strides padded with 1 (:func:`stunet_arch_kwargs`). That is what lets one released checkpoint load on any
dataset: the planned number of stages and the anisotropic (1x3x3) kernels nnU-Net picks for thick slices
would change the module tree and the kernel shapes. The :class:`STUNet` class itself stays general (any
number of stages, any kernels), for small test networks.

Module names mirror the released checkpoints block for block (``conv1 norm1 conv2 norm2 conv3``), so
:mod:`nnunet_causal.networks.pretrained` maps their keys by prefix only. Constructor arguments follow
dynamic-network-architectures (explicit ``conv_op`` / ``norm_op`` / ``nonlin`` and their kwargs), so
nnU-Net's ``get_network_from_plans`` builds it from ``"network_class_name":
"nnunet_causal.networks.stunet.STUNet"``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Type, Union

import torch
from torch import nn
from torch.nn import functional as F

STUNET_SIZES = {"S": (16, 1), "B": (32, 1), "L": (64, 2), "H": (96, 3)}
WIDTH_MULTIPLIERS = (1, 2, 4, 8, 16, 16)
#: STU-Net always has 6 stages (5 downsamplings), whatever the dataset
STUNET_NUM_STAGES = 6


def _per_stage(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


class ResidualBlock(nn.Module):
    """``act(norm2(conv2(act(norm1(conv1(x))))) + skip(x))``; ``skip`` is ``conv3`` (1x1, strided) when the
    shape changes, else the identity."""

    def __init__(self, conv_op, in_channels: int, out_channels: int, kernel_size, stride, conv_bias: bool,
                 norm_op, norm_op_kwargs: dict, nonlin, nonlin_kwargs: dict, project: bool = False):
        super().__init__()
        pad = [k // 2 for k in kernel_size] if isinstance(kernel_size, (list, tuple)) else kernel_size // 2
        self.conv1 = conv_op(in_channels, out_channels, kernel_size, stride=stride, padding=pad, bias=conv_bias)
        self.norm1 = norm_op(out_channels, **norm_op_kwargs)
        self.act1 = nonlin(**nonlin_kwargs)
        self.conv2 = conv_op(out_channels, out_channels, kernel_size, padding=pad, bias=conv_bias)
        self.norm2 = norm_op(out_channels, **norm_op_kwargs)
        self.act2 = nonlin(**nonlin_kwargs)
        self.conv3 = conv_op(in_channels, out_channels, 1, stride=stride, bias=conv_bias) if project else None

    def forward(self, x):
        y = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        return self.act2(y + (self.conv3(x) if self.conv3 is not None else x))


def _stack(n_blocks, conv_op, cin, cout, kernel, stride, kw) -> nn.Sequential:
    blocks = [ResidualBlock(conv_op, cin, cout, kernel, stride, project=True, **kw)]
    blocks += [ResidualBlock(conv_op, cout, cout, kernel, 1, **kw) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


class NearestUpsample(nn.Module):
    """Nearest-neighbour upsampling by ``scale`` then a 1x1 convolution (STU-Net's transposed-conv
    replacement, which transfers across patch sizes and resolutions)."""

    def __init__(self, conv_op, in_channels: int, out_channels: int, scale, conv_bias: bool = True):
        super().__init__()
        self.scale = [float(s) for s in scale] if isinstance(scale, (list, tuple)) else float(scale)
        self.conv = conv_op(in_channels, out_channels, 1, bias=conv_bias)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


class STUNetEncoder(nn.Module):
    def __init__(self, stages: nn.ModuleList, output_channels: List[int], strides):
        super().__init__()
        self.stages = stages
        self.output_channels = output_channels
        self.strides = strides

    def forward(self, x) -> List[torch.Tensor]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class STUNetDecoder(nn.Module):
    def __init__(self, upsamples: nn.ModuleList, stages: nn.ModuleList, seg_layers: nn.ModuleList,
                 deep_supervision: bool):
        super().__init__()
        self.upsamples, self.stages, self.seg_layers = upsamples, stages, seg_layers
        self.deep_supervision = deep_supervision

    def forward(self, skips: Sequence[torch.Tensor]):
        x = skips[-1]
        outputs = []
        for s, (up, stage) in enumerate(zip(self.upsamples, self.stages)):
            x = stage(torch.cat((up(x), skips[-(s + 2)]), 1))
            if self.deep_supervision or s == len(self.stages) - 1:
                outputs.append(self.seg_layers[s](x))
        outputs = outputs[::-1]
        return outputs if self.deep_supervision else outputs[0]


class STUNet(nn.Module):
    """STU-Net backbone with ``.encoder`` / ``.decoder`` like dynamic-network-architectures' U-Nets."""

    def __init__(self, input_channels: int, num_classes: int, n_stages: int, features_per_stage: Sequence[int],
                 conv_op: Type[nn.Module], kernel_sizes, strides, n_blocks_per_stage: Union[int, Sequence[int]],
                 n_blocks_per_stage_decoder: Union[int, Sequence[int], None] = None, conv_bias: bool = True,
                 norm_op: Optional[Type[nn.Module]] = None, norm_op_kwargs: Optional[dict] = None,
                 dropout_op=None, dropout_op_kwargs=None, nonlin: Optional[Type[nn.Module]] = None,
                 nonlin_kwargs: Optional[dict] = None, deep_supervision: bool = False):
        super().__init__()
        if len(features_per_stage) != n_stages:
            raise ValueError(f"features_per_stage has {len(features_per_stage)} entries for {n_stages} stages")
        kernels = _per_stage(kernel_sizes, n_stages)
        strides = _per_stage(strides, n_stages)
        blocks = _per_stage(n_blocks_per_stage, n_stages)
        blocks_dec = _per_stage(n_blocks_per_stage_decoder if n_blocks_per_stage_decoder is not None else blocks[:-1],
                                n_stages - 1)
        norm_op = norm_op or (nn.InstanceNorm3d if conv_op is nn.Conv3d else nn.InstanceNorm2d)
        kw = dict(conv_bias=conv_bias, norm_op=norm_op,
                  norm_op_kwargs=norm_op_kwargs if norm_op_kwargs is not None else {"eps": 1e-5, "affine": True},
                  nonlin=nonlin or nn.LeakyReLU, nonlin_kwargs=nonlin_kwargs if nonlin_kwargs is not None else
                  {"inplace": True})
        enc, cin = [], input_channels
        for s in range(n_stages):
            enc.append(_stack(blocks[s], conv_op, cin, features_per_stage[s], kernels[s], strides[s], kw))
            cin = features_per_stage[s]
        self.encoder = STUNetEncoder(nn.ModuleList(enc), list(features_per_stage), strides)
        ups, dec, seg = [], [], []
        for u in range(n_stages - 1):
            below, here = features_per_stage[-1 - u], features_per_stage[-2 - u]
            ups.append(NearestUpsample(conv_op, below, here, strides[-1 - u], conv_bias))
            dec.append(_stack(blocks_dec[u], conv_op, 2 * here, here, kernels[-2 - u], 1, kw))
            seg.append(conv_op(here, num_classes, 1, bias=True))
        self.decoder = STUNetDecoder(nn.ModuleList(ups), nn.ModuleList(dec), nn.ModuleList(seg), deep_supervision)

    def forward(self, x):
        return self.decoder(self.encoder(x))

    @staticmethod
    def initialize(module):
        """He initialisation for convolutions (nnU-Net's ``InitWeights_He(1e-2)``), zero biases."""
        if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(module.weight, a=1e-2)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def compute_conv_feature_map_size(self, input_size) -> int:
        """Rough number of feature-map elements (nnU-Net uses it for VRAM estimates)."""
        total, size = 0, list(input_size)
        for s, stage in enumerate(self.encoder.stages):
            stride = _per_stage(self.encoder.strides[s], len(size))
            size = [i // j for i, j in zip(size, stride)]
            n = 1
            for i in size:
                n *= i
            total += n * self.encoder.output_channels[s] * len(stage) * 3
        return int(total * 2)


def stunet_strides(plan_strides: Optional[Sequence[Sequence[int]]], dim: int) -> List[List[int]]:
    """STU-Net's six per-stage strides from a plan's (nnU-Net 2 ``arch_kwargs["strides"]``, one entry per
    stage, the first being the stem's, normally all ones).

    As STU-Net's trainers do: the plan's downsampling strides (all but the first entry) are cut to the first
    5 and padded with ``[1] * dim`` to 5; the stem (stage 0) never strides. A stride-1 stage still exists,
    so the module tree, and thus every checkpoint key and kernel shape, is the same on every dataset; only
    the resolution at which the deep stages run differs. ``None`` gives the isotropic ``[2] * dim`` strides.
    Returns 6 lists of ``dim`` ints.
    """
    if plan_strides is None:
        down = [[2] * dim for _ in range(STUNET_NUM_STAGES - 1)]
    else:
        down = [[int(v) for v in s] for s in list(plan_strides)[1:STUNET_NUM_STAGES]]
        if any(len(s) != dim for s in down):
            raise ValueError(f"strides {plan_strides} do not all have {dim} entries")
    while len(down) < STUNET_NUM_STAGES - 1:
        down.append([1] * dim)
    return [[1] * dim] + down


def stunet_arch_kwargs(size: str, dim: int, plan_strides: Optional[Sequence[Sequence[int]]] = None) -> dict:
    """``arch_kwargs`` for an nnU-Net plans file describing STU-Net ``size`` (S/B/L/H), 2D or 3D, with
    STU-Net's fixed topology: 6 stages of widths ``base * [1, 2, 4, 8, 16, 16]``, 3x3x3 kernels (3x3 in 2D)
    everywhere and the strides of :func:`stunet_strides` (the plan's first 5, padded with 1). The plan's
    number of stages and kernel sizes are deliberately ignored: released checkpoints assume this topology
    and the published parameter counts are those of this network."""
    size = size.upper()
    if size not in STUNET_SIZES:
        raise ValueError(f"unknown STU-Net size '{size}': choose one of {', '.join(STUNET_SIZES)}")
    if dim not in (2, 3):
        raise ValueError(f"STU-Net is 2D or 3D, got a {dim}D configuration")
    base, depth = STUNET_SIZES[size]
    n = STUNET_NUM_STAGES
    conv = "torch.nn.modules.conv.Conv3d" if dim == 3 else "torch.nn.modules.conv.Conv2d"
    norm = "torch.nn.modules.instancenorm.InstanceNorm3d" if dim == 3 else "torch.nn.modules.instancenorm.InstanceNorm2d"
    return {
        "n_stages": n, "features_per_stage": [base * m for m in WIDTH_MULTIPLIERS], "conv_op": conv,
        "kernel_sizes": [[3] * dim for _ in range(n)], "strides": stunet_strides(plan_strides, dim),
        "n_blocks_per_stage": [depth] * n, "n_blocks_per_stage_decoder": [depth] * (n - 1), "conv_bias": True,
        "norm_op": norm, "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
        "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
    }
