"""Prompt grounding: free text -> canonical structures, by knowledge first and similarity last (seed 003).

Seed 003 argues for grounding a query in retrieved knowledge rather than in surface similarity; here the
"retrieval" is over the anatomical knowledge base of :mod:`nnunet_causal.text.vocabulary` and the stages
run from most to least trustworthy:

1. ``exact`` -- the normalised prompt is a term's canonical name (``kidney_left``, ``left kidney``);
2. ``knowledge`` -- synonyms, abbreviations, Latin / adjectival forms, filler words removed
   ("hepatic region" -> liver), laterality parsed explicitly ("kidney on the left"), plural or
   "both"/"bilateral" -> merged categories ("suprarenal glands" -> both adrenals), vertebra and rib
   numbers and ordinals ("fifth lumbar vertebra" -> vertebrae_L5);
3. ``embedding`` -- cosine similarity between the prompt and every synonym in the vocabulary with the
   given text encoder, accepted at ``>= threshold`` (default :data:`EMBEDDING_THRESHOLD`, chosen on the
   development prompts with MiniLM: synonyms score >= 0.62, unrelated text <= 0.35). The side found in
   the prompt overrides the side of the nearest synonym, because sentence embeddings barely separate
   left from right;
4. ``none`` -- no terms.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch

from nnunet_causal.text.base import TextEncoder
from nnunet_causal.text.vocabulary import FILLERS, ORDINALS, REGION_LETTER, Vocabulary, normalize

EMBEDDING_THRESHOLD = 0.6
_VERT = re.compile(r"^(?:vertebra )?([ctls])\s?(\d{1,2})(?: vertebra| vertebral body| level)?$")
_VERT_WORDS = re.compile(r"^(?:(\w+) )?(cervical|thoracic|dorsal|lumbar|sacral) vertebra(?: (\d{1,2}))?$")
_RIB = re.compile(r"^(?:(\d{1,2})(?:st|nd|rd|th)?|(\w+))? ?rib(?: (\d{1,2}))?$")


@dataclass
class Resolution:
    prompt: str
    terms: List[str] = field(default_factory=list)
    score: float = 0.0
    method: str = "none"

    def as_dict(self) -> dict:
        return {"prompt": self.prompt, "terms": self.terms, "score": round(float(self.score), 4),
                "method": self.method}


def _ordinal(word: Optional[str]) -> Optional[int]:
    if word is None:
        return None
    if word.isdigit():
        return int(word)
    m = re.match(r"^(\d+)(st|nd|rd|th)$", word)
    return int(m.group(1)) if m else ORDINALS.get(word)


def _numbered(core: str, side: Optional[str], vocab: Vocabulary) -> Optional[List[str]]:
    m = _VERT.match(core)
    if m:
        return [f"vertebrae_{m.group(1).upper()}{int(m.group(2))}"]
    m = _VERT_WORDS.match(core)
    if m:
        n = _ordinal(m.group(1)) if m.group(1) else (int(m.group(3)) if m.group(3) else None)
        if n is not None:
            return [f"vertebrae_{REGION_LETTER[m.group(2)]}{n}"]
    m = _RIB.match(core)
    if m and core != "rib":
        n = _ordinal(m.group(1) or m.group(2)) if (m.group(1) or m.group(2)) else None
        n = n if n is not None else (int(m.group(3)) if m.group(3) else None)
        if n is not None:
            sides = [side] if side in ("left", "right") else ["left", "right"]
            return [f"rib_{s}_{n}" for s in sides]
    return None


def _knowledge(prompt: str, vocab: Vocabulary) -> Tuple[Optional[List[str]], bool]:
    """Terms from the knowledge base, and whether the hit was an exact canonical name."""
    side, core, plural = vocab.parse(prompt)
    if not core:
        return None, False
    if plural and side is None:
        side = "both"
    idx = vocab.index()
    candidates = [core, " ".join(w for w in core.split() if w not in FILLERS)]
    for c in dict.fromkeys(candidates):
        if not c:
            continue
        numbered = _numbered(c, side, vocab)
        if numbered is not None:
            return numbered, False
        for key in ((side, c), (None, c)):
            if key[0] == "both":
                continue
            hit = idx.get(key)
            if hit:
                apply_side = side if key[0] is None else None
                terms = vocab.expand(hit[0], hit[1], apply_side)
                if terms:
                    exact = hit[0] == "term" and normalize(prompt) in (normalize(hit[1]),)
                    return terms, exact
    return None, False


def resolve_prompt(prompt: str, vocabulary: Vocabulary, encoder: Optional[TextEncoder] = None,
                   threshold: float = EMBEDDING_THRESHOLD) -> Resolution:
    """Ground ``prompt`` in ``vocabulary`` (stages in the module docstring). ``terms`` is empty when
    nothing matches; terms outside ``vocabulary`` (a restricted subset) are dropped."""
    from nnunet_causal.text.label_text import label_to_text

    norm = normalize(prompt)
    if not norm:
        return Resolution(prompt)
    for name in vocabulary.terms:
        if norm in (normalize(name), normalize(label_to_text(name))):
            return Resolution(prompt, [name], 1.0, "exact")
    # knowledge: look up in the full knowledge base, then keep what the vocabulary holds
    terms, _ = _knowledge(prompt, vocabulary)
    if terms is None:
        terms, _ = _knowledge(prompt, vocabulary.with_knowledge())
    if terms is not None:
        kept = vocabulary.order(terms)
        if kept:
            return Resolution(prompt, kept, 0.95, "knowledge")
        return Resolution(prompt)  # a known structure that this vocabulary does not hold
    if encoder is None:
        return Resolution(prompt)
    return _by_embedding(prompt, vocabulary, encoder, threshold)


def _by_embedding(prompt: str, vocabulary: Vocabulary, encoder: TextEncoder, threshold: float) -> Resolution:
    aliases = vocabulary.aliases()
    if not aliases:
        return Resolution(prompt)
    side, _, plural = vocabulary.parse(prompt)
    emb = encoder.encode([prompt] + [a for a, _ in aliases])
    sims = emb[1:] @ emb[0]
    best = int(torch.argmax(sims))
    score = float(sims[best])
    if score < threshold:
        return Resolution(prompt, [], score, "none")
    term = vocabulary.terms[aliases[best][1]]
    if side is None and plural:
        side = "both"
    if term.base and side in ("left", "right", "both"):
        terms = vocabulary.expand("base", term.base, None if side == "both" else side)
    else:
        terms = [term.name]
    return Resolution(prompt, vocabulary.order(terms) or [term.name], score, "embedding")


def nearest_terms(prompt: str, vocabulary: Vocabulary, k: int = 5, encoder: Optional[TextEncoder] = None
                  ) -> List[str]:
    """The ``k`` terms whose names look most like ``prompt`` (embedding similarity with an encoder, else
    string similarity) -- for error messages."""
    aliases = vocabulary.aliases()
    if encoder is not None and aliases:
        emb = encoder.encode([prompt] + [a for a, _ in aliases])
        order = torch.argsort(emb[1:] @ emb[0], descending=True).tolist()
        ranked = [aliases[i][1] for i in order]
    else:
        scored = sorted(aliases, key=lambda a: -difflib.SequenceMatcher(None, normalize(prompt), normalize(a[0])).ratio())
        ranked = [t for _, t in scored]
    return list(dict.fromkeys(ranked))[:k]
