"""Text-guidance connectors: prompt embedding -> one query (and bias) per prompt per output scale.

OpenVocabCT (seed 002) segments with ``mask_k = sigmoid(<q_k, F> + b_k)`` where ``F`` is the per-voxel
feature map of the decoder and ``q_k`` is obtained from the text embedding ``t_k`` of prompt ``k`` by a
connector. The paper compares an MLP connector (better on unseen synonyms and merged categories) with a
cross-attention connector (slightly better on the trained vocabulary); both are here:

* :class:`MLPConnector`: ``[q_k^s, b_k^s]_{s=1..S} = MLP(t_k)`` -- image independent, so queries for a
  fixed prompt set are computed once per forward pass regardless of the batch.
* :class:`CrossAttentionConnector`: the MLP query attends to the full-resolution voxel embeddings of each
  image, average-pooled to a fixed token grid (``q_k <- q_k + Attn(q_k, pool(F))``), giving
  image-specific queries; the fixed grid keeps training (patches) and inference (sliding window) alike.

Both return ``queries`` of shape ``(B', K, S, E)`` and ``bias`` of shape ``(B', K, S)`` where ``B'`` is 1
(broadcast over the batch) for the MLP connector and ``B`` for cross attention, ``K`` prompts, ``S``
output scales (deep supervision, highest resolution first) and ``E`` the voxel-embedding width.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F


class MLPConnector(nn.Module):
    """Two-layer MLP ``t -> (q^1..q^S, b^1..b^S)``; input text embeddings ``(K, D_text)``."""

    #: queries depend on the image (False here: the head is linear in the voxel embeddings, which lets the
    #: predictor aggregate embeddings instead of logits, see :mod:`nnunet_causal.inference.feature_window`)
    image_conditioned = False

    def __init__(self, text_dim: int, embed_dim: int, num_scales: int, hidden_dim: int = 256):
        super().__init__()
        self.embed_dim, self.num_scales = embed_dim, num_scales
        self.net = nn.Sequential(
            nn.Linear(text_dim, hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, num_scales * (embed_dim + 1)),
        )

    def text_queries(self, text_embeddings: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(K, D_text)`` -> queries ``(K, S, E)`` and bias ``(K, S)``."""
        out = self.net(text_embeddings).view(text_embeddings.shape[0], self.num_scales, self.embed_dim + 1)
        return out[..., :-1], out[..., -1]

    def forward(self, text_embeddings: torch.Tensor, coarse_features: Optional[torch.Tensor] = None):
        q, b = self.text_queries(text_embeddings)
        return q.unsqueeze(0), b.unsqueeze(0)


class CrossAttentionConnector(MLPConnector):
    """MLP queries refined by attending to each image's voxel embeddings (seed 002 ablation).

    ``q_k <- q_k + W_o softmax(W_q q_k (W_k F)^T / sqrt(d)) W_v F`` with ``F`` the full-resolution voxel
    embeddings average-pooled to ``grid`` tokens per axis, flattened to ``(N, E)``; shared over scales.
    """

    grid = 8
    image_conditioned = True

    def __init__(self, text_dim: int, embed_dim: int, num_scales: int, hidden_dim: int = 256,
                 num_heads: int = 4):
        super().__init__(text_dim, embed_dim, num_scales, hidden_dim)
        heads = num_heads if embed_dim % num_heads == 0 else 1
        self.attention = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, text_embeddings: torch.Tensor, coarse_features: Optional[torch.Tensor] = None):
        q, b = self.text_queries(text_embeddings)  # (K, S, E)
        if coarse_features is None:
            raise ValueError("CrossAttentionConnector needs the voxel embeddings of the image")
        bsz = coarse_features.shape[0]
        pool = F.adaptive_avg_pool3d if coarse_features.ndim == 5 else F.adaptive_avg_pool2d
        kv = self.norm(pool(coarse_features, self.grid).flatten(2).transpose(1, 2))  # (B, N, E)
        k, s, e = q.shape
        queries = q.reshape(1, k * s, e).expand(bsz, -1, -1)
        attended, _ = self.attention(queries, kv, kv, need_weights=False)
        q = (queries + attended).view(bsz, k, s, e)
        return q, b.unsqueeze(0).expand(bsz, -1, -1)


CONNECTORS = {"mlp": MLPConnector, "cross_attention": CrossAttentionConnector}


def build_connector(name: str, text_dim: int, embed_dim: int, num_scales: int, hidden_dim: int = 256) -> nn.Module:
    """Create a connector by name (``"mlp"`` default, ``"cross_attention"``)."""
    if name not in CONNECTORS:
        raise ValueError(f"unknown text connector '{name}'; choose one of {sorted(CONNECTORS)}")
    return CONNECTORS[name](text_dim, embed_dim, num_scales, hidden_dim)


def prompt_logits(features: torch.Tensor, queries: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``logit_k = <q_k, F(x)> + b_k`` for every voxel x.

    features ``(B, E, *spatial)``, queries ``(B' , K, E)``, bias ``(B', K)`` with ``B'`` in {1, B};
    returns ``(B, K, *spatial)``. One batched matrix product: each extra prompt costs one dot product
    per voxel, the backbone is not re-run.
    """
    bsz, e = features.shape[:2]
    flat = features.reshape(bsz, e, -1)
    q = queries.to(flat.dtype).expand(bsz, -1, -1)
    out = torch.bmm(q, flat) + bias.to(flat.dtype).expand(bsz, -1).unsqueeze(-1)
    return out.view(bsz, q.shape[1], *features.shape[2:])


def union_logits(logits: torch.Tensor, groups: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Merge prompt logits into groups by maximum (``sigmoid(max l) = max sigmoid(l)``: a voxel belongs to a
    merged category when it belongs to any member).

    logits ``(B, M, *spatial)``; groups ``(G, P)`` long indices into M, padded; valid ``(G, P)`` bool.
    Returns ``(B, G, *spatial)``.
    """
    picked = logits[:, groups.reshape(-1)].view(logits.shape[0], *groups.shape, *logits.shape[2:])
    mask_shape = (1, *valid.shape) + (1,) * (logits.ndim - 2)
    picked = picked.masked_fill(~valid.view(mask_shape), torch.finfo(picked.dtype).min)
    return picked.max(dim=2).values
