"""One clause of a command -> its cues, grounded structures, strength, location and confounder words.

A clause is a piece of a sentence between separators ("," "and" "but" "then" ...; see
:data:`~.lexicon.CLAUSE_SPLIT`). Analysis runs in a fixed order so that each word is used once:

1. action cues (:data:`~.lexicon.CUES`), longest match first; a cue right after "not" / "never" is negated
   ("do not shrink the liver") unless the cue itself is a complaint that contains the negation;
2. confounder words of the causal knowledge base (so that "contrast" or "T2" is not read as a structure);
3. structures: longest word spans of what is left that the project's resolver grounds by name or knowledge
   (:func:`nnunet_causal.text.resolver.resolve_phrase`; never by surface similarity alone -- the
   embedding stage runs only when an encoder is given). A structure after a proximity word ("near the
   liver") is a location, not a target; a side word the structure does not use ("the left part of the
   liver") is a location too;
4. strength and location words; remaining content words are kept to name an unknown structure.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import List, Optional, Tuple

from nnunet_causal.intervention.commands import lexicon as L
from nnunet_causal.intervention.commands.causal_knowledge import CausalKnowledge, find_phrases
from nnunet_causal.text.resolver import resolve_phrase
from nnunet_causal.text.vocabulary import ARTICLES, FILLERS, SIDE_WORDS, Vocabulary, load_vocabulary
from nnunet_causal.text.words import lexicon as prompt_lexicon

MAX_SPAN = 7
_ARTICLES = {"the", "a", "an", "this", "that", "its", "their", "my", "our", "your"}
_PROX = re.compile(rf"(?:^| )(?:{L.PROXIMITY})(?: the| a| an| its| their)?$")
_NEGATORS = {"not", "never", "no", "without", "stop"}

#: location words that name a part of a structure ("pole", "tip", "head", "tail"): kept even inside its span
PART_LOCATIONS = frozenset({"pole", "tip", "head", "tail"})


@dataclass
class Cue:
    action: str
    kind: str
    start: int  # token index
    end: int
    text: str


@dataclass
class StructureSpan:
    start: int
    end: int
    text: str
    terms: List[str]
    method: str
    proximity: Optional[str] = None  # the proximity word before it, if any
    unused_side: Optional[str] = None
    in_model: bool = True


@dataclass
class Clause:
    text: str
    tokens: List[str]
    reason: bool = False
    cues: List[Cue] = field(default_factory=list)
    negated: List[Cue] = field(default_factory=list)
    structures: List[StructureSpan] = field(default_factory=list)
    confounder_words: List[str] = field(default_factory=list)
    strength: Optional[str] = None
    locations: List[str] = field(default_factory=list)
    unknown_words: List[str] = field(default_factory=list)
    pronoun: bool = False
    partial: bool = False

    @property
    def targets(self) -> List[StructureSpan]:
        """Structures that are edited: those named plainly, else those after a weak preposition ("the
        island in the liver"), else those after a proximity word ("remove the island near the liver")."""
        direct = [s for s in self.structures if s.in_model and not s.proximity]
        weak = [s for s in self.structures if s.in_model and s.proximity in L.WEAK_PROXIMITY]
        strong = [s for s in self.structures if s.in_model and s.proximity and s.proximity not in L.WEAK_PROXIMITY]
        return direct or weak or strong

    @property
    def near(self) -> List[StructureSpan]:
        """Structures named as places ("near the liver"; "spills into the stomach")."""
        targets = self.targets
        return [s for s in self.structures if s.in_model and s.proximity
                and (s not in targets or s.proximity not in L.WEAK_PROXIMITY)]

    def location(self) -> Optional[str]:
        words = [w for w in L.LOCATION_ORDER if w in self.locations]
        parts = [" ".join(words)] if words else []
        near = [t for s in self.near for t in s.terms]
        if near:
            parts.append("near " + " ".join(dict.fromkeys(near)))
        return ", ".join(parts) or None


@lru_cache(maxsize=1)
def _full_vocabulary() -> Vocabulary:
    return load_vocabulary("all")


def _token_spans(text: str, pattern: str) -> List[Tuple[int, int, str]]:
    """Matches of ``pattern`` as ``(first token, end token, matched text)`` on whole words."""
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    out = []
    for m in re.finditer(rf"(?<!\S)(?:{pattern})(?!\S)", text):
        if m.end() == m.start():
            continue
        a = sum(1 for s in starts if s < m.start())
        b = sum(1 for s in starts if s < m.end())
        out.append((a, b, m.group(0)))
    return out


def _find_cues(clause: Clause, reserved: List[bool]) -> None:
    """Cues on words not ``reserved`` (multi-word confounder phrases: "narrow band imaging" is no shrink)."""
    found = []
    for pattern, action, kind in L.CUES:
        for a, b, text in _token_spans(clause.text, pattern):
            if not any(reserved[a:b]):
                found.append(Cue(action, kind, a, b, text))
    found.sort(key=lambda c: (-(c.end - c.start), -len(c.text), c.start))
    used = [False] * len(clause.tokens)
    for cue in found:
        if any(used[cue.start:cue.end]):
            continue
        for i in range(cue.start, cue.end):
            used[i] = True
        has_negation = any(t in _NEGATORS for t in clause.tokens[cue.start:cue.end])
        before = clause.tokens[max(0, cue.start - 3):cue.start]
        if not has_negation and cue.kind != "is_not" and any(t in _NEGATORS for t in before):
            clause.negated.append(cue)
        else:
            clause.cues.append(cue)
    clause.cues.sort(key=lambda c: c.start)


def _ground(clause: Clause, vocabulary: Vocabulary, claimed: List[bool], encoder) -> None:
    """Longest-first structure spans over the words no cue or confounder word claimed."""
    n = len(clause.tokens)
    full = _full_vocabulary()
    own_names = {t.replace("_", " ") for t in vocabulary.terms}
    for length in range(min(MAX_SPAN, n), 0, -1):
        # among spans of one length, those that start with a word of substance and end on a noun first
        starts = sorted(range(0, n - length + 1), key=lambda i: (clause.tokens[i] in _ARTICLES,
                                                                  clause.tokens[i + length - 1] in SIDE_WORDS, i))
        for start in starts:
            end = start + length
            if any(claimed[start:end]):
                continue
            words = clause.tokens[start:end]
            if words[0] in FILLERS or words[-1] in FILLERS or words[-1] in _ARTICLES:
                continue
            text = " ".join(words)
            if text not in own_names and all(w in L.GENERIC_WORDS or w in ARTICLES or w in FILLERS or w in SIDE_WORDS
                                             for w in words):
                continue  # generic words ("the spot", "that blob") name no structure -- unless the model has one so named
            content = [w for w in words if w not in ARTICLES and w not in _ARTICLES]
            if len(content) == 1 and content[0].endswith("es") and vocabulary.parse(content[0])[1] == content[0][:-2] \
                    and len(content[0]) <= 5:
                continue  # "rules" read as the plural of "rul" (the right upper lobe); "ribs", "hips" stay
            res = resolve_phrase(text, vocabulary)
            in_model = bool(res.terms) and not _places_a_part(res)
            if not in_model:
                other = resolve_phrase(text, full)
                if not other.terms or _places_a_part(other):
                    continue
                res = other
            side, _, _ = vocabulary.parse(text)
            uses_side = any((vocabulary.terms.get(t) or full.terms.get(t)).side for t in res.terms
                            if (vocabulary.terms.get(t) or full.terms.get(t)) is not None)
            before = " ".join(clause.tokens[:start])
            prox = _PROX.search(before)
            prox_word = None
            if prox:
                prox_word = re.sub(r" (?:the|a|an|its|their)$", "", prox.group(0).strip())
                for i in range(start - len(prox.group(0).split()), start):
                    claimed[i] = True
            span = StructureSpan(start, end, text, res.terms, res.method, prox_word,
                                 side if side in ("left", "right") and not uses_side else None, in_model)
            clause.structures.append(span)
            for i in range(start, end):
                claimed[i] = True
    clause.structures.sort(key=lambda s: s.start)
    if encoder is not None and not any(s.in_model for s in clause.structures):
        _ground_by_embedding(clause, vocabulary, claimed, encoder)


def _places_a_part(res) -> bool:
    """Did grounding drop a position word ("upper part of the liver" -> liver)? In a command that word is
    where to edit, so the span is left to the shorter one ("part of the liver") and the word to the location."""
    positions = prompt_lexicon()["positions"]
    return any(w in positions for item in res.explanation.get("widened", []) for w in item.get("part_words", []))


def _ground_by_embedding(clause: Clause, vocabulary: Vocabulary, claimed: List[bool], encoder) -> None:
    """The resolver's similarity stage on the longest run of unclaimed content words (an encoder given)."""
    run, best = [], []
    for i, w in enumerate(clause.tokens + [""]):
        content = w and not claimed[i] and w not in L.GENERIC_WORDS and w not in L.LOCATION_WORDS
        if content:
            run.append(i)
        else:
            if len(run) > len(best):
                best = run
            run = []
    if not best:
        return
    text = " ".join(clause.tokens[i] for i in best)
    res = resolve_phrase(text, vocabulary, encoder=encoder)
    if res.terms:
        clause.structures.append(StructureSpan(best[0], best[-1] + 1, text, res.terms, res.method))
        for i in best:
            claimed[i] = True


def _inside_cue(clause: Clause, a: int, b: int) -> bool:
    return any(c.start <= a and b <= c.end for c in clause.cues + clause.negated)


def analyse_clause(text: str, vocabulary: Vocabulary, knowledge: CausalKnowledge, encoder=None,
                   reason: bool = False) -> Clause:
    """All the pieces of one clause (already normalised by :func:`~.lexicon.prepare_clause`)."""
    clause = Clause(text, text.split(), reason)
    clause.confounder_words = find_phrases(text, knowledge.words())
    spans = [sp for phrase in clause.confounder_words for sp in _token_spans(text, re.escape(phrase) + "(?:s|es)?")]
    reserved = [False] * len(clause.tokens)
    for a, b, _ in spans:
        if b - a > 1:
            for i in range(a, b):
                reserved[i] = True
    _find_cues(clause, reserved)
    claimed = list(reserved)
    for cue in clause.cues + clause.negated:
        for i in range(cue.start, cue.end):
            claimed[i] = True
    # one-word confounder terms are claimed after the structures: "enhancing" is a contrast effect, but
    # "the enhancing tumour" is a structure; a term inside a cue is none ("clipped" = a cut-off mask)
    single = [b - a == 1 for a, b, _ in spans]
    _ground(clause, vocabulary, claimed, encoder)
    in_structure = {i for st in clause.structures for i in range(st.start, st.end)}
    for (a, b, _), one in zip(spans, single):
        if one and not any(claimed[a:b]):
            claimed[a] = True
    clause.confounder_words = [p for p in clause.confounder_words
                               if any(not _inside_cue(clause, a, b) and not in_structure & set(range(a, b))
                                      for a, b, t in _token_spans(text, re.escape(p) + "(?:s|es)?"))]
    # cues that need a structure right after them
    kept = []
    for cue in clause.cues:
        if cue.kind == "is_not" and not any(s.start == cue.end for s in clause.structures):
            continue
        if cue.kind == "confounder_is":
            following = " ".join(clause.tokens[cue.end:cue.end + 3])
            if not find_phrases(following, knowledge.words()):
                continue
        kept.append(cue)
    # a verb that is a noun here ("the liver label is a false positive", "the liver contour is too tight")
    ends = {s.end for s in clause.structures}
    nouns = [c for c in kept if c.text in L.NOUN_VERBS and c.start > 0 and (
        clause.tokens[c.start - 1] in _ARTICLES or clause.tokens[c.start - 1] == "of" or c.start in ends)]
    for c in nouns:
        for i in range(c.start, c.end):
            claimed[i] = False
    kept = [c for c in kept if c not in nouns]
    # the most specific cue first (more words), then the earliest
    clause.cues = sorted(kept, key=lambda c: (-(c.end - c.start), c.start))
    # strength words are the words outside the cues ("too far" is a complaint, "far too" an intensifier)
    in_cue = {i for c in clause.cues + clause.negated for i in range(c.start, c.end)}
    strength_text = " ".join("_" if i in in_cue else w for i, w in enumerate(clause.tokens))
    strength_text = re.sub(r"\b(?:far|way) (?:into|past|beyond|over|out)\b", "into", strength_text)
    for strength, pattern in L.STRENGTH_WORDS:
        if _token_spans(strength_text, pattern):
            clause.strength = strength
            break
    in_structure = set()
    for s in clause.structures:
        in_structure.update(range(s.start, s.end))
        if s.unused_side:
            clause.locations.append(s.unused_side)
    for i, w in enumerate(clause.tokens):
        if i in in_structure:
            # "the lower pole of the right kidney": the grounding reads the part into the structure's span; the
            # part word is still where the edit happens
            if L.LOCATION_WORDS.get(w) in PART_LOCATIONS and clause.tokens[i + 1:i + 2] == ["of"]:
                clause.locations.append(L.LOCATION_WORDS[w])
            continue
        if claimed[i]:
            continue
        if w in L.LOCATION_WORDS and not (w == "right" and clause.tokens[i + 1:i + 2] == ["now"]):
            clause.locations.append(L.LOCATION_WORDS[w])
        elif w in L.PRONOUNS:
            clause.pronoun = True
        elif (w not in L.GENERIC_WORDS and w not in ARTICLES and w not in FILLERS and w not in SIDE_WORDS
              and not w.isdigit() and len(w) > 1):
            clause.unknown_words.append(w)
    clause.partial = bool(re.search(r"\b(?:part|parts|portion|portions|piece|half|edge|edges|tip|rim|border|"
                                    r"borders|margin|margins|some of|rest of|bottom|top|end|pole|corner)\b", text))
    # strength / generic words are not unknown structures
    strength_words = {w for _, p in L.STRENGTH_WORDS for a, b, t in _token_spans(text, p) for w in t.split()}
    clause.unknown_words = [w for w in clause.unknown_words if w not in strength_words]
    return clause
