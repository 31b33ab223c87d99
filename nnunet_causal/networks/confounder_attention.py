"""Confounder cross-attention bottleneck with MTRS region selection (MCDRL, seed 001).

Backdoor adjustment approximated by attention over a confounder dictionary (seed 001, "F_ca = Attn(F, Z)"):
the deepest encoder features ``F`` (B, C, *S) are read as ``N = prod(S)`` queries; the keys and values are
the projected text embeddings ``Z`` (M, D_text) of imaging-style confounder descriptions. ``L`` stacked
pre-norm cross-attention layers (default 3, the seed's accuracy/cost point) produce ``Delta``; the result
returns to the decoder as a residual at every bottleneck position, so its spatial layout is kept::

    F_ca[n] = F[n] + g * m[n] * W_out(Attn^L(W_q F[n], W_kv Z))

``m`` is the MTRS mask (Multi-modal Text-guided Region Selection): features projected to text space,
``t[n] = W_t F[n]``, are compared with the class prompt embeddings ``P`` (K, D_text); the ``ceil(alpha N)``
positions with the highest ``max_k cos(t[n], P_k)`` are intervened on, the rest pass unchanged. ``g`` is
the progressive-schedule gate (0 during warm-up). Selection uses a dense mask (topk + scatter), so shapes
never depend on data: torch.compile friendly, and every parameter takes part in every step (DDP safe;
with ``g = 0`` the attention parameters get zero gradients rather than none).

``W_out`` starts at zero, so an untrained bottleneck is the identity. The dictionary embeddings are a
buffer (computed once from text, saved with the network).
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
from torch import nn
from torch.nn import functional as F


class CrossAttentionLayer(nn.Module):
    """Pre-norm ``q <- q + MHA(LN(q), kv, kv); q <- q + MLP(LN(q))``."""

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model))

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        q = q + self.attn(self.norm_q(q), kv, kv, need_weights=False)[0]
        return q + self.mlp(self.norm_mlp(q))


class ConfounderCrossAttention(nn.Module):
    """See the module docstring. ``num_layers = 0`` keeps only the text projection (no intervention), which
    the "no bottleneck" ablation uses so that the causal losses stay comparable."""

    def __init__(self, channels: int, num_confounders: int, text_dim: int, d_model: int = 64, num_layers: int = 3,
                 num_heads: int = 4, alpha: float = 0.5):
        super().__init__()
        if not 0 < alpha <= 1:
            raise ValueError(f"MTRS alpha must be in (0, 1], got {alpha}")
        self.alpha, self.num_layers = alpha, num_layers
        self.register_buffer("confounder_embeddings", torch.zeros(num_confounders, text_dim))
        self.register_buffer("gate", torch.ones(()))
        self.to_text = nn.Linear(channels, text_dim)
        if num_layers > 0:
            heads = num_heads if d_model % num_heads == 0 else 1
            self.q_in = nn.Linear(channels, d_model)
            self.kv_in = nn.Linear(text_dim, d_model)
            self.layers = nn.ModuleList(CrossAttentionLayer(d_model, heads) for _ in range(num_layers))
            self.out = nn.Linear(d_model, channels)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def set_confounder_embeddings(self, embeddings: torch.Tensor) -> None:
        if embeddings.shape != self.confounder_embeddings.shape:
            raise ValueError(f"expected confounder embeddings {tuple(self.confounder_embeddings.shape)}, got "
                             f"{tuple(embeddings.shape)}")
        self.confounder_embeddings.copy_(embeddings)

    def mtrs_mask(self, text_features: torch.Tensor, prompt_embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` float mask with ones at the ``ceil(alpha N)`` positions most similar to any prompt."""
        n = text_features.shape[1]
        if self.alpha >= 1:
            return torch.ones(text_features.shape[:2], device=text_features.device, dtype=text_features.dtype)
        sim = (F.normalize(text_features, dim=-1) @ F.normalize(prompt_embeddings, dim=-1).t()).amax(-1)
        k = max(1, math.ceil(self.alpha * n))
        idx = sim.detach().topk(k, dim=1).indices
        return torch.zeros_like(sim).scatter(1, idx, 1.0)

    def forward(self, features: torch.Tensor, prompt_embeddings: torch.Tensor
                ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        shape = features.shape
        x = features.flatten(2).transpose(1, 2)  # (B, N, C)
        t = self.to_text(x)
        mask = self.mtrs_mask(t, prompt_embeddings)
        if self.num_layers > 0:
            q = self.q_in(x)
            kv = self.kv_in(self.confounder_embeddings.to(q.dtype)).unsqueeze(0).expand(q.shape[0], -1, -1)
            for layer in self.layers:
                q = layer(q, kv)
            x = x + (self.gate * mask).unsqueeze(-1) * self.out(q)
            t = self.to_text(x)
        out = x.transpose(1, 2).reshape(shape)
        return out, {"bottleneck_text": t, "mtrs_mask": mask, "grid": tuple(shape[2:])}
