"""The exact and knowledge stages on one phrase, and the placement of known structures in a vocabulary.

* exact -- the normalised phrase is a term's canonical name or readable label (``kidney_left``, ``left
  kidney``);
* knowledge -- synonyms, abbreviations, Latin / adjectival forms, filler words removed ("hepatic region"
  -> liver), laterality parsed explicitly ("kidney on the left"), plurals and "both" / "bilateral" ->
  merged categories ("suprarenal glands" -> both adrenals; a side-less plural is both sides, never one
  member) and families ("heart chambers", "head and neck organs at risk", "abdominal organs": the
  knowledge base's ``groups``), a count before a plural read as "all" ("the four heart chambers"), a
  possessive read as its noun ("the liver's"), size and generic descriptors dropped when the phrase does not
  name a structure with them ("a small polyp", "the 2.5 cm polyp", "main bronchi"; "small bowel" keeps its
  word), vertebra and rib numbers and ordinals ("fifth lumbar vertebra" -> vertebrae_L5), and last families named by a kind and a region ("arteries of the neck",
  :mod:`~nnunet_causal.text.grounding.families`);
* placement (:func:`place`) -- a structure the knowledge base knows but the vocabulary (a model's) does not
  hold is answered by its parts the vocabulary holds (``lung`` -> the lobes), else widened to the nearest
  whole it holds (``liver_segment_4`` -> ``liver``, with a note), else refused. A lesion is never placed on
  its organ, nor an organ on its lesions (``lesion_of`` is not part-of).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from nnunet_causal.text.grounding.families import family_terms
from nnunet_causal.text.knowledge import Vocabulary
from nnunet_causal.text.words import FILLERS, REGION_LETTER, lexicon, normalize, ordinal

_VERT = re.compile(r"^(?:vertebra )?([ctls])\s?(\d{1,2})(?: vertebra| vertebral body| level)?$")
_VERT_WORDS = re.compile(r"^(?:(\w+) )?(cervical|thoracic|dorsal|lumbar|sacral) vertebra(?: (\d{1,2}))?$")
_RIB = re.compile(r"^(?:(\d{1,2})(?:st|nd|rd|th)?|(\w+))? ?rib(?: (\d{1,2}))?$")
#: a count before a plural names the whole set ("the four heart chambers", "two kidneys")
CARDINALS = {"two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"}
#: descriptors a phrase names its structure without ("a small polyp"); "minor" is kept: minor salivary glands
#: are not the major ones
_DROPPED_DESCRIPTORS = frozenset(lexicon()["descriptors"]) - {"minor"}
#: multi-word forms read as one word of the knowledge base's names ("organs at risk" -> the groups' "oar")
#: a size with its unit is a descriptor ("the 2.5 cm polyp", "a 5mm nodule")
_PHRASE_FORMS = ((re.compile(r"\borgans? at risk\b"), "oar"), (re.compile(r"\b(\w+) s\b"), r"\1"),
                 (re.compile(r"\b\d+(?: \d+)? ?(?:mm|cm)\b ?"), ""))


def canonical_text(text: str) -> str:
    """``text`` normalised, with :data:`_PHRASE_FORMS` applied ("the liver's" -> "the liver")."""
    out = normalize(text)
    for pattern, repl in _PHRASE_FORMS:
        out = pattern.sub(repl, out)
    return out


def numbered(core: str, side: Optional[str]) -> Optional[List[str]]:
    """Vertebra and rib names written with numbers or ordinals ("L5", "fifth lumbar vertebra", "left
    3rd rib"): the canonical terms, or None."""
    m = _VERT.match(core)
    if m:
        return [f"vertebrae_{m.group(1).upper()}{int(m.group(2))}"]
    m = _VERT_WORDS.match(core)
    if m:
        n = ordinal(m.group(1)) if m.group(1) else (int(m.group(3)) if m.group(3) else None)
        if n is not None:
            return [f"vertebrae_{REGION_LETTER[m.group(2)]}{n}"]
    m = _RIB.match(core)
    if m and core != "rib":
        n = ordinal(m.group(1) or m.group(2)) if (m.group(1) or m.group(2)) else None
        n = n if n is not None else (int(m.group(3)) if m.group(3) else None)
        if n is not None:
            sides = [side] if side in ("left", "right") else ["left", "right"]
            return [f"rib_{s}_{n}" for s in sides]
    return None


def knowledge_lookup(text: str, vocab: Vocabulary) -> Optional[List[str]]:
    """Terms of ``vocab`` that ``text`` names by the knowledge stage, or None."""
    text = canonical_text(text)
    side, core, plural = vocab.parse(text)
    if plural:
        core = " ".join(w for w in core.split() if w not in CARDINALS)
    if not core:
        return None
    if plural and side is None:
        side = "both"
    idx = vocab.index()
    words = core.split()
    leading = next((i for i, w in enumerate(words) if w not in FILLERS), len(words))
    # as written, without filler words, without leading fillers only ("structure abdominal organs"), without
    # descriptors too ("large polyp")
    described = " ".join(w for w in words if w not in FILLERS and w not in _DROPPED_DESCRIPTORS)
    for c in dict.fromkeys([core, " ".join(w for w in words if w not in FILLERS), " ".join(words[leading:]),
                            described]):
        if not c:
            continue
        hit = numbered(c, side)
        if hit is not None:
            return hit
        if side == "both":  # a structure known per side: both of them
            pair = [idx.get((s, c)) for s in ("left", "right")]
            if all(p and p[0] == "term" for p in pair):
                return [p[1] for p in pair]
        for key in ((side, c), (None, c)):
            if key[0] == "both":
                continue
            hit = idx.get(key)
            if hit:
                terms = vocab.expand(hit[0], hit[1], side if key[0] is None else None)
                if terms:
                    return terms
    named = [w for w in text.split() if vocab.parse(w)[1]]   # side words and articles out
    return family_terms(named, side, vocab)


def exact_lookup(text: str, vocab: Vocabulary) -> Optional[str]:
    return vocab.exact_names().get(normalize(text))


@dataclass
class Placement:
    """Known structures placed in a vocabulary: ``terms`` it holds, ``notes`` on parts used or wholes
    widened to, ``missing`` structures it does not hold at all."""
    terms: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    widened: List[Tuple[str, str]] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)


def place(known: List[str], vocabulary: Vocabulary) -> Placement:
    """Map terms of the knowledge base onto ``vocabulary`` (module docstring)."""
    kb = vocabulary.with_knowledge()
    out = Placement()
    for t in known:
        if t in vocabulary.terms:
            out.terms.append(t)
            continue
        term = kb.terms.get(t)
        if term is None:
            out.missing.append(t)
            continue
        parts = [p for p in kb.parts_of(t) if p in vocabulary.terms]
        if parts:
            # the most general parts held (a part whose own parent is held is covered by it)
            parts = [p for p in parts if kb.terms[p].parent not in parts]
            out.terms += parts
            if not term.union:
                out.notes.append(f"{t} answered by its parts {', '.join(parts)}")
            continue
        whole = next((a for a in kb.ancestors_of(t) if a in vocabulary.terms), None)
        if whole is not None and not term.is_lesion:
            out.terms.append(whole)
            out.widened.append((t, whole))
            out.notes.append(f"{t} is part of {whole}: widened to {whole}")
            continue
        out.missing.append(t)
    out.terms = vocabulary.order(out.terms)
    return out
