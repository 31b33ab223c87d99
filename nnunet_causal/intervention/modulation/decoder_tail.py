"""The decoder resumed at its first modulated stage: what an edit has to recompute (Test-Time Causal
Intervention, seed 000; FiLM as in :mod:`~nnunet_causal.intervention.modulation.film`).

A FiLM generator that modulates the stages ``S`` (first one ``s0``) leaves everything computed before
``decoder.stages[s0]``'s output -- and that output itself, which FiLM only rescales -- as it was in the base
prediction. :func:`decode_tail` therefore starts from that cached output ``h_s0``::

    x = film_s0(h_s0);  for s > s0: x = film_s(stages[s](cat(up_s(x), skip_s)));  logits = head(seg_layer(x))

which is, operation for operation, what the U-Net decoders used here compute (dynamic-network-architectures'
``UNetDecoder`` with ``transpconvs``, :class:`~nnunet_causal.networks.stunet.STUNetDecoder` with
``upsamples``; both end in ``seg_layers[-1]`` without deep supervision), so its result equals the full
decoder under :func:`~nnunet_causal.intervention.modulation.film.film_hooks` (tested). With ``S`` = the last
stage only, an edit runs no convolution but the 1x1 segmentation layer.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from nnunet_causal.intervention.modulation.cached_network import head_logits
from nnunet_causal.intervention.modulation.film import decoder_stages, modulate


def upsamplers(decoder: nn.Module) -> nn.ModuleList:
    """The decoder's per-stage upsampling modules (``transpconvs`` or ``upsamples``)."""
    for name in ("transpconvs", "upsamples"):
        modules = getattr(decoder, name, None)
        if isinstance(modules, nn.ModuleList):
            return modules
    raise TypeError(f"decoder {type(decoder).__name__} has neither 'transpconvs' nor 'upsamples': an edit cannot "
                    f"resume it at a stage")


def decode_tail(network: nn.Module, start: int, start_output: torch.Tensor, skips: Sequence[torch.Tensor],
                params: Optional[Sequence[Tuple[torch.Tensor, torch.Tensor]]] = None,
                stages: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Logits (B, K + add_background, *spatial) from the unmodulated output of ``decoder.stages[start]``.

    ``skips`` are the encoder skips (deepest last; only those of stages after ``start`` are read);
    ``params[i]`` the FiLM pair of ``stages[i]`` (every stage in ``stages`` must be ``>= start``)."""
    modules = decoder_stages(network)
    ups = upsamplers(network.decoder)
    film = {} if params is None else dict(zip(stages, params))
    if any(s < start for s in film):
        raise ValueError(f"FiLM of stages {sorted(film)} starts before the resumed stage {start}")
    x = start_output
    if start in film:
        x = modulate(x, *film[start])
    for s in range(start + 1, len(modules)):
        x = modules[s](torch.cat((ups[s](x), skips[-(s + 2)]), 1))
        if s in film:
            x = modulate(x, *film[s])
    return head_logits(network, network.decoder.seg_layers[-1](x))
