"""Spelling tolerance: correct the words of a prompt towards the vocabulary's own words.

Only words the vocabulary does not know are corrected, and only towards words that occur in its structure
names, synonyms, base and group names (or side words) -- never towards free text. The distance is the
optimal-string-alignment edit distance (insertions, deletions, substitutions and transpositions of two
neighbours each cost 1; Damerau 1964). Choices, made to keep corrections from inventing structures:

* the bound grows with word length (:func:`max_edits`): none below 4 letters ("ren", "cor" and "lt" are
  too short to tell a typo from another word), 1 up to 7 letters, 2 up to 11, 3 beyond;
* the first letter must agree (typists rarely miss it, and it keeps "drain" away from "brain");
* the nearest candidate must be unique: two vocabulary words equally near is reported, not guessed;
* anatomy that the vocabulary does not hold (:data:`~nnunet_causal.text.grounding.evidence.OUTSIDE_ENTITIES`,
  e.g. "ilium", which is one letter from "ileum") is known, hence never corrected.

The resolver tries the corrected prompt only with its exact and knowledge stages, after those failed on
the prompt as written, so a correction ranks below every exact and knowledge match.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from nnunet_causal.text.grounding.evidence import FUNCTION_WORDS, OUTSIDE_ENTITIES
from nnunet_causal.text.knowledge import Vocabulary
from nnunet_causal.text.words import ARTICLES, FILLERS, ORDINALS, SIDE_WORDS, lexicon, normalize

MIN_CORRECTABLE = 4


def max_edits(length: int) -> int:
    """Edits allowed for a word of ``length`` letters."""
    if length < MIN_CORRECTABLE:
        return 0
    if length <= 7:
        return 1
    return 2 if length <= 11 else 3


def edit_distance(a: str, b: str, bound: int) -> int:
    """Optimal-string-alignment distance of ``a`` and ``b``; any value above ``bound`` is returned as
    ``bound + 1`` (rows are abandoned once their minimum exceeds it)."""
    if abs(len(a) - len(b)) > bound:
        return bound + 1
    prev2: List[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > bound:
            return bound + 1
        prev2, prev = prev, cur
    return min(prev[-1], bound + 1)


@dataclass
class Correction:
    """The corrected prompt text and, per changed word, ``(written, corrected, edits)``."""
    text: str
    changes: List[Tuple[str, str, int]] = field(default_factory=list)
    ambiguous: Dict[str, List[str]] = field(default_factory=dict)


def _candidates(vocabulary: Vocabulary) -> List[str]:
    words = set(vocabulary.words) | set(SIDE_WORDS)
    return sorted(w for w in words if len(w) >= MIN_CORRECTABLE and w.isalpha())


def _is_known(word: str, vocabulary: Vocabulary, protected: Iterable[str]) -> bool:
    return (word in vocabulary.words or vocabulary.singular(word) != word or word in ARTICLES
            or word in FILLERS or word in SIDE_WORDS or word in ORDINALS or word in protected
            or not word.isalpha())


def correct_prompt(prompt: str, vocabulary: Vocabulary) -> Optional[Correction]:
    """``prompt`` (normalised) with each unknown word replaced by its unique nearest vocabulary word
    within :func:`max_edits`; None when no word was changed."""
    lex = lexicon()
    protected = set(FUNCTION_WORDS) | set(OUTSIDE_ENTITIES) | lex["task"] | lex["function"] | lex["parts"]
    for kind in ("modality", "sequence", "phase", "region", "view", "anchors", "imaging_nouns"):
        protected |= lex[kind]
    candidates = vocabulary.memo("spelling candidates", lambda: _candidates(vocabulary))
    out, changes, ambiguous = [], [], {}
    for word in normalize(prompt).split():
        bound = max_edits(len(word))
        if bound == 0 or _is_known(word, vocabulary, protected):
            out.append(word)
            continue
        best, nearest = bound + 1, []
        for c in candidates:
            if c[0] != word[0]:
                continue
            d = edit_distance(word, c, min(bound, best))
            if d < best:
                best, nearest = d, [c]
            elif d == best and d <= bound:
                nearest.append(c)
        if best <= bound and len(nearest) == 1:
            out.append(nearest[0])
            changes.append((word, nearest[0], best))
        else:
            if best <= bound:
                ambiguous[word] = nearest
            out.append(word)
    if not changes:
        return Correction(" ".join(out), [], ambiguous) if ambiguous else None
    return Correction(" ".join(out), changes, ambiguous)
