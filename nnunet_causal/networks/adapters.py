"""Low-rank adapters (LoRA, Hu et al. 2022) on convolutions, and the bookkeeping of a parameter-efficient run.

LoRA keeps a pretrained weight ``W`` frozen and learns a low-rank update, ``W' = W + (alpha / r) B A``. For a
convolution with kernel ``k`` the update is itself two convolutions, as in the LoRA paper's conv variant and
peft's ``lora.Conv3d``: ``A`` a ``k``-kernel convolution ``C_in -> r`` with the layer's stride / padding,
``B`` a 1x1 convolution ``r -> C_out`` initialised to zero (an untrained adapter leaves the network
unchanged)::

    y = conv(x; W, b) + (alpha / r) * B(A(x))          x (N, C_in, *S) -> y (N, C_out, *S')

Written here rather than taken from ``peft``: peft wraps a layer in a new module and renames its weights
(``conv1.weight`` -> ``conv1.base_layer.weight``), which breaks the key layout that released STU-Net
checkpoints, earlier nnU-Net runs and nnU-Net's strict ``load_state_dict`` at prediction rely on; these
classes subclass ``nn.Conv2d`` / ``nn.Conv3d`` instead, so the frozen weight keeps its key and only
``lora_down.weight`` / ``lora_up.weight`` are added. It also avoids a dependency for ~60 lines.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, Tuple

from torch import nn

from nnunet_causal.errors import NnunetCausalError

#: substrings of the state-dict keys that adapters add (checkpoints of other runs do not have them)
ADAPTER_KEYS = (".lora_down.", ".lora_up.")


def is_adapter_key(key: str) -> bool:
    return any(tag in key for tag in ADAPTER_KEYS)


class _LoRAConvMixin:
    """``forward = conv(x) + scaling * lora_up(lora_down(x))``; see the module docstring."""

    def _add_lora(self, rank: int, alpha: float) -> None:
        conv, w = self._conv, self.weight
        self.lora_down = conv(self.in_channels, rank, self.kernel_size, stride=self.stride, padding=self.padding,
                              dilation=self.dilation, bias=False, device=w.device, dtype=w.dtype)
        self.lora_up = conv(rank, self.out_channels, 1, bias=False, device=w.device, dtype=w.dtype)
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)
        self.rank, self.scaling = rank, alpha / rank

    @classmethod
    def from_conv(cls, conv, rank: int, alpha: float = None):
        """An adapted copy of ``conv`` sharing its ``weight`` / ``bias`` parameters (no copy, same device)."""
        if conv.groups != 1:
            raise ValueError("LoRA adapters need an ungrouped convolution")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, bias=False, padding_mode=conv.padding_mode, device="meta")
        new.weight, new.bias = conv.weight, conv.bias
        new._add_lora(rank, float(alpha if alpha is not None else rank))
        return new

    def forward(self, x):
        return super().forward(x) + self.scaling * self.lora_up(self.lora_down(x))


class LoRAConv2d(_LoRAConvMixin, nn.Conv2d):
    """``nn.Conv2d`` plus a rank-``r`` update (2D); keys ``weight``, ``bias``, ``lora_down.*``, ``lora_up.*``."""
    _conv = nn.Conv2d


class LoRAConv3d(_LoRAConvMixin, nn.Conv3d):
    """``nn.Conv3d`` plus a rank-``r`` update (3D); keys ``weight``, ``bias``, ``lora_down.*``, ``lora_up.*``."""
    _conv = nn.Conv3d


_LORA = {nn.Conv2d: LoRAConv2d, nn.Conv3d: LoRAConv3d}


def add_conv_adapters(module: nn.Module, rank: int, exclude: Iterable[nn.Module] = ()) -> int:
    """Replace every spatial (kernel > 1) ``nn.Conv2d`` / ``nn.Conv3d`` inside ``module`` by its LoRA version,
    except those inside the modules of ``exclude`` (e.g. the encoder that dynamic-network-architectures'
    decoders keep a reference to). 1x1 convolutions (upsampling projections, skip projections, output
    layers) are left alone. Every reference to a replaced convolution is updated (DNA blocks hold their
    conv twice, as ``conv`` and in ``all_modules``). Returns the number of adapted convolutions."""
    if rank < 1:
        raise ValueError(f"adapter rank must be >= 1, got {rank}")
    skip = {id(m) for ex in exclude for m in ex.modules()}
    replaced: Dict[int, nn.Module] = {}
    for m in module.modules():
        if id(m) not in skip and type(m) in _LORA and math.prod(m.kernel_size) > 1 and m.groups == 1:
            replaced[id(m)] = _LORA[type(m)].from_conv(m, rank)
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if id(child) in replaced:
                setattr(parent, name, replaced[id(child)])
    return len(replaced)


def set_trainable(network: nn.Module, is_trainable: Callable[[str], bool]) -> Tuple[int, int]:
    """``requires_grad`` = ``is_trainable(name)`` for every named parameter; returns ``(trainable, total)``
    parameter counts (shared parameters counted once)."""
    for name, p in network.named_parameters():
        p.requires_grad_(bool(is_trainable(name)))
    return count_parameters(network)


def count_parameters(network: nn.Module) -> Tuple[int, int]:
    """``(trainable, total)`` numbers of parameter elements (works on the meta device)."""
    params = list(network.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# ---------------------------------------------------------------- the text network's parameter-efficient mode
#: parameters trained in parameter-efficient mode besides the adapters: text connector, confounder bottleneck,
#: and the backbone's 1x1 output layers (they map decoder features to the voxel embedding; task specific)
PEFT_TRAINABLE_PREFIXES = ("connector.", "bottleneck.", "backbone.decoder.seg_layers.")


def add_decoder_adapters(network: nn.Module, rank: int) -> int:
    """LoRA adapters of ``rank`` on the spatial convolutions of ``network.backbone.decoder`` (a
    :class:`~nnunet_causal.networks.text_network.TextPromptedSegmentationNetwork`); the encoder, which
    nnU-Net's decoders hold a reference to, is left alone. Returns the number of adapted convolutions."""
    backbone = network.backbone
    n = add_conv_adapters(backbone.decoder, rank, exclude=[backbone.encoder])
    if n == 0:
        raise NnunetCausalError(f"{type(backbone).__name__}'s decoder has no spatial convolution to adapt: the "
                                f"parameter-efficient mode needs a U-Net-like decoder (STUNet, PlainConvUNet, ResEnc)")
    return n


def freeze_pretrained(network: nn.Module) -> Tuple[int, int]:
    """Freeze everything a pretrained backbone knows (encoder and decoder); train the adapters and the
    parts of :data:`PEFT_TRAINABLE_PREFIXES`. Returns ``(trainable, total)`` parameter counts."""
    return set_trainable(network, lambda name: is_adapter_key(name) or name.startswith(PEFT_TRAINABLE_PREFIXES))
