"""Causal training losses on bottleneck features projected to text space (seeds 001 and 000).

Notation: ``t_b[n]`` (B, N, D) bottleneck features of image b at position n after the intervention,
projected to text space by the bottleneck's ``W_t``; ``w_bk[n]`` the fraction of class k's voxels in the
receptive cell n (the one-hot target average-pooled to the bottleneck grid); ``P_k`` class prompt
embeddings; ``A_k`` the causal anchor of class k; ``Z_m`` confounder embeddings; ``s_b`` the embedding of
image b's style description; all vectors L2-normalised; ``tau = 0.5``.

* L_causal (MCDRL): pooled class features ``c_bk = sum_n w_bk[n] t_b[n] / sum_n w_bk[n]`` are pulled to the
  anchor ``A_k = mean_m e("a {class k} with {confounder m}")``: ``L = mean_{(b,k) present} 1 - cos(c_bk, A_k)``.
  Averaging over confounders marginalises them out (backdoor adjustment in text space).
* L_contrast (MCDRL): image feature ``g_b = mean_n t_b[n]`` against the class texts with the confounder
  texts as extra negatives; multi-positive InfoNCE
  ``L = -mean_b log( sum_{k present} e^{g.P_k/tau} / (sum_k e^{g.P_k/tau} + sum_m e^{g.Z_m/tau}) )``
  (the confounders make it informative even with a single class). With counterfactual views, each image's
  own known style ``s_b`` (the confounders set on it) is one more negative in its denominator.
* L_LAD (Causal-SAM-LLM's linguistic adversarial disentanglement, our exact form): the foreground feature
  ``f_b = sum_k c_bk`` (normalised) must be closer to its anatomy prompts than to *any* style description
  in the batch, and dissimilar to its own style:
  ``L = -mean_b log( sum_{k present} e^{f.P_k/tau} / (sum_{k present} e^{f.P_k/tau} + sum_j e^{f.s_j/tau}) )
        + mean_b max(0, cos(f_b, s_b))``.
  The first term keeps anatomy aligned while using styles as negatives; the hinge pushes features away
  from their own style description without forcing a particular negative similarity.
Images without any present class contribute nothing (losses are 0 when no image has one, and finite).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch.nn import functional as F


@dataclass
class CausalLossWeights:
    """lambda1 (L_causal), lambda2 (L_contrast), lambda3 (L_LAD); seed 001 defaults for the first two."""
    causal: float = 0.5
    contrast: float = 0.1
    lad: float = 0.1
    temperature: float = 0.5


def label_map_to_onehot(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label map ``(B, 1, *spatial)`` (values 1..K are classes; 0 and the ignore label are not) ->
    ``(B, K, *spatial)`` float one-hot."""
    labels = target[:, 0].long()
    values = torch.arange(1, num_classes + 1, device=labels.device).view(1, -1, *([1] * (labels.ndim - 1)))
    return (labels.unsqueeze(1) == values).float()


def label_fractions(target: torch.Tensor, num_classes: int, grid) -> torch.Tensor:
    """Label map ``(B, 1, *spatial)`` -> ``(B, K, N)`` fraction of each class 1..K per bottleneck cell, one
    class at a time: never a full-resolution K-channel one-hot (117 classes at 128^3, batch 2, would be
    ~2 GB in float32), only one full-resolution float map at a time."""
    pool = F.adaptive_avg_pool3d if target.ndim == 5 else F.adaptive_avg_pool2d
    labels = target[:, :1]
    return torch.cat([pool((labels == k).float(), tuple(grid)).flatten(2) for k in range(1, num_classes + 1)], 1)


def class_fractions(onehot: torch.Tensor, grid) -> torch.Tensor:
    """One-hot ``(B, K, *spatial)`` -> ``(B, K, N)`` fraction of each class per bottleneck cell."""
    pool = F.adaptive_avg_pool3d if onehot.ndim == 5 else F.adaptive_avg_pool2d
    return pool(onehot.float(), tuple(grid)).flatten(2)


