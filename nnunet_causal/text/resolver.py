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
4. ``none`` -- no terms; ``message`` says why and names the nearest terms.

Issue 13 added, between and around these stages (helpers in :mod:`nnunet_causal.text.grounding`):

* lists -- a prompt the knowledge base does not know as a whole and that joins phrases ("A and B",
  "A, B and C", "A as well as B", "A + B") is split (:mod:`~nnunet_causal.text.grounding.lists`), each
  part grounded on its own, and the result is the union; a part that names nothing makes the whole
  prompt name nothing (a silently dropped structure is a wrong answer too);
* ``corrected`` -- after exact and knowledge failed, unknown words are corrected towards the vocabulary's
  words within a length-scaled edit distance (:mod:`~nnunet_causal.text.grounding.spelling`) and the
  corrected text gets the exact and knowledge stages again; ``corrected`` holds the corrected form;
* the embedding stage must show lexical evidence (:mod:`~nnunet_causal.text.grounding.evidence`): no
  entity-changing word foreign to the structure, and head-noun agreement or a lead of
  :data:`EMBEDDING_MARGIN` over the runner-up;
* every resolution lists the prompt's words that were ``used``, ``ignored`` and ``unknown``.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from nnunet_causal.text.base import TextEncoder
from nnunet_causal.text.grounding.evidence import account_words, check_embedding_match
from nnunet_causal.text.grounding.lists import split_list
from nnunet_causal.text.grounding.spelling import correct_prompt
from nnunet_causal.text.vocabulary import FILLERS, ORDINALS, REGION_LETTER, Vocabulary, normalize

EMBEDDING_THRESHOLD = 0.6
#: similarity lead over the best structure of another base that lets the embedding stage accept a match
#: whose head noun does not agree. On the extended development set wrong best matches lead by up to 0.33
#: ("aortic valve" -> aorta; blocked by its entity word), so a lead alone is weak evidence: 0.35 keeps
#: the margin path for clear-cut cases only (when in doubt, no match)
EMBEDDING_MARGIN = 0.35
#: how far each stage is trusted (a list takes its least trusted part's method)
METHOD_RANK = {"exact": 0, "knowledge": 1, "corrected": 2, "embedding": 3, "none": 4}
_VERT = re.compile(r"^(?:vertebra )?([ctls])\s?(\d{1,2})(?: vertebra| vertebral body| level)?$")
_VERT_WORDS = re.compile(r"^(?:(\w+) )?(cervical|thoracic|dorsal|lumbar|sacral) vertebra(?: (\d{1,2}))?$")
_RIB = re.compile(r"^(?:(\d{1,2})(?:st|nd|rd|th)?|(\w+))? ?rib(?: (\d{1,2}))?$")


@dataclass
class Resolution:
    prompt: str
    terms: List[str] = field(default_factory=list)
    score: float = 0.0
    method: str = "none"
    #: the corrected form of the prompt when spelling was corrected (method "corrected")
    corrected: Optional[str] = None
    #: words of the prompt (normalised) that named the terms, that were ignored, and that the vocabulary
    #: does not know (a subset of ignored)
    used: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    unknown: List[str] = field(default_factory=list)
    #: why nothing matched (with the nearest terms), or what was corrected
    message: str = ""
    #: the resolutions of the parts of a list prompt
    parts: List["Resolution"] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {"prompt": self.prompt, "terms": self.terms, "score": round(float(self.score), 4),
               "method": self.method, "used": self.used, "ignored": self.ignored}
        if self.unknown:
            out["unknown"] = self.unknown
        if self.corrected is not None:
            out["corrected"] = self.corrected
        if self.message:
            out["message"] = self.message
        if self.parts:
            out["parts"] = [p.as_dict() for p in self.parts]
        return out


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


def _known(prompt: str, vocabulary: Vocabulary) -> Optional[Resolution]:
    """Exact and knowledge stages; a structure known to the knowledge base but not held by ``vocabulary``
    gives an empty resolution with a message; None when neither stage knows the prompt."""
    from nnunet_causal.text.label_text import label_to_text

    norm = normalize(prompt)
    for name in vocabulary.terms:
        if norm in (normalize(name), normalize(label_to_text(name))):
            return Resolution(prompt, [name], 1.0, "exact")
    # knowledge: look up in the full knowledge base, then keep what the vocabulary holds
    terms, _ = _knowledge(prompt, vocabulary)
    if terms is None:
        terms, _ = _knowledge(prompt, vocabulary.with_knowledge())
    if terms is None:
        return None
    kept = vocabulary.order(terms)
    if kept:
        return Resolution(prompt, kept, 0.95, "knowledge")
    return Resolution(prompt, message=f"'{prompt}' names {', '.join(terms)}, which this vocabulary does not hold")


def _with_words(res: Resolution, vocabulary: Vocabulary, text: Optional[str] = None) -> Resolution:
    """Fill ``used`` / ``ignored`` / ``unknown`` (words of ``text``, default the prompt, mapped back to
    the prompt's own words when ``text`` is its word-by-word correction)."""
    written = normalize(res.prompt).split()
    text_words = normalize(text if text is not None else res.prompt).split()
    used, ignored, unknown = account_words(" ".join(text_words), vocabulary.with_knowledge(), res.terms)
    if len(text_words) == len(written) and text is not None:
        back = dict(zip(text_words, written))
        used, ignored, unknown = ([back.get(w, w) for w in ws] for ws in (used, ignored, unknown))
    if not res.terms:  # nothing named: every word was ignored
        used, ignored = [], list(written)
    res.used, res.ignored, res.unknown = used, ignored, unknown
    return res


