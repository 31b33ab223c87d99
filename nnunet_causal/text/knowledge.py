"""The anatomical knowledge base: structures, their names, sides, parts, lesions and merged categories.

``resources/vocabulary.json`` (data, edited by hand) holds

* ``terms``: canonical snake_case structures -- every class of TotalSegmentator's class maps (all tasks),
  the labels of BTCV / AMOS / CHAOS / BraTS / ACDC / KiTS / LiTS / MSD, head-and-neck organs at risk
  (HaN-Seg) and endoscopy targets. Each has ``synonyms`` (abbreviations, lay, Latin, adjectival forms and
  the names dataset label maps use), ``side`` (left / right / null), the side-free ``base`` it is one side
  of, ``system`` (organ system), ``region`` (body region), ``also_regions`` (further regions a structure runs
  through: the aorta is filed under the thorax and also lies in the abdomen), ``lesion_of`` (the organ a
  lesion is *of*: a lesion is never its organ, nor the organ its lesion), ``parent`` (the whole it is a
  part of; the parts of a term are the terms naming it as parent), ``union`` (the label is the union of its
  parts: the knowledge base answers with the parts), ``vocabularies`` (named subsets) and ``sources``;
* ``bases``: side-free structures with their names; a base plus a side is one term, a base alone is both;
* ``groups``: merged categories and families (``lung`` = the five lobes, ``lumbar spine`` = L1-L5,
  ``heart chamber``, ``head and neck organ at risk`` = the HaN-Seg structures, ``abdominal organ``, ...),
  per side; ``alias`` names another group.

This floor sits on :mod:`nnunet_causal.text.words` and :mod:`nnunet_causal.text.label_text` and imports
nothing above it: grounding stages (:mod:`nnunet_causal.text.grounding`) read a :class:`Vocabulary`, and
model vocabularies (:mod:`nnunet_causal.text.vocabulary`) are built on top.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from nnunet_causal.text.label_text import label_to_text
from nnunet_causal.text.words import ARTICLES, SIDE_LETTERS, SIDE_WORDS, normalize, resource_path, singular

#: named subsets of the knowledge base (``all`` = every term except union labels, answered by their parts)
VOCABULARY_NAMES = ("total", "totalseg", "btcv", "amos", "chaos", "brats", "acdc", "kits", "lits", "msd", "han",
                    "endoscopy", "all")


@dataclass
class Term:
    name: str
    synonyms: List[str] = field(default_factory=list)
    side: Optional[str] = None
    base: Optional[str] = None
    vocabularies: List[str] = field(default_factory=list)
    system: Optional[str] = None
    region: Optional[str] = None
    lesion_of: Optional[str] = None
    parent: Optional[str] = None
    union: bool = False
    sources: Dict[str, List[str]] = field(default_factory=dict)
    also_regions: Tuple[str, ...] = ()

    @property
    def regions(self) -> Tuple[str, ...]:
        """Every region the structure lies in: ``region``, then ``also_regions`` (empty when no region)."""
        return (self.region, *self.also_regions) if self.region else ()

    def lies_in(self, regions) -> bool:
        """Whether the structure lies in any of ``regions``."""
        return any(r in regions for r in self.regions)

    @property
    def is_lesion(self) -> bool:
        return self.lesion_of is not None


class Vocabulary:
    """Terms (ordered), bases, groups and, for a model's vocabulary, the label name of each term."""

    def __init__(self, terms: Mapping[str, Term], bases: Mapping[str, List[str]], groups: Mapping[str, dict],
                 labels: Optional[Mapping[str, str]] = None):
        self.terms: Dict[str, Term] = dict(terms)
        self.bases = dict(bases)
        self.groups = dict(groups)
        self.labels: Dict[str, str] = dict(labels or {})
        self._memo: Dict[str, object] = {}

    def memo(self, key: str, build: Callable[[], object]):
        """A value derived from this vocabulary, built once (indices, word sets, alias lists)."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def with_knowledge(self) -> "Vocabulary":
        """This vocabulary merged into the full knowledge base (cached): lets a restricted vocabulary
        recognise structures it does not hold, so that they are refused instead of mis-matched."""
        return self.memo("with_knowledge", lambda: knowledge_base().merged_with(self))

    # ------------------------------------------------------------------ construction
    def subset(self, names: Iterable[str]) -> "Vocabulary":
        keep = [n for n in names if n in self.terms]
        return Vocabulary({n: self.terms[n] for n in keep}, self.bases, self.groups,
                          {n: l for n, l in self.labels.items() if n in keep})

    def merged_with(self, other: "Vocabulary") -> "Vocabulary":
        """Union; terms of ``other`` come first (a model's own names win ties), synonyms are merged."""
        terms = {n: copy.deepcopy(t) for n, t in other.terms.items()}
        for n, t in self.terms.items():
            if n in terms:
                mine = terms[n]
                mine.synonyms = list(dict.fromkeys(mine.synonyms + t.synonyms))
                for attr in ("side", "base", "system", "region", "lesion_of", "parent", "also_regions"):
                    setattr(mine, attr, getattr(mine, attr) or getattr(t, attr))
            else:
                terms[n] = copy.deepcopy(t)
        return Vocabulary(terms, {**self.bases, **other.bases}, {**self.groups, **other.groups},
                          {**self.labels, **other.labels})

    def label_for_term(self, term: str) -> Optional[str]:
        """Label name a model uses for ``term`` (None if the model was not trained on it)."""
        return self.labels.get(term)

    # ------------------------------------------------------------------ words and names
    @property
    def words(self) -> frozenset:
        """Every word of every name (terms, bases, groups)."""
        def build():
            words = set()
            for t in self.terms.values():
                for s in [*t.synonyms, label_to_text(t.name)]:
                    words.update(normalize(s).split())
            for names in self.bases.values():
                for s in names:
                    words.update(normalize(s).split())
            words.update(w for g in self.groups for w in normalize(g).split())
            return frozenset(words)
        return self.memo("words", build)

    def singular(self, word: str) -> str:
        return singular(word, self.words)

    def names_of(self, term: str) -> List[str]:
        """Readable label, synonyms and base names of ``term``."""
        t = self.terms[term]
        names = [label_to_text(term), *t.synonyms]
        if t.base:
            names += [t.base, *self.bases.get(t.base, [])]
        return names

    def parse(self, text: str) -> Tuple[Optional[str], str, bool]:
        """``(side, core, plural)``: side words removed, articles dropped, plurals singularised. Single
        letters L / R are sides when they are not followed by a number ("L kidney", "parotid r")."""
        words = [w for w in normalize(text).split() if w not in ARTICLES]
        sides, core, plural = set(), [], False
        for i, w in enumerate(words):
            letter = (w in SIDE_LETTERS and len(words) > 1
                      and not (i + 1 < len(words) and words[i + 1][:1].isdigit()))
            if w in SIDE_WORDS or letter:
                sides.add(SIDE_WORDS.get(w) or SIDE_LETTERS[w])
                continue
            s = self.singular(w)
            plural |= s != w
            core.append(s)
        side = None if not sides else ("both" if len(sides) > 1 or "both" in sides else sides.pop())
        return side, " ".join(core), plural

    def exact_names(self) -> Dict[str, str]:
        """normalised canonical name or readable label -> term (the exact stage)."""
        def build():
            out: Dict[str, str] = {}
            for name in self.terms:
                for s in (normalize(name), normalize(label_to_text(name))):
                    out.setdefault(s, name)
            return out
        return self.memo("exact", build)

    def index(self) -> Dict[Tuple[Optional[str], str], tuple]:
        """``(side, core) -> ("term", name) | ("base", name) | ("group", name)``."""
        def build():
            idx: Dict[Tuple[Optional[str], str], tuple] = {}
            for base, names in self.bases.items():
                for s in [base, *names]:
                    idx.setdefault((None, self.parse(s)[1]), ("base", base))
            for g in self.groups:
                idx[(None, self.parse(g)[1])] = ("group", g)
            for t in self.terms.values():
                for s in [*t.synonyms, t.name, label_to_text(t.name)]:
                    side, core, _ = self.parse(s)
                    idx.setdefault((side, core), ("term", t.name))
            return idx
        return self.memo("index", build)

    def aliases(self) -> List[Tuple[str, str]]:
        """``(alias text, term name)`` for every term synonym (used by the embedding stage)."""
        def build():
            out = []
            for t in self.terms.values():
                for s in dict.fromkeys([label_to_text(t.name), *t.synonyms]):
                    out.append((s, t.name))
            return out
        return self.memo("aliases", build)

    # ------------------------------------------------------------------ structure
    def expand(self, kind: str, name: str, side: Optional[str]) -> List[str]:
        """Terms of a lookup hit, honouring the side (a group/base without side means all members)."""
        if kind == "term":
            t = self.terms.get(name)
            if t is None:
                return []
            if side in ("left", "right") and t.side and t.side != side and t.base:
                return self.expand("base", t.base, side)
            return [name]
        if kind == "base":
            members = [t.name for t in self.terms.values() if t.base == name]
            if side in ("left", "right"):
                members = [m for m in members if self.terms[m].side == side]
            return members
        group = self.groups.get(name, {})
        if "alias" in group:
            return self.expand("group", group["alias"], side)
        members = group.get(side, group.get("all", [])) if side in ("left", "right") else group.get("all", [])
        return [m for m in members if m in self.terms]

    def parts_of(self, term: str) -> List[str]:
        """Terms naming ``term`` as their parent, transitively (leaves and inner parts)."""
        children = self.memo("children", lambda: _children(self.terms))
        out, todo = [], list(children.get(term, []))
        while todo:
            c = todo.pop(0)
            out.append(c)
            todo.extend(children.get(c, []))
        return out

    def ancestors_of(self, term: str) -> List[str]:
        """``parent``, its parent, ... (nearest first)."""
        out, t = [], self.terms.get(term)
        while t is not None and t.parent and t.parent not in out:
            out.append(t.parent)
            t = self.terms.get(t.parent)
        return out

    def order(self, names: Iterable[str]) -> List[str]:
        pos = self.memo("positions", lambda: {n: i for i, n in enumerate(self.terms)})
        return sorted(dict.fromkeys(n for n in names if n in pos), key=pos.__getitem__)


def _children(terms: Mapping[str, Term]) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for t in terms.values():
        if t.parent:
            out.setdefault(t.parent, []).append(t.name)
    return out


def _term(name: str, v: dict) -> Term:
    return Term(name, list(v.get("synonyms", [])), v.get("side"), v.get("base"), list(v.get("vocabularies", [])),
                v.get("system"), v.get("region"), v.get("lesion_of"), v.get("parent"), bool(v.get("union")),
                dict(v.get("sources", {})), tuple(v.get("also_regions", ())))


@lru_cache(maxsize=1)
def knowledge_base() -> Vocabulary:
    """Every structure of ``resources/vocabulary.json`` (union labels included)."""
    data = json.loads(resource_path("vocabulary.json").read_text(encoding="utf-8"))
    terms = {n: _term(n, v) for n, v in data["terms"].items()}
    return Vocabulary(terms, data["bases"], data["groups"])


def named_vocabulary(name: str) -> Vocabulary:
    """A named subset of the knowledge base (:data:`VOCABULARY_NAMES`)."""
    full = knowledge_base()
    if name == "all":
        return full.memo("all", lambda: full.subset(n for n, t in full.terms.items() if not t.union))
    return full.subset(n for n, t in full.terms.items() if name in t.vocabularies)