def pooled_class_features(text_features: torch.Tensor, fractions: torch.Tensor, min_fraction: float = 1e-3):
    """``(B, N, D), (B, K, N) -> (B, K, D)`` normalised pooled features and ``(B, K)`` presence mask."""
    mass = fractions.sum(-1)
    pooled = torch.einsum("bkn,bnd->bkd", fractions, text_features) / mass.clamp_min(1e-6).unsqueeze(-1)
    return F.normalize(pooled, dim=-1), mass > min_fraction * fractions.shape[-1]


def causal_loss(pooled: torch.Tensor, present: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    cos = (pooled * F.normalize(anchors, dim=-1).unsqueeze(0)).sum(-1)
    return ((1 - cos) * present).sum() / present.sum().clamp_min(1)


def contrast_loss(text_features: torch.Tensor, present: torch.Tensor, prompts: torch.Tensor,
                  confounders: torch.Tensor, temperature: float,
                  known_styles: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``known_styles`` (B, D): each image's own known style (its counterfactual z) as one more negative."""
    g = F.normalize(text_features.mean(1), dim=-1)
    logits = g @ torch.cat([F.normalize(prompts, dim=-1), F.normalize(confounders, dim=-1)]).t() / temperature
    if known_styles is not None:
        own = (g * F.normalize(known_styles.to(g.dtype), dim=-1)).sum(-1, keepdim=True) / temperature
        logits = torch.cat([logits, own], 1)
    k = prompts.shape[0]
    pos = torch.logsumexp(logits[:, :k].masked_fill(~present, float("-inf")), dim=1)
    loss = torch.logsumexp(logits, dim=1) - pos
    has = present.any(1)
    return torch.where(has, loss, torch.zeros_like(loss)).sum() / has.sum().clamp_min(1)


def lad_loss(pooled: torch.Tensor, present: torch.Tensor, prompts: torch.Tensor, styles: torch.Tensor,
             temperature: float) -> torch.Tensor:
    f = F.normalize((pooled * present.unsqueeze(-1)).sum(1), dim=-1)
    s = F.normalize(styles, dim=-1)
    anat = (f @ F.normalize(prompts, dim=-1).t() / temperature).masked_fill(~present, float("-inf"))
    pos = torch.logsumexp(anat, dim=1)
    neg = f @ s.t() / temperature
    nce = torch.logsumexp(torch.cat([anat, neg], 1), dim=1) - pos
    hinge = F.relu((f * s).sum(-1))
    has = present.any(1)
    per = torch.where(has, nce + hinge, torch.zeros_like(nce))
    return per.sum() / has.sum().clamp_min(1)


def progressive_gate(epoch: int, num_epochs: int, warmup_fraction: float = 0.2) -> float:
    """0 during the first ``warmup_fraction`` of training (seed 001: 10 of 50 epochs), then 1."""
    return 0.0 if epoch < int(round(warmup_fraction * num_epochs)) else 1.0


def total_causal_loss(aux: dict, onehot: Optional[torch.Tensor], prompts: torch.Tensor, anchors: torch.Tensor,
                      confounders: torch.Tensor, styles: Optional[torch.Tensor], weights: CausalLossWeights,
                      gate: float, grid, known_styles: Optional[torch.Tensor] = None,
                      fractions: Optional[torch.Tensor] = None) -> dict:
    """All causal terms for one batch; returns the weighted sum and the parts (for logging).
    ``known_styles`` (B, D): embeddings of the styles set on each sample (extra L_contrast negatives);
    ``fractions`` (B, K, N): class fractions per bottleneck cell (:func:`label_fractions`), instead of
    ``onehot``."""
    t = aux["bottleneck_text"].float()
    if fractions is None:
        fractions = class_fractions(onehot, grid)
    pooled, present = pooled_class_features(t, fractions)
    parts = {"causal": causal_loss(pooled, present, anchors.float()),
             "contrast": contrast_loss(t, present, prompts.float(), confounders.float(), weights.temperature,
                                       None if known_styles is None else known_styles.float())}
    if styles is not None and weights.lad > 0:
        parts["lad"] = lad_loss(pooled, present, prompts.float(), styles.float(), weights.temperature)
    total = gate * (weights.causal * parts["causal"] + weights.contrast * parts["contrast"])
    if "lad" in parts:
        total = total + weights.lad * parts["lad"]
    parts["total"] = total
    return parts
