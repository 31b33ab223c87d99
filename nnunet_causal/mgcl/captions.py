"""Organ-level captions from a report: sentence split + grounding with the project's resolver (seed 002, III.B).

OpenVocabCT asks an LLM to decompose each report into short organ-level descriptions. The default here is
offline and deterministic instead:

1. the report is split into sentences (``.``, ``!``, ``?`` followed by white space, and line breaks; a
   ``;`` does not split, so "X is small; no focal abnormality" stays one finding);
2. every sentence is grounded with :func:`nnunet_causal.text.resolver.resolve_phrase` (knowledge stages
   only, no embedding similarity): word spans of up to :data:`MAX_SPAN` words are tried longest first, a
   span that resolves names its structures, so "left renal organ" -> ``kidney_left``, "kidney on the left
   side" -> ``kidney_left``, "kidneys" -> both kidneys (laterality is the resolver's, parsed explicitly);
3. the sentence becomes one caption of *every* structure it names, its text unchanged;
4. negations stay negations: a caption is marked ``negated`` when the sentence says that the structure
   itself is not there ("No spleen is seen.", "The gallbladder is surgically absent."), i.e. a negation cue
   within :data:`NEGATION_WINDOW` words before the structure's name or an absence cue after it. A negated
   finding about a present organ ("The liver is normal, without focal lesion.") is not negated.

:func:`names_its_structure` is the seed's metadata filter (a caption is kept only if it names its organ);
the LLM extractor (:mod:`nnunet_causal.mgcl.llm`) applies it to every caption it gets back.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

from nnunet_causal.text.resolver import resolve_phrase
from nnunet_causal.text.vocabulary import Vocabulary, normalize

MAX_SPAN = 6
NEGATION_WINDOW = 4
NEGATION_CUES = ("no", "without", "absent", "absence", "not", "never", "neither", "nor")
ABSENCE_CUES = ("absent", "not seen", "not visualized", "not visualised", "not identified", "removed", "resected",
                "missing", "ectomy", "is not present", "are not present")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Caption:
    """One organ-level caption: the ``structure`` (label name) it describes, its ``text``, whether it
    states that the structure is absent (``negated``) and where it came from (``report`` / ``labels`` /
    ``llm``)."""

    structure: str
    text: str
    negated: bool = False
    source: str = "report"

    def as_dict(self) -> dict:
        return asdict(self)


def split_sentences(report: str) -> List[str]:
    """Sentences of ``report`` (stripped, empty ones dropped)."""
    return [s.strip() for s in _SENTENCE_END.split(report or "") if s and s.strip(" .;,\t")]


def _resolve_span(span: str, vocabulary: Vocabulary) -> List[str]:
    res = resolve_phrase(span, vocabulary)  # a span as written, no encoder: exact and knowledge stages only
    return list(res.terms) if res.method in ("exact", "knowledge") else []


def ground_sentence(sentence: str, vocabulary: Vocabulary) -> List[tuple]:
    """``[(start word, end word, [term, ...]), ...]``: the structure mentions of ``sentence``, left to right,
    longest span first, non-overlapping. Word indices refer to ``normalize(sentence).split()``."""
    words = normalize(sentence).split()
    found, i = [], 0
    while i < len(words):
        for n in range(min(MAX_SPAN, len(words) - i), 0, -1):
            terms = _resolve_span(" ".join(words[i:i + n]), vocabulary)
            if terms:
                found.append((i, i + n, terms))
                i += n
                break
        else:
            i += 1
    return found


def _is_negated(words: Sequence[str], start: int, end: int, previous_end: int, next_start: int) -> bool:
    """A negation cue in the few words before the mention (not reaching back past the previous mention), or
    an absence cue after it (up to the next mention)."""
    before = words[max(previous_end, start - NEGATION_WINDOW):start]
    if any(w in NEGATION_CUES for w in before):
        return True
    after = " ".join(words[end:next_start])
    return any(cue in after for cue in ABSENCE_CUES)


def extract_captions(report: str, vocabulary: Vocabulary) -> List[Caption]:
    """Organ-level captions of ``report`` for the structures of ``vocabulary`` (label names when the
    vocabulary is a model's or dataset's, see :func:`~nnunet_causal.text.vocabulary.vocabulary_from_labels`).

    A structure named twice in one sentence gets that sentence once; it is negated if any mention is."""
    out: List[Caption] = []
    for sentence in split_sentences(report):
        words = normalize(sentence).split()
        per_structure: Dict[str, bool] = {}
        mentions = ground_sentence(sentence, vocabulary)
        for j, (start, end, terms) in enumerate(mentions):
            previous_end = mentions[j - 1][1] if j else 0
            next_start = mentions[j + 1][0] if j + 1 < len(mentions) else len(words)
            negated = _is_negated(words, start, end, previous_end, next_start)
            for term in terms:
                label = vocabulary.label_for_term(term) or term
                per_structure[label] = per_structure.get(label, False) or negated
        out.extend(Caption(label, sentence, negated) for label, negated in per_structure.items())
    return out


def names_its_structure(caption: Caption, vocabulary: Vocabulary) -> bool:
    """The seed's metadata filter: True when the caption's text names its own structure -- a synonym of it
    occurs as a substring (case-insensitive, normalised), or grounding the text finds the structure."""
    text = f" {normalize(caption.text)} "
    term = next((t for t, label in vocabulary.labels.items() if label == caption.structure), caption.structure)
    entry = vocabulary.terms.get(term)
    if entry is not None:
        from nnunet_causal.text.label_text import label_to_text
        names = [label_to_text(entry.name), *entry.synonyms]
        if any(f" {normalize(n)} " in text for n in names if normalize(n)):
            return True
    labels = {vocabulary.label_for_term(t) or t for _, _, terms in ground_sentence(caption.text, vocabulary)
              for t in terms}
    return caption.structure in labels
