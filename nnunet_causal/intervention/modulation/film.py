"""FiLM generator of Test-Time Causal Intervention (Causal-SAM-LLM, seed 000: "modulate the segmentation
decoder's features").

For a command aimed at structure ``k`` the generator maps a condition vector to one (gamma, beta) pair per
decoder stage ``s`` with ``C_s`` channels, and every decoder stage output ``h_s`` (B, C_s, *spatial) becomes::

    h_s' = gamma_s * h_s + beta_s        (gamma_s, beta_s: (B, C_s), broadcast over space)

The condition is ``[q_k, b_k, onehot(action), strength]``: ``q_k`` (E) and ``b_k`` are the query and bias the
model's own connector makes from the structure's *trained* prompt embedding at the highest output scale
(OpenVocabCT, seed 002: ``logit_k = <q_k, F> + b_k``), so the generator is told which direction of the voxel
embedding space the target lives in; ``action`` is one of :data:`FILM_ACTIONS`; ``strength`` is 1/3, 2/3 or 1
for slight / moderate / strong. The last layer starts at zero, so an untrained generator is the identity
(gamma = 1, beta = 0).

The modulation is applied with forward hooks on ``decoder.stages[s]`` (:func:`film_hooks`), which every
backbone used here has (dynamic-network-architectures' ``UNetDecoder`` for PlainConvUNet / ResEnc, and
:class:`~nnunet_causal.networks.stunet.STUNetDecoder`), so no decoder code is copied or changed.

Which stages. The seed says "the decoder's features" without naming stages. A generator may modulate only
the last ``n`` stages (``stages``, decoder order; all by default and for weights saved before the option
existed). Our choice for new weights (``train-tci --film-stages``, default 2): the last two. Everything
above the first modulated stage -- that stage's own unmodulated output included -- does not depend on the
command, so an edit starts from it (:mod:`~nnunet_causal.intervention.modulation.decoder_tail`) and costs
the last stage(s) only; the benchmark (``benchmarks/RESULTS_intervention_cpu.md``, run R6) measures what
that costs in accuracy.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

#: actions the learned modulation implements (``ignore_confounder`` acts on the bottleneck instead)
FILM_ACTIONS = ("expand", "shrink", "remove", "add")
#: strength word -> scalar fed to the generator
STRENGTH_VALUES = {"slight": 1.0 / 3.0, "moderate": 2.0 / 3.0, "strong": 1.0}


def decoder_stages(network: nn.Module) -> nn.ModuleList:
    """The decoder stages of a text network's backbone (FiLM is applied to their outputs)."""
    stages = getattr(network.decoder, "stages", None)
    if not isinstance(stages, nn.ModuleList) or len(stages) == 0:
        raise TypeError(f"decoder {type(network.decoder).__name__} has no 'stages' ModuleList: test-time "
                        f"modulation needs a U-Net decoder (PlainConvUNet, ResidualEncoderUNet, STUNet)")
    return stages


def target_queries(network: nn.Module) -> torch.Tensor:
    """``(K, E + 1)``: ``[q_k, b_k]`` of every trained structure at the highest output scale, from the model's
    connector applied to its stored prompt embeddings (image independent, also for the cross-attention
    connector, whose image-free part is used)."""
    q, b = network.connector.text_queries(network.prompt_embeddings)  # (K, S, E), (K, S)
    return torch.cat((q[:, 0], b[:, :1]), dim=1)


def condition_vectors(queries: torch.Tensor, targets: torch.Tensor, actions: torch.Tensor,
                      strengths: torch.Tensor) -> torch.Tensor:
    """``(B, E + 1 + len(FILM_ACTIONS) + 1)`` from queries (K, E + 1), target indices (B,) long, action indices
    (B,) long and strength scalars (B,)."""
    onehot = torch.nn.functional.one_hot(actions, len(FILM_ACTIONS)).to(queries.dtype)
    return torch.cat((queries[targets], onehot, strengths.to(queries.dtype)[:, None]), dim=1)


