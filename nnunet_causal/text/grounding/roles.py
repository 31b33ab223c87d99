"""Read a prompt once into words with roles, and find the phrase that names the structure.

Roles (word lists in ``resources/prompt_words.json``, :func:`nnunet_causal.text.words.lexicon`):

* ``context`` -- imaging modality ("CT", "MRI", "colonoscopy"), MR sequence ("T1-weighted", "FLAIR"),
  contrast phase ("portal-venous phase"), view ("axial"), body region ("abdominal", "head and neck"). A
  run of such words is context only when it holds an *anchor* (a modality or an imaging noun: "abdominal
  CT", "T2 MRI", "arterial phase imaging"); "T1" alone is the vertebra, "cervical" alone a modifier;
* ``task`` -- verbs and nouns of imaging and delineation ("segment", "outline", "mask", "depicted",
  "anatomy", "please");
* ``structure`` / ``side`` -- the words of the structure phrase: what remains once context and task words
  are removed, cut before a relative clause, a copula or a clause verb ("the liver, which is enlarged",
  "the pancreas; it may be atrophic") and at the end of its sentence; of several such phrases the one a
  task word asks for ("The liver is normal. Segment the spleen."), else the first; with leading
  and trailing function words dropped. A trailing locative phrase that names nothing of the vocabulary
  ("in the patient") is cut too; one that does ("tumour in the liver") stays, for the phrase stages to
  read as a whole;
* ``function`` -- articles, prepositions, pronouns; ``unknown`` -- everything else.

A prompt the knowledge base knows whole is a name and keeps every word ("surrounding non-enhancing
FLAIR hyperintensity" is a BraTS region, not a region in a FLAIR image). When nothing remains (the prompt
is "brain MRI" or "heart CT"), the region words of the context runs are
read as the structure phrase instead. Nothing here decides which structure is meant: the phrase goes to
the phrase stages (:mod:`nnunet_causal.text.grounding.phrase`) exactly as if it had been written alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from nnunet_causal.text.grounding.lookup import exact_lookup, knowledge_lookup
from nnunet_causal.text.knowledge import Vocabulary
from nnunet_causal.text.words import FILLERS, SIDE_LETTERS, SIDE_WORDS, lexicon, prompt_words

CONTEXT_KINDS = ("modality", "sequence", "phase", "view", "region")
_PUNCTUATION = re.compile(r"([,;:()\[\]{}!?+&/]|\.(?:\s|$))")
#: punctuation that ends a sentence: a phrase never runs on into the next sentence
_SENTENCE_END = re.compile(r"^(?:[!?]|\.\s*)$")
_NEGATIONS = {"not", "never", "don", "dont", "doesn", "doesnt", "without"}


@dataclass
class ParsedPrompt:
    """A prompt's words (:func:`~nnunet_causal.text.words.prompt_words`) with one role each."""
    words: List[str]
    roles: List[str]
    #: positions of the structure phrase's words (in order)
    phrase_at: List[int] = field(default_factory=list)
    #: positions of words that follow punctuation (a list's commas are kept in the phrase)
    breaks: List[int] = field(default_factory=list)
    #: positions of every word left once context and task words are removed (the phrase before cuts)
    whole_at: List[int] = field(default_factory=list)
    #: the task verb before the phrase is negated ("do not segment the liver")
    negated: bool = False

    @property
    def phrase(self) -> str:
        return self._text(self.phrase_at)

    @property
    def whole(self) -> str:
        return self._text(self.whole_at)

    def _text(self, at: List[int]) -> str:
        return "".join((", " if k and i in self.breaks else " " if k else "") + self.words[i]
                       for k, i in enumerate(at))

    def context(self) -> Dict[str, List[str]]:
        """``{kind: [words]}`` for the context and task words (kinds with words only)."""
        out: Dict[str, List[str]] = {}
        for w, r in zip(self.words, self.roles):
            if r.startswith("context:") or r == "task":
                out.setdefault(r.split(":")[-1], []).append(w)
        return out

    def words_with(self, role: str) -> List[str]:
        return [w for w, r in zip(self.words, self.roles) if r == role]


def _context_kind(word: str, lex) -> Optional[str]:
    for kind in CONTEXT_KINDS:
        if word in lex[kind]:
            return kind
    return "imaging" if word in lex["anchors"] or word in lex["imaging_nouns"] else None


