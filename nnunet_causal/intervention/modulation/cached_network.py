"""The text network split into encoder, bottleneck and decoder + head, and a wrapper that caches the first
two per sliding-window call, so an edit re-runs the decoder only.

nnU-Net's sliding window (``nnUNetPredictor.predict_sliding_window_return_logits``) calls the network once
per tile and mirror, always in the same order for the same image. :class:`CachingNetwork` is handed to it in
place of the network:

* ``record`` mode: encoder -> bottleneck -> decoder + text head, as ``TextPromptedSegmentationNetwork.forward``
  computes them (the same operations in the same order, so the logits are bit-identical to a plain
  prediction); the encoder skips, the deepest feature before the bottleneck and after it are kept per call;
* ``replay`` mode: the input tile is ignored, the next cached features are taken and only the decoder and the
  head run, under the FiLM hooks of an edit and/or with a bottleneck recomputed by a do-operation
  (``bottleneck_override``).

With ``record_stage = s`` the record pass also keeps the (unmodulated) output of ``decoder.stages[s]`` per
call (``stage_cache``): an edit whose FiLM starts at stage ``s`` resumes the decoder there
(:mod:`~nnunet_causal.intervention.modulation.tail_window`) instead of replaying it through nnU-Net's loop.

The cache lives on the device the network runs on; its size is that of every encoder feature map of every
tile and mirror (2D slices: small; large 3D volumes with mirroring: several GB -- predict without mirroring
or with a coarser step size there).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from nnunet_causal.networks.text_head import prompt_logits


def encode(network: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """Encoder skips, deepest last (before the bottleneck)."""
    return list(network.backbone.encoder(x))


def apply_bottleneck(network: nn.Module, skips: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Skips with the deepest one through the confounder bottleneck (unchanged without one)."""
    skips = list(skips)
    if network.bottleneck is not None:
        skips[-1], _ = network.bottleneck(skips[-1], network.prompt_embeddings)
    return skips


def decode(network: nn.Module, skips: Sequence[torch.Tensor]) -> torch.Tensor:
    """Decoder + text head at the highest resolution: logits (B, K + add_background, *spatial) of the trained
    prompts (channel 0 the constant background logit where the model has one)."""
    feats = network.backbone.decoder(list(skips))
    return head_logits(network, feats[0] if isinstance(feats, (list, tuple)) else feats)


def head_logits(network: nn.Module, f: torch.Tensor) -> torch.Tensor:
    """The text head on the highest-resolution voxel embeddings ``f`` (B, E, *spatial) (see :func:`decode`)."""
    queries, bias = network.connector(network.prompt_embeddings, f)
    logits = prompt_logits(f, queries[:, :, 0], bias[:, :, 0])
    if network.add_background:
        logits = torch.cat((torch.zeros_like(logits[:, :1]), logits), 1)
    return logits


class CachingNetwork(nn.Module):
    """See the module docstring. ``network`` is a :class:`TextPromptedSegmentationNetwork` in eval mode."""

    def __init__(self, network: nn.Module):
        super().__init__()
        if network.inference_groups is not None:
            raise ValueError("intervention works on the trained prompts; clear set_inference_prompts first")
        self.network = network
        self.mode = "record"
        self.cache: List[Tuple[List[torch.Tensor], torch.Tensor]] = []  # (skips after bottleneck, deepest before)
        self._cursor = 0
        self.encoder_calls = 0
        self.decoder_calls = 0
        #: replay only: ``f(deepest feature before the bottleneck) -> deepest feature after it``
        self.bottleneck_override: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        #: replay only: take every ``stride``-th recorded call (the unmirrored one of each tile when the record
        #: pass mirrored ``stride - 1`` times and the replay does not mirror)
        self.stride = 1
        #: record only: keep the output of ``decoder.stages[record_stage]`` per call (``None``: keep nothing)
        self.record_stage: Optional[int] = None
        self.stage_cache: List[torch.Tensor] = []

    def start_record(self) -> None:
        self.mode, self.cache, self.stage_cache, self._cursor = "record", [], [], 0

    def start_replay(self, stride: int = 1) -> None:
        if not self.cache:
            raise RuntimeError("nothing cached: predict the case first")
        self.mode, self._cursor, self.stride = "replay", 0, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.network
        if self.mode == "record":
            skips = encode(net, x)
            self.encoder_calls += 1
            deepest = skips[-1]
            skips = apply_bottleneck(net, skips)
            self.cache.append((skips, deepest))
            if self.record_stage is not None:
                stage = net.decoder.stages[self.record_stage]
                handle = stage.register_forward_hook(lambda m, i, o: self.stage_cache.append(o))
                try:
                    self.decoder_calls += 1
                    return decode(net, skips)
                finally:
                    handle.remove()
        else:
            index = self._cursor * self.stride
            if index >= len(self.cache):
                raise RuntimeError(f"replay asked for call {index + 1} but only {len(self.cache)} were "
                                   f"recorded (the sliding window changed between prediction and edit)")
            skips, deepest = self.cache[index]
            if skips[0].shape[0] != x.shape[0] or skips[0].shape[2:] != x.shape[2:]:
                raise RuntimeError("replayed features do not match the tile shape")
            self._cursor += 1
            if self.bottleneck_override is not None:
                skips = list(skips)
                skips[-1] = self.bottleneck_override(deepest)
        self.decoder_calls += 1
        return decode(net, skips)