class FiLMGenerator(nn.Module):
    """``cond (B, D) -> [(gamma_s, beta_s)]_s``, each (B, C_s), one pair per modulated stage.

    ``channels`` lists ``C_s`` of every decoder stage in decoder order; ``stages`` the indices of the
    modulated ones (ascending; ``None``: all)."""

    def __init__(self, condition_dim: int, channels: Sequence[int], hidden_dim: int = 128,
                 stages: Optional[Sequence[int]] = None):
        super().__init__()
        self.condition_dim, self.channels, self.hidden_dim = int(condition_dim), [int(c) for c in channels], hidden_dim
        self.stages = list(range(len(self.channels))) if stages is None else sorted(int(s) for s in stages)
        if not self.stages or not all(0 <= s < len(self.channels) for s in self.stages):
            raise ValueError(f"modulated stages {stages} are not among the decoder's {len(self.channels)} stages")
        width = 2 * sum(self.channels[s] for s in self.stages)
        self.net = nn.Sequential(nn.Linear(condition_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, width))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, cond: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        out = self.net(cond)
        params, start = [], 0
        for c in (self.channels[s] for s in self.stages):
            gamma = 1.0 + out[:, start:start + c]
            beta = out[:, start + c:start + 2 * c]
            params.append((gamma, beta))
            start += 2 * c
        return params

    def config(self) -> Dict:
        return {"condition_dim": self.condition_dim, "channels": self.channels, "hidden_dim": self.hidden_dim,
                "stages": self.stages}


def last_stages(num_stages: int, n: Optional[int]) -> List[int]:
    """Indices of the last ``n`` of ``num_stages`` decoder stages (all for ``None`` or ``n >= num_stages``)."""
    if n is not None and n < 1:
        raise ValueError(f"the number of modulated decoder stages must be at least 1, got {n}")
    return list(range(num_stages))[-(n or num_stages):]


def modulate(h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``gamma * h + beta`` with ``gamma, beta`` (B or 1, C) broadcast over the spatial axes of ``h``."""
    shape = (gamma.shape[0], gamma.shape[1]) + (1,) * (h.ndim - 2)
    return h * gamma.view(shape).to(h.dtype) + beta.view(shape).to(h.dtype)


@contextmanager
def film_hooks(network: nn.Module, params: Sequence[Tuple[torch.Tensor, torch.Tensor]],
               stages: Optional[Sequence[int]] = None) -> Iterator[None]:
    """Within the block the output of every modulated ``decoder.stages[s]`` is ``gamma_s * h + beta_s``.

    ``params[i] = (gamma (B, C_s), beta (B, C_s))`` for ``s = stages[i]`` (``None``: every stage); a batch of 1
    broadcasts over any batch (mirrored tiles).
    """
    modules = decoder_stages(network)
    stages = list(range(len(modules))) if stages is None else list(stages)
    if len(params) != len(stages) or not all(0 <= s < len(modules) for s in stages):
        raise ValueError(f"FiLM parameters for {len(params)} decoder stages {stages}, the decoder has "
                         f"{len(modules)}")

    def make_hook(gamma, beta):
        def hook(module, inputs, output):
            return modulate(output, gamma, beta)
        return hook

    handles = [modules[s].register_forward_hook(make_hook(g, b)) for s, (g, b) in zip(stages, params)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def decoder_stage_channels(network: nn.Module, skips: Sequence[torch.Tensor]) -> List[int]:
    """``C_s`` of every decoder stage, measured by one decoder pass on ``skips`` (any backbone)."""
    found: List[int] = []
    handles = [st.register_forward_hook(lambda m, i, o: found.append(int(o.shape[1])))
               for st in decoder_stages(network)]
    try:
        network.decoder(list(skips))
    finally:
        for h in handles:
            h.remove()
    return found