def _mark_context(words: List[str], roles: List[str], lex, breaks: List[int], vocabulary: Vocabulary) -> None:
    """Runs of context words holding an anchor become context. Runs stop at punctuation (``breaks``: the
    positions that start a new chunk); a run does not take the first word of a known name ("celiac trunk
    MR": "trunk" stays with "celiac")."""
    i = 0
    while i < len(words):
        if roles[i] or _context_kind(words[i], lex) is None:
            i += 1
            continue
        if i > 0 and i not in breaks and _context_kind(words[i - 1], lex) is None \
                and _known_pair(words[i - 1], words[i], lex, vocabulary):
            i += 1
            continue
        j = i + 1
        while j < len(words) and j not in breaks and not roles[j] and _context_kind(words[j], lex) is not None:
            j += 1
        run = range(i, j)
        # "and" joins region words only inside a run ("head and neck CT")
        while run and words[run.start] == "and":
            run = range(run.start + 1, run.stop)
        while run and words[run.stop - 1] == "and":
            run = range(run.start, run.stop - 1)
        if any(words[k] in lex["anchors"] for k in run):
            for k in run:
                roles[k] = f"context:{_context_kind(words[k], lex)}"
        i = j


def _known_pair(first: str, second: str, lex, vocabulary: Vocabulary) -> bool:
    """Is "first second" a name of the vocabulary (not merely "second" behind a filler word)?"""
    if first in lex["function"] or first in lex["task"]:
        return False
    side, core, _ = vocabulary.parse(f"{first} {second}")
    idx = vocabulary.index()
    return len(core.split()) == 2 and any((s, core) in idx for s in (None, side))


def _is_segment_noun(words: List[str], i: int, known, breaks=()) -> bool:
    """"segment" as a part (liver segment 4, segment 2 of the liver), not the verb. After punctuation
    (``breaks``) the word before it is of another chunk ("No kidney. Segment the spleen.")."""
    nxt = words[i + 1] if i + 1 < len(words) else ""
    prev = words[i - 1] if i > 0 and i not in breaks else ""
    return words[i] in ("segment", "segments") and (nxt[:1].isdigit() or nxt in ("i", "ii", "iii", "iv", "v", "vi",
                                                                                  "vii", "viii") or prev in known)


def parse_prompt(prompt: str, vocabulary: Vocabulary) -> ParsedPrompt:
    """Roles of every word and the structure phrase (module docstring)."""
    lex = lexicon()
    words: List[str] = []
    breaks: List[int] = []
    sentences: List[int] = []   # positions that start a new sentence
    pieces = _PUNCTUATION.split(prompt)   # chunks at even indices, the punctuation between them at odd ones
    for k in range(0, len(pieces), 2):
        breaks.append(len(words))
        if k and _SENTENCE_END.match(pieces[k - 1]):
            sentences.append(len(words))
        words += prompt_words(pieces[k])
    roles: List[str] = [""] * len(words)
    known = vocabulary.words
    if exact_lookup(" ".join(words), vocabulary) or knowledge_lookup(" ".join(words), vocabulary):
        # a name the knowledge base knows whole ("surrounding non-enhancing FLAIR hyperintensity") is a name
        at = list(range(len(words)))
        roles = ["side" if w in SIDE_WORDS or w in SIDE_LETTERS else "structure" for w in words]
        return ParsedPrompt(words, roles, at, breaks)
    _mark_context(words, roles, lex, breaks, vocabulary)
    for i, w in enumerate(words):
        if not roles[i] and w in lex["task"] and not _is_segment_noun(words, i, known, breaks):
            roles[i] = "task"
    rest = [i for i, r in enumerate(roles) if not r]
    whole = _trim(words, rest, lex)
    phrase = _cut(words, rest, lex, known, sentences)
    if not any(words[i] not in lex["function"] for i in phrase):
        # nothing but context ("brain MRI", "heart CT"): the region words may be the structure
        rest = [i for i, r in enumerate(roles) if r == "context:region" or not r]
        phrase = _cut(words, rest, lex, known, sentences)
    for i in phrase:
        w = words[i]
        roles[i] = "side" if w in SIDE_WORDS or w in lex["side_short"] or w in SIDE_LETTERS else "structure"
    for i, w in enumerate(words):
        if not roles[i]:
            roles[i] = "function" if w in lex["function"] or w in lex["descriptors"] else (
                "known" if w in known else "unknown")
    return ParsedPrompt(words, roles, phrase, breaks, whole if whole != phrase else [],
                        _negated(words, phrase, lex))


