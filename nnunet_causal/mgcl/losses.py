"""CLIP loss and the multi-granularity contrastive loss MGCL (OpenVocabCT, seed 002, III.C).

``L = L_CLIP + L_MGCL``, both symmetric InfoNCE with their own learnable temperature
(:class:`LogitScale`, ``logit = exp(s) * cos``, ``s`` initialised at ``log(1 / 0.07)`` and clamped to
``log(100)`` as in CLIP):

* ``L_CLIP``: the B whole reports against the B global image features of the batch (pairs on the
  diagonal);
* ``L_MGCL``: M organ features (every structure present in every patch of the batch) against ``M x K``
  captions, K (= 3) sampled per organ from that organ's captions of its case. Caption -> organ: softmax over
  the M organ features, target its own organ. Organ -> caption: one InfoNCE per positive caption, over that
  caption and the captions of the *other* organs (the organ's other K - 1 captions are left out of the
  denominator); the terms are averaged. So the other organs of the same case and all organs of other cases
  are negatives.

Hard negatives (optional, ``hard``): extra caption embeddings that are negatives of one organ only
(``hard_owner``) in the organ -> caption direction, e.g. the laterality-mirrored captions of
:mod:`nnunet_causal.mgcl.laterality`. They have no organ of their own, so they take no part in caption ->
organ, and a hard negative whose text equals one of its organ's own captions is masked.

False negatives: a caption whose text is *identical* to one of another organ's captions (one sentence that
names two organs, or the same sentence in two cases) is no negative for that organ -- the pair is masked.
Captions with different wording of the same structure in another case stay negatives (chosen on purpose:
they differ in what they say, e.g. the size word, which is what fine-grained alignment should learn).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

INIT_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = math.log(100.0)


class LogitScale(nn.Module):
    """Learnable ``exp(s)``, ``s`` clamped to ``[0, log 100]``."""

    def __init__(self, temperature: float = INIT_TEMPERATURE):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(0.0, MAX_LOGIT_SCALE).exp()


def clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
              texts: Optional[Sequence[str]] = None) -> torch.Tensor:
    """Symmetric InfoNCE of unit vectors ``image (B, D)`` and ``text (B, D)``, row i paired with row i;
    with ``texts``, pairs of different rows with identical report text are masked (no false negatives)."""
    logits = scale * image @ text.t()
    target = torch.arange(image.shape[0], device=image.device)
    if texts is not None:
        same = torch.tensor([[i != j and a == b for j, b in enumerate(texts)] for i, a in enumerate(texts)],
                            dtype=torch.bool, device=image.device)
        logits = logits.masked_fill(same, torch.finfo(logits.dtype).min)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def mgcl_loss(organ: torch.Tensor, captions: torch.Tensor, texts: Sequence[Sequence[str]], scale: torch.Tensor,
              hard: Optional[torch.Tensor] = None, hard_owner: Optional[Sequence[int]] = None,
              hard_texts: Optional[Sequence[str]] = None) -> torch.Tensor:
    """MGCL of ``organ (M, D)`` unit vectors and ``captions (M, K, D)`` unit vectors; ``texts[m][k]`` is the
    text of ``captions[m, k]`` (for the identical-text mask); ``hard (H, D)`` optional hard negatives, row h
    a negative of organ ``hard_owner[h]`` only (text ``hard_texts[h]``). See the module docstring."""
    m, k, d = captions.shape
    flat = captions.reshape(m * k, d)
    owner = torch.arange(m, device=organ.device).repeat_interleave(k)           # (M*K,)
    # same[c, j]: caption c's text also occurs among organ j's captions, j != owner(c)
    text_sets: List[set] = [set(t) for t in texts]
    flat_texts = [t for row in texts for t in row]
    same = torch.tensor([[j != c // k and flat_texts[c] in text_sets[j] for j in range(m)]
                         for c in range(m * k)], dtype=torch.bool, device=organ.device)
    logits = scale * flat @ organ.t()                                            # (M*K, M)
    neg_inf = torch.finfo(logits.dtype).min
    caption_to_organ = F.cross_entropy(logits.masked_fill(same, neg_inf), owner)
    # organ -> caption: for positive c of organ i, denominator = c + captions of other organs (not masked)
    o2c = logits.t()                                                             # (M, M*K)
    rows = owner                                                                 # organ of each positive
    base = o2c[rows]                                                             # (M*K, M*K): row c = its organ
    keep = owner.unsqueeze(0) != owner.unsqueeze(1)                              # other organs' captions
    keep &= ~same[:, rows].t()                  # [c, c'] : c' repeats a text of c's organ -> no negative
    keep |= torch.eye(m * k, dtype=torch.bool, device=organ.device)              # the positive itself
    base = base.masked_fill(~keep, neg_inf)
    if hard is not None and hard.shape[0]:
        h_owner = torch.as_tensor(list(hard_owner), device=organ.device)
        h_texts = list(hard_texts) if hard_texts is not None else [None] * hard.shape[0]
        own_text = torch.tensor([[t is not None and t in text_sets[j] for t in h_texts] for j in range(m)],
                                dtype=torch.bool, device=organ.device)          # (M, H)
        h_keep = (h_owner.unsqueeze(0) == owner.unsqueeze(1)) & ~own_text[owner]  # (M*K, H)
        h_logits = (scale * organ @ hard.t())[rows]                               # (M*K, H)
        base = torch.cat([base, h_logits.masked_fill(~h_keep, neg_inf)], 1)
    organ_to_caption = F.cross_entropy(base, torch.arange(m * k, device=organ.device))
    return 0.5 * (caption_to_organ + organ_to_caption)
