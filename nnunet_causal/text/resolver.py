"""Prompt grounding: the one entry that turns words into structures (seed 003: knowledge first, surface
similarity last and never alone).

:func:`resolve_prompt` reads a prompt -- a name ("left kidney") or a sentence ("Segmentation of the left
kidney on contrast-enhanced abdominal CT") -- once into words with roles
(:mod:`~nnunet_causal.text.grounding.roles`: structure, side, context, task, function, unknown) and grounds
the structure phrase exactly as if it had been written alone (:func:`resolve_phrase`). Context words are
recorded as evidence; a structure whose body region contradicts the context ("brainstem" in "abdominal
CT") is reported in the explanation, not silently accepted. :func:`resolve_phrase` serves callers that
scan word spans themselves (report captions, command clauses).

Stages of a phrase, from most to least trustworthy:

1. ``exact`` -- the phrase is a term's canonical name or readable label;
2. ``knowledge`` -- synonyms, abbreviations, sides, plurals and collectives (always the whole set),
   numbers, word order and part-of widening (:mod:`~nnunet_causal.text.grounding.phrase`); a structure the
   knowledge base knows but ``vocabulary`` (a model's) does not hold is answered by its parts, widened to
   a whole the model holds (with a note), or refused saying so (:mod:`~nnunet_causal.text.grounding.lookup`);
3. lists -- "A and B", "A, B and C", "A + B" (:mod:`~nnunet_causal.text.grounding.lists`): each part on its
   own, the union; a part that names nothing makes the whole name nothing;
4. ``corrected`` -- unknown words corrected towards the vocabulary's words within a length-scaled edit
   distance (:mod:`~nnunet_causal.text.grounding.spelling`), then stages 1-2 again;
5. ``embedding`` -- only with a text encoder: cosine similarity to every synonym, accepted at
   ``>= threshold`` and only with lexical evidence (:mod:`~nnunet_causal.text.grounding.evidence`);
6. ``none`` -- no terms; ``message`` names the words not understood and the nearest known structures.

Each :class:`Resolution` says which words named the structure, which were context, which were widened or
corrected and which were ignored (:meth:`Resolution.to_dict`, key ``explanation``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from nnunet_causal.text.base import TextEncoder
from nnunet_causal.text.grounding.embedding import by_embedding, nearest_terms
from nnunet_causal.text.grounding.evidence import supports, term_words
from nnunet_causal.text.grounding.lists import split_list
from nnunet_causal.text.grounding.lookup import place
from nnunet_causal.text.grounding.phrase import check_sides, ground_phrase
from nnunet_causal.text.grounding.roles import parse_prompt
from nnunet_causal.text.grounding.spelling import correct_prompt
from nnunet_causal.text.knowledge import Vocabulary
from nnunet_causal.text.words import ORDINALS, SIDE_LETTERS, SIDE_WORDS, check_prompt, lexicon, normalize

__all__ = ["EMBEDDING_THRESHOLD", "EMBEDDING_MARGIN", "METHOD_RANK", "Resolution", "resolve_prompt",
           "resolve_phrase", "nearest_terms"]

EMBEDDING_THRESHOLD = 0.6
#: similarity lead over the best structure of another base that lets the embedding stage accept a match
#: whose head noun does not agree (wrong best matches lead by up to 0.33 on the extended development set)
EMBEDDING_MARGIN = 0.35
#: how far each stage is trusted (a list takes its least trusted part's method)
METHOD_RANK = {"exact": 0, "knowledge": 1, "corrected": 2, "embedding": 3, "none": 4}


@dataclass
class Resolution:
    prompt: str
    terms: List[str] = field(default_factory=list)
    score: float = 0.0
    method: str = "none"
    #: the corrected form of the structure phrase when spelling was corrected (method "corrected")
    corrected: Optional[str] = None
    #: words of the prompt (normalised) that named the terms, that were ignored, and that nothing knows
    used: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    unknown: List[str] = field(default_factory=list)
    #: why nothing matched (words not understood, nearest terms), or what was corrected / widened
    message: str = ""
    #: the resolutions of the parts of a list prompt
    parts: List["Resolution"] = field(default_factory=list)
    #: plain data: phrase, structure_words, side_words, context, widened, corrected, contradictions, notes
    explanation: Dict[str, object] = field(default_factory=dict)

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
        if self.explanation:
            out["explanation"] = self.explanation
        return out

    to_dict = as_dict


# ------------------------------------------------------------------ phrase stages
def _known(phrase: str, vocabulary: Vocabulary) -> Optional[Resolution]:
    """Exact and knowledge stages, on ``vocabulary`` first and then on the whole knowledge base (placed
    back onto ``vocabulary``); None when neither knows the phrase."""
    hit = ground_phrase(phrase, vocabulary)
    notes: List[str] = []
    widened: List[dict] = []
    if hit is None:
        hit = ground_phrase(phrase, vocabulary.with_knowledge())
        if hit is None:
            return None
        placed = place(hit.terms, vocabulary)
        if not placed.terms:
            return Resolution(phrase, message=f"'{phrase}' names {', '.join(placed.missing or hit.terms)}, which "
                                              f"this vocabulary does not hold")
        notes += placed.notes
        widened += [{"from": a, "to": [b], "why": "part of a held structure"} for a, b in placed.widened]
        terms, exact = placed.terms, False
    else:
        terms, exact = vocabulary.order(hit.terms), hit.exact
        # an exact hit is one canonical name, never a set held in part
        whole = None if hit.exact else ground_phrase(phrase, vocabulary.with_knowledge())
        missing = [t for t in (whole.terms if whole else []) if t not in terms and t not in vocabulary.terms]
        if missing:  # a set the model holds in part ("head and neck organs at risk" of an abdominal model)
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            notes.append(f"'{phrase}' names {len(terms) + len(missing)} structures; this vocabulary holds "
                         f"{len(terms)} (not held: {shown})")
    if hit.part_words:
        notes.append(f"part words {', '.join(repr(w) for w in hit.part_words)} widened to the whole: "
                     f"{', '.join(terms)}")
        widened.insert(0, {"from": phrase, "to": terms, "part_words": hit.part_words})
    method = "exact" if exact and not widened else "knowledge"
    score = 1.0 if method == "exact" else (0.9 if widened else 0.95)
    return Resolution(phrase, terms, score, method, message="; ".join(notes),
                      explanation={"widened": widened, "notes": notes})


def _account(res: Resolution, vocabulary: Vocabulary, written: List[str], grounded: List[str]) -> Resolution:
    """``used`` / ``ignored`` / ``unknown`` over ``written`` (the phrase's words); ``grounded`` are the words
    that were grounded (the corrected form when spelling was corrected, word for word)."""
    kb = vocabulary.with_knowledge()
    own = term_words(kb, res.terms) if res.terms else set()
    known = kb.words
    lex = lexicon()
    res.used, res.ignored, res.unknown = [], [], []
    pairs = zip(written, grounded) if len(written) == len(grounded) else ((w, w) for w in written)
    for w, g in pairs:
        if res.terms and (g in SIDE_WORDS or g in SIDE_LETTERS or g in ORDINALS or any(c.isdigit() for c in g)
                          or supports(g, own) or g in lex["parts"] and res.explanation.get("widened")):
            res.used.append(w)
            continue
        res.ignored.append(w)
        if not (g in known or kb.singular(g) != g or g in lex["function"] or g in lex["task"] or g in SIDE_WORDS
                or g in lex["descriptors"] or g in lex["parts"] or any(g in lex[k] for k in ("modality", "sequence",
                                                                                              "phase", "region",
                                                                                              "view", "anchors"))):
            res.unknown.append(w)
    return res


def resolve_phrase(phrase: str, vocabulary: Vocabulary, encoder: Optional[TextEncoder] = None,
                   threshold: float = EMBEDDING_THRESHOLD) -> Resolution:
    """Ground a phrase exactly as written (no sentence roles): the stages in the module docstring."""
    words = normalize(phrase).split()
    if not words:
        return Resolution(phrase, message="empty prompt")
    check_sides(phrase, phrase)
    res = _known(phrase, vocabulary)
    if res is not None:
        res.prompt = phrase
        return _account(res, vocabulary, words, words)
    parts = split_list(phrase)
    if parts is not None:
        return _resolve_list(phrase, parts, vocabulary, encoder, threshold)
    res = _by_correction(phrase, vocabulary)
    if res is not None:
        return res
    if encoder is None:
        res = _account(Resolution(phrase), vocabulary, words, words)
        return _refusal(res, phrase, vocabulary)
    res = by_embedding(phrase, vocabulary, encoder, threshold, EMBEDDING_MARGIN, Resolution)
    if not res.terms:
        res = _account(res, vocabulary, words, words)
    return res


def _refusal(res: Resolution, text: str, vocabulary: Vocabulary) -> Resolution:
    near = ", ".join(nearest_terms(text, vocabulary, k=3))
    words = f"words not understood: {', '.join(res.unknown)}; " if res.unknown else ""
    res.message = f"no known structure in '{text}' ({words}nearest terms: {near})"
    return res


def _resolve_list(phrase: str, parts: List[str], vocabulary: Vocabulary, encoder: Optional[TextEncoder],
                  threshold: float) -> Resolution:
    """Union of the parts, each grounded on its own; empty when any part names nothing."""
    resolved = [resolve_phrase(p, vocabulary, encoder, threshold) for p in parts]
    words = normalize(phrase).split()
    failed = [r for r in resolved if not r.terms]
    if failed:
        why = "; ".join(f"'{r.prompt}': {r.message or 'no match'}" for r in failed)
        res = Resolution(phrase, [], 0.0, "none", message=f"{len(failed)} of {len(parts)} parts name no "
                                                          f"structure ({why})", parts=resolved)
        res = _account(res, vocabulary, words, words)
    else:
        method = max((r.method for r in resolved), key=METHOD_RANK.__getitem__)
        terms = vocabulary.order(t for r in resolved for t in r.terms)
        corrected = ", ".join(r.corrected or r.prompt for r in resolved) if any(r.corrected for r in resolved) else None
        res = Resolution(phrase, terms, min(r.score for r in resolved), method, corrected=corrected, parts=resolved,
                         message="; ".join(r.message for r in resolved if r.message))
        res.explanation = {"widened": [w for r in resolved for w in r.explanation.get("widened", [])],
                           "notes": [n for r in resolved for n in r.explanation.get("notes", [])]}
        res = _account(res, vocabulary, words, words)
    res.unknown = list(dict.fromkeys(res.unknown + [w for r in resolved for w in r.unknown]))
    return res


def _by_correction(phrase: str, vocabulary: Vocabulary) -> Optional[Resolution]:
    """Exact / knowledge stages on the spelling-corrected phrase."""
    fix = correct_prompt(phrase, vocabulary.with_knowledge())
    if fix is None or not fix.changes:
        return None
    res = _known(fix.text, vocabulary)
    if res is None:
        return None
    edits = sum(d for _, _, d in fix.changes)
    changes = ", ".join(f"'{a}' -> '{b}'" for a, b, _ in fix.changes)
    out = Resolution(phrase, res.terms, round(0.9 - 0.05 * edits, 4) if res.terms else 0.0,
                     "corrected" if res.terms else "none", corrected=fix.text,
                     message=f"spelling corrected: {changes}" + (f"; {res.message}" if res.message else ""),
                     explanation={**res.explanation, "corrected": [{"written": a, "corrected": b}
                                                                  for a, b, _ in fix.changes]})
    return _account(out, vocabulary, normalize(phrase).split(), fix.text.split())


# ------------------------------------------------------------------ the sentence entry
def resolve_prompt(prompt: str, vocabulary: Vocabulary, encoder: Optional[TextEncoder] = None,
                   threshold: float = EMBEDDING_THRESHOLD) -> Resolution:
    """Ground ``prompt`` -- a name or a sentence -- in ``vocabulary`` (module docstring). ``terms`` is empty
    when nothing matches. Raises :class:`~nnunet_causal.errors.PromptError` for a prompt that is empty,
    too long, holds control characters or names both sides of one structure."""
    check_prompt(prompt)
    parsed = parse_prompt(prompt, vocabulary.with_knowledge())
    phrase = parsed.phrase
    if phrase and parsed.negated:   # "do not segment the liver": no structure is asked for
        res = Resolution(prompt, message=f"the prompt asks not to segment '{phrase}'; name the structure to segment")
        res.ignored = list(parsed.words)
        res.explanation = _explain(res, parsed, vocabulary)
        return res
    if not phrase:
        res = Resolution(prompt)
        res.ignored = list(parsed.words)
        res.unknown = parsed.words_with("unknown")
        res = _refusal(res, prompt, vocabulary)
    else:
        check_sides(prompt, phrase)
        res = None
        if parsed.whole_at:  # the phrase before its cuts: a list ("the spleen along with the pancreas")
            whole = resolve_phrase(parsed.whole, vocabulary)
            if whole.terms and whole.method in ("exact", "knowledge"):
                res, parsed.phrase_at = whole, parsed.whole_at
        if res is None:
            res = resolve_phrase(phrase, vocabulary, encoder, threshold)
        if not res.terms and parsed.whole_at and encoder is not None:  # "organ that stores bile"
            other = resolve_phrase(parsed.whole, vocabulary, encoder, threshold)
            if other.terms:
                res, parsed.phrase_at = other, parsed.whole_at
        used = set(res.used)
        res.prompt = phrase
        phrase_unknown = res.unknown
        res.used, res.ignored = [], []
        inside = set(parsed.phrase_at)
        for i, w in enumerate(parsed.words):
            (res.used if i in inside and w in used else res.ignored).append(w)
        res.unknown = list(dict.fromkeys(phrase_unknown + parsed.words_with("unknown")))
        if not res.terms and res.message.startswith("no known structure"):
            res = _refusal(res, phrase, vocabulary)
    res.prompt = prompt
    res.explanation = _explain(res, parsed, vocabulary)
    return res


def _explain(res: Resolution, parsed, vocabulary: Vocabulary) -> Dict[str, object]:
    lex = lexicon()
    inside = set(parsed.phrase_at)
    used = set(res.used)
    side_words = [parsed.words[i] for i in parsed.phrase_at
                  if parsed.roles[i] == "side" and parsed.words[i] in used]
    out: Dict[str, object] = {
        "phrase": parsed.phrase,
        "structure_words": [parsed.words[i] for i in parsed.phrase_at
                            if parsed.words[i] in used and parsed.roles[i] != "side"],
        "side_words": side_words,
        "context": parsed.context(),
        "widened": list(res.explanation.get("widened", [])),
        "corrected": list(res.explanation.get("corrected", [])),
        "ignored": [w for i, w in enumerate(parsed.words) if i not in inside or w not in used],
        "unknown": list(res.unknown),
        "contradictions": [],
        "notes": list(res.explanation.get("notes", [])),
    }
    regions = {lex["region_of"][w] for w, r in zip(parsed.words, parsed.roles)
               if r == "context:region" and w in lex["region_of"]}
    kb = vocabulary.with_knowledge()
    for t in res.terms:
        lies_in = kb.terms[t].regions if t in kb.terms else ()
        clash = sorted(r for r in regions
                       if lies_in and all(r in lex["incompatible_regions"].get(x, []) for x in lies_in))
        if clash:
            out["contradictions"].append(f"{t} lies in the {lies_in[0]}, but the context says {', '.join(clash)}")
    sides = {SIDE_WORDS.get(w) or lex["side_short"].get(w) or SIDE_LETTERS.get(w) for w in side_words}
    if len(sides) == 1 and sides <= {"left", "right"} and res.terms \
            and all(t in kb.terms and kb.terms[t].side is None for t in res.terms):
        side = sides.pop()
        out["notes"].append(f"'{side}' is not held apart: {', '.join(res.terms)} has no {side} side of its own "
                            f"in the knowledge base, so the answer is the whole structure")
    return out