def _before(words: List[str], i: int, lex) -> int:
    """The position of the last word before ``i`` that is not a function word (-1 when none)."""
    k = i - 1
    while k >= 0 and words[k] in lex["function"]:
        k -= 1
    return k


def _after_task(words: List[str], run: List[int], lex, rest) -> bool:
    """Does ``run`` follow a task word ("segment the spleen", "a mask of the spleen")?"""
    k = _before(words, run[0], lex)
    return k >= 0 and k not in rest and words[k] in lex["task"]


def _negated(words: List[str], phrase: List[int], lex) -> bool:
    """"do not segment the liver", "never outline the liver", "don't mask the liver": a negation word right
    before the task word that precedes the phrase."""
    if not phrase:
        return False
    k = _before(words, phrase[0], lex)
    if k < 0 or words[k] not in lex["task"]:
        return False
    k -= 1
    while k >= 0 and words[k] in ("do", "does", "please", "t"):
        k -= 1
    return k >= 0 and words[k] in _NEGATIONS


def _cut(words: List[str], rest: List[int], lex, known, sentences=()) -> List[int]:
    """The structure phrase among positions ``rest``: runs split where context or task words intervene or
    a sentence starts (``sentences``), and cut at a boundary word after content. Of the runs holding a
    vocabulary word other than a filler, the first a task word asks for, else the first of them (else one
    holding any vocabulary word, else the first with content); trimmed of function words, a trailing
    locative phrase without vocabulary words removed."""
    runs: List[List[int]] = []
    cur: List[int] = []
    content = stop = False
    last = -1
    for i in rest:
        w = words[i]
        gap, last = i != last + 1, i
        if cur and (i in sentences or gap and content and not _joinable(words, cur[-1], i, lex)):
            runs.append(cur)
            cur, content, stop = [], False, False
        if stop:
            continue
        if content and w in lex["boundaries"] and not _side_phrase(words, i):
            stop = True  # a relative clause or a copula: the rest of this run is not the structure
            continue
        cur.append(i)
        content |= w not in lex["function"]
    runs.append(cur)
    runs = [_trim(words, r, lex) for r in runs]
    runs = [r for r in runs if r]
    naming = [r for r in runs if any(words[i] in known and words[i] not in FILLERS for i in r)]
    rest_at = set(rest)
    # a run a task word asks for wins over one merely mentioned ("The liver is normal. Segment the spleen.")
    out = next((r for r in naming if _after_task(words, r, lex, rest_at)), naming[0] if naming else
               next((r for r in runs if any(words[i] in known for i in r)), runs[0] if runs else []))
    for k, i in enumerate(out):  # "liver in the patient": the locative phrase names nothing we know
        if k and words[i] in lex["locatives"] and not _side_phrase(words, i):
            tail = [words[j] for j in out[k + 1:] if words[j] not in lex["function"]]
            if tail and not any(w in known for w in tail):
                return out[:k]
            break
    return out


def _trim(words: List[str], run: List[int], lex) -> List[int]:
    out = list(run)
    strip = lex["function"] | lex["imaging_nouns"] | {"and", "or"}   # a connector with nothing on one side
    while out and words[out[0]] in strip and words[out[0]] not in ("both", "all"):
        out.pop(0)
    while out and words[out[-1]] in strip:
        out.pop()
    return out


def _side_phrase(words: List[str], i: int) -> bool:
    """"on the left", "on the right side": a side, not a boundary."""
    tail = [w for w in words[i + 1:i + 4] if w not in ("the", "side", "hand")]
    return bool(tail) and tail[0] in ("left", "right")


def _joinable(words: List[str], a: int, b: int, lex) -> bool:
    """May the phrase continue from position ``a`` to ``b`` over removed words? Only over task words
    inside a name-like run ("left kidney segmentation and spleen" keeps going) -- never over context."""
    return all(words[k] in lex["task"] for k in range(a + 1, b)) and words[b] in {"and", "or"} | set(SIDE_WORDS)
