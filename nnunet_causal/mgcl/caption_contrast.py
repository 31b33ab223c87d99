"""Text-side term of the multi-granularity loss: supervised contrast among caption embeddings (an addition
to seed 002, section III.C; the loss form is SupCon, Khosla et al. 2020, eq. 2, with one InfoNCE per
positive).

Why. ``L_MGCL`` ties each caption to an *image* feature; the text geometry only moves where the image side
pulls it. The two kidneys are mirror-image ellipsoids, so their organ features differ mostly by the position
term, and 12 text steps moved "left kidney" away from "right kidney" *and* away from the held-out "kidney on
the left side" (0.871 vs 0.865, run R6 of benchmarks/RESULTS_mgcl.md). This term states in the text space itself what a caption is
about, at the granularity the segmentation needs -- the structure, side included:

* **anchors and positives**: the captions of one structure (same label, side included) sampled in the step,
  across cases and wordings ("The left kidney is small.", "left renal organ: normal.");
* **negatives**: the captions of every other structure in the step (the other kidney's included), and the
  laterality-mirrored captions of the anchor's own structure (:mod:`nnunet_causal.mgcl.laterality`) -- the
  same sentence with the other side word, so only the side separates them;
* for each anchor ``a`` and positive ``p``: ``-log exp(s a.p) / (exp(s a.p) + sum_n exp(s a.n))`` over
  its negatives ``n`` (other positives are left out of the denominator, as in the organ -> caption
  direction of :func:`~nnunet_causal.mgcl.losses.mgcl_loss`); the mean over all (anchor, positive) pairs.

Choices. Positives are the whole structure, not the fact: size and lesion words are left to ``L_MGCL``,
where the image feature carries them. A mirrored caption is a negative of its own structure only (it is a
plausible caption of the other side, so it is no negative for that side's anchors, and it is never an
anchor). Identical texts are one row (a sentence naming two structures belongs to both, so it is no negative
of either). Temperature fixed at 0.07 (CLIP's and SupCon's start value): a learnable one could lower the
loss by sharpening alone. The held-out phrases of the benchmark are never among the captions; the term
generalises to them only through the side words it teaches the encoder to weigh.

Measured (benchmarks/RESULTS_mgcl.md, run R7, one seed): weight 1 meets cos("left kidney", "right kidney")
< cos("left kidney", "kidney on the left side") (0.859 < 0.878) but no other held-out side pair, and
held-out-synonym retrieval is lower (0.732, weight 0.1: 0.750, against 0.804 for a fresh run without it and
0.911 for run R6's identical run -- so the run-to-run spread is as large as the drop). A likely reason:
the term pulls the *training* wordings into tight per-structure clusters that unseen synonyms do not join.
No benefit shown, so ``pretrain-text`` leaves it off by default.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

TEMPERATURE = 0.07


def caption_groups(caption_texts: Sequence[Sequence[str]], caption_labels: Sequence[str],
                   hard_texts: Sequence[str] = (), hard_labels: Sequence[str] = ()) -> Tuple[List[str], List[frozenset],
                                                                                          List[frozenset]]:
    """Distinct texts of a step with ``(labels, mirrored_of)``: the structures a text is a caption of, and
    the structures whose captions were mirrored into it (only where it is no caption of those)."""
    labels: Dict[str, set] = {}
    for texts, label in zip(caption_texts, caption_labels):
        for t in texts:
            labels.setdefault(t, set()).add(label)
    mirrored: Dict[str, set] = {}
    for t, label in zip(hard_texts, hard_labels):
        mirrored.setdefault(t, set()).add(label)
    texts = list(dict.fromkeys([*labels, *mirrored]))
    return (texts, [frozenset(labels.get(t, ())) for t in texts],
            [frozenset(mirrored.get(t, set()) - labels.get(t, set())) for t in texts])


def caption_contrast_loss(embeddings: torch.Tensor, labels: Sequence[frozenset], mirrored_of: Sequence[frozenset],
                          temperature: float = TEMPERATURE) -> Optional[torch.Tensor]:
    """Supervised contrast of unit vectors ``embeddings (N, D)`` (row i: a distinct text with structures
    ``labels[i]`` and, for a mirrored caption, ``mirrored_of[i]``); None when no anchor has both a positive
    and a negative. See the module docstring."""
    n = embeddings.shape[0]
    dev = embeddings.device
    pos = torch.tensor([[i != j and bool(labels[i] & labels[j]) for j in range(n)] for i in range(n)],
                       dtype=torch.bool, device=dev)
    neg = torch.tensor([[bool(labels[i]) and ((bool(labels[j]) and not labels[i] & labels[j])
                                              or bool(labels[i] & mirrored_of[j])) for j in range(n)]
                        for i in range(n)], dtype=torch.bool, device=dev)
    pairs = torch.nonzero(pos & neg.any(1, keepdim=True))                       # (P, 2): anchor, positive
    if not len(pairs):
        return None
    logits = embeddings @ embeddings.t() / temperature                          # (N, N)
    a, p = pairs[:, 0], pairs[:, 1]
    rows = logits[a].masked_fill(~neg[a], torch.finfo(logits.dtype).min)        # negatives of each anchor
    rows = torch.cat([logits[a, p].unsqueeze(1), rows], 1)                      # column 0: the positive
    return F.cross_entropy(rows, torch.zeros(len(pairs), dtype=torch.long, device=dev))
