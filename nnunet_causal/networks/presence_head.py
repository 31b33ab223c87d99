"""Presence head: "is structure k anywhere in this patch?" for any prompt, trained or open-vocabulary.

The seeds give no presence decision (OpenVocabCT, seed 002, thresholds the sigmoid per voxel, so an absent
structure still gets whatever voxels cross 0.5). We add the smallest head that answers it from what the
network already computes, and that works for any text:

    p      = [mean_x F(x), max_x F(x)]                     (B, 2E)  pooled per-voxel embeddings
    g      = W_2 GELU(W_1 p)                               (B, H)
    r_k    = V_2 GELU(V_1 t_k)                             (K, H)   from the prompt's text embedding t_k
    s_bk   = <g_b, r_k> / sqrt(H) + c                      presence logit of prompt k in patch b

Trained with BCE against ``1[structure k has a voxel in the patch]`` (:mod:`nnunet_causal.training.text.
presence`), with extra negatives: text embeddings of structures the dataset never contains, always 0. The
max pooling keeps a small structure visible in ``p`` (a mean alone dilutes it). A case-level score is the
maximum over its sliding-window patches (a structure is in the case when it is in some patch); the decision
threshold is calibrated on the validation fold.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def pooled_features(features: torch.Tensor) -> torch.Tensor:
    """``(B, E, *spatial)`` -> ``(B, 2E)``: mean and max over all voxels."""
    flat = features.flatten(2)
    return torch.cat((flat.mean(2), flat.amax(2)), 1)


class PresenceHead(nn.Module):
    """Presence logits ``(B, K)`` from per-voxel embeddings ``(B, E, *spatial)`` and text ``(K, D_text)``."""

    def __init__(self, embed_dim: int, text_dim: int, hidden_dim: int = 64):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.image = nn.Sequential(nn.LayerNorm(2 * embed_dim), nn.Linear(2 * embed_dim, hidden_dim), nn.GELU(),
                                   nn.Linear(hidden_dim, hidden_dim))
        self.text = nn.Sequential(nn.Linear(text_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim))
        self.bias = nn.Parameter(torch.zeros(()))

    def from_pooled(self, pooled: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """``pooled (B, 2E)``, ``text_embeddings (K, D_text)`` -> logits ``(B, K)``."""
        g = self.image(pooled.float())
        r = self.text(text_embeddings.to(g.dtype))
        return g @ r.t() / math.sqrt(self.hidden_dim) + self.bias

    def forward(self, features: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        return self.from_pooled(pooled_features(features), text_embeddings)