def resolve_prompt(prompt: str, vocabulary: Vocabulary, encoder: Optional[TextEncoder] = None,
                   threshold: float = EMBEDDING_THRESHOLD) -> Resolution:
    """Ground ``prompt`` in ``vocabulary`` (stages in the module docstring). ``terms`` is empty when
    nothing matches; terms outside ``vocabulary`` (a restricted subset) are dropped."""
    if not normalize(prompt):
        return Resolution(prompt, message="empty prompt")
    res = _known(prompt, vocabulary)
    if res is not None:
        return _with_words(res, vocabulary)
    parts = split_list(prompt)
    if parts is not None:
        return _resolve_list(prompt, parts, vocabulary, encoder, threshold)
    res = _by_correction(prompt, vocabulary)
    if res is not None:
        return res
    if encoder is None:
        near = ", ".join(nearest_terms(prompt, vocabulary, k=3))
        return _with_words(Resolution(prompt, message=f"no known structure in '{prompt}' (nearest terms: "
                                                      f"{near})"), vocabulary)
    return _by_embedding(prompt, vocabulary, encoder, threshold)


def _resolve_list(prompt: str, parts: List[str], vocabulary: Vocabulary, encoder: Optional[TextEncoder],
                  threshold: float) -> Resolution:
    """Union of the parts, each grounded on its own; empty when any part names nothing."""
    resolved = [resolve_prompt(p, vocabulary, encoder, threshold) for p in parts]
    failed = [r for r in resolved if not r.terms]
    if failed:
        why = "; ".join(f"'{r.prompt}': {r.message or 'no match'}" for r in failed)
        res = Resolution(prompt, [], 0.0, "none", message=f"{len(failed)} of {len(parts)} parts name no "
                                                          f"structure ({why})", parts=resolved)
        return _with_words(res, vocabulary)
    method = max((r.method for r in resolved), key=METHOD_RANK.__getitem__)
    terms = vocabulary.order(t for r in resolved for t in r.terms)
    corrected = None
    if any(r.corrected for r in resolved):
        corrected = ", ".join(r.corrected or r.prompt for r in resolved)
    res = Resolution(prompt, terms, min(r.score for r in resolved), method, corrected=corrected, parts=resolved)
    res = _with_words(res, vocabulary)
    res.unknown = list(dict.fromkeys(w for r in resolved for w in r.unknown))
    return res


def _by_correction(prompt: str, vocabulary: Vocabulary) -> Optional[Resolution]:
    """Exact / knowledge stages on the spelling-corrected prompt (:mod:`...grounding.spelling`)."""
    fix = correct_prompt(prompt, vocabulary.with_knowledge())
    if fix is None or not fix.changes:
        return None
    res = _known(fix.text, vocabulary)
    if res is None:
        return None
    edits = sum(d for _, _, d in fix.changes)
    changes = ", ".join(f"'{a}' -> '{b}'" for a, b, _ in fix.changes)
    out = Resolution(prompt, res.terms, round(0.9 - 0.05 * edits, 4) if res.terms else 0.0,
                     "corrected" if res.terms else "none", corrected=fix.text,
                     message=f"spelling corrected: {changes}" + (f"; {res.message}" if res.message else ""))
    return _with_words(out, vocabulary, fix.text)


def _by_embedding(prompt: str, vocabulary: Vocabulary, encoder: TextEncoder, threshold: float) -> Resolution:
    aliases = vocabulary.aliases()
    if not aliases:
        return _with_words(Resolution(prompt, message="empty vocabulary"), vocabulary)
    side, _, plural = vocabulary.parse(prompt)
    emb = encoder.encode([prompt] + [a for a, _ in aliases])
    sims = (emb[1:] @ emb[0]).tolist()
    # best similarity per entity (a base's sides are one entity: the side comes from the prompt)
    best: Dict[str, Tuple[float, str]] = {}
    for (_, name), s in zip(aliases, sims):
        key = vocabulary.terms[name].base or name
        if s > best.get(key, (-2.0, ""))[0]:
            best[key] = (s, name)
    ranked = sorted(best.values(), key=lambda v: -v[0])
    score, name = ranked[0]
    margin = score - (ranked[1][0] if len(ranked) > 1 else -1.0)
    near = ", ".join(f"{n} ({s:.2f})" for s, n in ranked[:3])
    if score < threshold:
        res = Resolution(prompt, [], score, "none", message=f"no structure is similar enough (best {score:.2f} < "
                                                            f"{threshold:.2f}; nearest terms: {near})")
        return _with_words(res, vocabulary)
    evidence = check_embedding_match(prompt, vocabulary.with_knowledge(), name, margin, EMBEDDING_MARGIN)
    if not evidence.accepted:
        res = Resolution(prompt, [], score, "none", message=f"not matched: {evidence.reason} (nearest terms: {near})")
        return _with_words(res, vocabulary)
    term = vocabulary.terms[name]
    if side is None and plural:
        side = "both"
    if term.base and side in ("left", "right", "both"):
        terms = vocabulary.expand("base", term.base, None if side == "both" else side)
    else:
        terms = [term.name]
    res = Resolution(prompt, vocabulary.order(terms) or [term.name], score, "embedding")
    res = _with_words(res, vocabulary)
    res.used, res.ignored, res.unknown = evidence.used, evidence.ignored, evidence.unknown
    return res


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
