"""The similarity stage (only with a text encoder) and the nearest known structures for refusals.

The embedding stage compares a phrase with every synonym of the vocabulary and accepts the best entity at
``>= threshold`` only when :func:`~nnunet_causal.text.grounding.evidence.check_embedding_match` finds
lexical evidence. The side found in the phrase overrides the side of the nearest synonym, because
sentence embeddings barely separate left from right.

:func:`nearest_terms` ranks structures by embedding similarity with an encoder, else by the overlap of
character trigrams (fast enough for every refusal; it only ever names candidates in a message).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch

from nnunet_causal.text.base import TextEncoder
from nnunet_causal.text.grounding.evidence import check_embedding_match
from nnunet_causal.text.knowledge import Vocabulary
from nnunet_causal.text.words import normalize


def by_embedding(phrase: str, vocabulary: Vocabulary, encoder: TextEncoder, threshold: float, min_margin: float,
                 make: Callable):
    """A resolution (built with ``make``, the resolver's result class) of ``phrase`` by similarity."""
    aliases = vocabulary.aliases()
    if not aliases:
        return make(phrase, message="empty vocabulary")
    side, _, plural = vocabulary.parse(phrase)
    emb = encoder.encode([phrase] + [a for a, _ in aliases])
    sims = (emb[1:] @ emb[0]).tolist()
    best: Dict[str, Tuple[float, str]] = {}  # per entity: a base's sides are one entity
    for (_, name), s in zip(aliases, sims):
        key = vocabulary.terms[name].base or name
        if s > best.get(key, (-2.0, ""))[0]:
            best[key] = (s, name)
    ranked = sorted(best.values(), key=lambda v: -v[0])
    score, name = ranked[0]
    margin = score - (ranked[1][0] if len(ranked) > 1 else -1.0)
    near = ", ".join(f"{n} ({s:.2f})" for s, n in ranked[:3])
    if score < threshold:
        return make(phrase, [], score, "none", message=f"no structure is similar enough (best {score:.2f} < "
                                                       f"{threshold:.2f}; nearest terms: {near})")
    evidence = check_embedding_match(phrase, vocabulary.with_knowledge(), name, margin, min_margin)
    if not evidence.accepted:
        return make(phrase, [], score, "none", message=f"not matched: {evidence.reason} (nearest terms: {near})")
    term = vocabulary.terms[name]
    if side is None and plural:
        side = "both"
    if term.base and side in ("left", "right", "both"):
        terms = vocabulary.expand("base", term.base, None if side == "both" else side)
    else:
        terms = [term.name]
    res = make(phrase, vocabulary.order(terms) or [term.name], score, "embedding")
    res.used, res.ignored, res.unknown = evidence.used, evidence.ignored, evidence.unknown
    return res


def _trigrams(text: str) -> frozenset:
    t = f"  {normalize(text)} "
    return frozenset(t[i:i + 3] for i in range(len(t) - 2))


def nearest_terms(prompt: str, vocabulary: Vocabulary, k: int = 5, encoder: Optional[TextEncoder] = None
                  ) -> List[str]:
    """The ``k`` terms whose names look most like ``prompt`` (embedding similarity with an encoder, else
    character-trigram overlap) -- for messages, never for grounding."""
    aliases = vocabulary.aliases()
    if not aliases:
        return []
    if encoder is not None:
        emb = encoder.encode([prompt] + [a for a, _ in aliases])
        order = torch.argsort(emb[1:] @ emb[0], descending=True).tolist()
        ranked = [aliases[i][1] for i in order]
    else:
        grams = vocabulary.memo("alias trigrams", lambda: [(_trigrams(a), t) for a, t in aliases])
        mine = _trigrams(prompt)
        scored = sorted(grams, key=lambda g: -len(mine & g[0]) / max(1, len(mine | g[0])))
        ranked = [t for _, t in scored]
    return list(dict.fromkeys(ranked))[:k]
