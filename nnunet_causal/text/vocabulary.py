"""The anatomical knowledge base: canonical structures, their names, sides and merged categories.

``resources/vocabulary.json`` (editable) holds

* ``terms``: canonical snake_case structures -- the 117 TotalSegmentator classes, the BTCV / AMOS / CHAOS
  labels that are not among them, BraTS regions and endoscopy targets -- each with synonyms
  (abbreviations, lay, Latin and adjectival forms), its ``side`` (left / right / null), the side-free
  ``base`` structure it is one side of, and the named vocabularies it belongs to;
* ``bases``: side-free structures (``kidney``, ``adrenal gland``, ``femur``, ...) with their names; a base
  plus a side is one term, a base without side is the merged category of both sides;
* ``groups``: merged categories (``lung`` = the five lobes, ``left lung`` = its two, ``lumbar spine`` =
  L1-L5, ...), optionally per side.

A :class:`Vocabulary` can be restricted to a named subset (``total``, ``btcv``, ``amos``, ``chaos``,
``brats``, ``endoscopy``, ``all``) or built from a trained model's labels (:func:`vocabulary_from_labels`).
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from nnunet_causal.errors import NnunetCausalError

VOCABULARY_NAMES = ("total", "btcv", "amos", "chaos", "brats", "endoscopy", "all")
ARTICLES = {"the", "a", "an", "this", "that", "its", "his", "her", "their", "my", "our", "your", "please",
            "segment", "show", "find", "mask", "outline", "delineate", "contour"}
FILLERS = {"region", "regions", "area", "areas", "organ", "organs", "structure", "structures", "tissue", "zone",
           "part", "parenchyma", "portion", "of", "on", "side", "sided", "in", "at", "to", "proper", "whole",
           "entire", "body", "segment", "territory"}
SIDE_WORDS = {"left": "left", "lt": "left", "sinister": "left", "sinistra": "left", "sinistral": "left",
              "sin": "left", "levo": "left", "right": "right", "rt": "right", "dexter": "right", "dextra": "right",
              "dextral": "right", "dex": "right", "both": "both", "bilateral": "both", "bilaterally": "both",
              "paired": "both", "all": "both"}
ORDINALS = {w: i for i, w in enumerate(["zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh",
                                        "eighth", "ninth", "tenth", "eleventh", "twelfth"])}
REGION_LETTER = {"cervical": "C", "thoracic": "T", "dorsal": "T", "lumbar": "L", "sacral": "S"}


@dataclass
class Term:
    name: str
    synonyms: List[str] = field(default_factory=list)
    side: Optional[str] = None
    base: Optional[str] = None
    vocabularies: List[str] = field(default_factory=list)


def normalize(text: str) -> str:
    """Lower case, punctuation and underscores to spaces, collapsed whitespace."""
    text = text.lower().replace("_", " ").replace("/", " ").replace("-", " ")
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


class Vocabulary:
    """Terms (ordered), bases, groups and, for a model's vocabulary, the label name of each term."""

    def __init__(self, terms: Mapping[str, Term], bases: Mapping[str, List[str]], groups: Mapping[str, dict],
                 labels: Optional[Mapping[str, str]] = None):
        self.terms: Dict[str, Term] = dict(terms)
        self.bases = dict(bases)
        self.groups = dict(groups)
        self.labels: Dict[str, str] = dict(labels or {})
        self._index: Optional[Dict[Tuple[Optional[str], str], tuple]] = None
        self._words: Optional[set] = None
        self._with_knowledge: Optional["Vocabulary"] = None

    def with_knowledge(self) -> "Vocabulary":
        """This vocabulary merged into the full knowledge base (cached): lets a restricted vocabulary
        recognise structures it does not hold, so that they are rejected instead of mis-matched."""
        if self._with_knowledge is None:
            self._with_knowledge = _full_vocabulary().merged_with(self)
        return self._with_knowledge

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
                terms[n].synonyms = list(dict.fromkeys(terms[n].synonyms + t.synonyms))
                terms[n].side, terms[n].base = terms[n].side or t.side, terms[n].base or t.base
            else:
                terms[n] = copy.deepcopy(t)
        return Vocabulary(terms, {**self.bases, **other.bases}, {**self.groups, **other.groups},
                          {**self.labels, **other.labels})

    def label_for_term(self, term: str) -> Optional[str]:
        """Label name a model uses for ``term`` (None if the model was not trained on it)."""
        return self.labels.get(term)

    # ------------------------------------------------------------------ lookup
    @property
    def words(self) -> set:
        if self._words is None:
            words = set()
            from nnunet_causal.text.label_text import label_to_text
            for t in self.terms.values():
                for s in [*t.synonyms, label_to_text(t.name)]:
                    words.update(normalize(s).split())
            for names in self.bases.values():
                for s in names:
                    words.update(normalize(s).split())
            words.update(w for g in self.groups for w in normalize(g).split())
            self._words = words
        return self._words

    def parse(self, text: str) -> Tuple[Optional[str], str, bool]:
        """``(side, core, plural)``: side words removed, articles dropped, plurals singularised."""
        words = [w for w in normalize(text).split() if w not in ARTICLES]
        sides = {SIDE_WORDS[w] for w in words if w in SIDE_WORDS}
        side = None if not sides else ("both" if len(sides) > 1 or "both" in sides else sides.pop())
        core, plural = [], False
        for w in words:
            if w in SIDE_WORDS:
                continue
            s = self._singular(w)
            plural |= s != w
            core.append(s)
        return side, " ".join(core), plural

    def _singular(self, w: str) -> str:
        if w in self.words or len(w) <= 3:
            return w
        for suffix, repl in (("ies", "y"), ("ae", "a"), ("es", ""), ("s", ""), ("i", "us")):
            if w.endswith(suffix) and (w[: -len(suffix)] + repl) in self.words:
                return w[: -len(suffix)] + repl
        return w

    def index(self) -> Dict[Tuple[Optional[str], str], tuple]:
        """``(side, core) -> ("term", name) | ("base", name) | ("group", name)``."""
        if self._index is None:
            idx: Dict[Tuple[Optional[str], str], tuple] = {}
            for base, names in self.bases.items():
                for s in [base, *names]:
                    idx.setdefault((None, self.parse(s)[1]), ("base", base))
            for g in self.groups:
                idx[(None, self.parse(g)[1])] = ("group", g)
            from nnunet_causal.text.label_text import label_to_text
            for t in self.terms.values():
                for s in [*t.synonyms, t.name, label_to_text(t.name)]:
                    side, core, _ = self.parse(s)
                    idx.setdefault((side, core), ("term", t.name))
            self._index = idx
        return self._index

    def aliases(self) -> List[Tuple[str, str]]:
        """``(alias text, term name)`` for every term synonym (used by the embedding stage)."""
        from nnunet_causal.text.label_text import label_to_text
        out = []
        for t in self.terms.values():
            for s in dict.fromkeys([label_to_text(t.name), *t.synonyms]):
                out.append((s, t.name))
        return out

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

    def order(self, names: Iterable[str]) -> List[str]:
        pos = {n: i for i, n in enumerate(self.terms)}
        return sorted(dict.fromkeys(n for n in names if n in pos), key=pos.__getitem__)


def _resource_path() -> Path:
    return Path(str(resources.files("nnunet_causal") / "resources" / "vocabulary.json"))


@lru_cache(maxsize=1)
def _full_vocabulary() -> Vocabulary:
    data = json.loads(_resource_path().read_text(encoding="utf-8"))
    terms = {n: Term(n, v.get("synonyms", []), v.get("side"), v.get("base"), v.get("vocabularies", []))
             for n, v in data["terms"].items()}
    return Vocabulary(terms, data["bases"], data["groups"])


def load_vocabulary(name: str = "all") -> Vocabulary:
    """A named vocabulary, or the vocabulary of a trained model folder (its plans' prompts / dataset.json)."""
    full = _full_vocabulary()
    if name == "all":
        return full
    if name in VOCABULARY_NAMES:
        return full.subset(n for n, t in full.terms.items() if name in t.vocabularies)
    folder = Path(name)
    if folder.is_dir():
        return vocabulary_from_model_folder(folder)
    raise NnunetCausalError(f"unknown vocabulary '{name}': use one of {', '.join(VOCABULARY_NAMES)} or a trained "
                            f"model folder")


def vocabulary_from_labels(labels: Mapping[str, object], prompts: Optional[Mapping[str, Sequence[str]]] = None
                           ) -> Vocabulary:
    """A model's vocabulary: each foreground label becomes a term -- the canonical term when its name (or,
    failing that, one of its prompts) resolves exactly to one, otherwise a term of its own whose synonyms
    are its prompts. ``label_for_term`` then maps terms back to label names."""
    from nnunet_causal.text.label_text import label_to_text
    from nnunet_causal.text.resolver import resolve_prompt

    full = _full_vocabulary()
    terms, label_of = {}, {}
    for name in labels:
        if name in ("background", "ignore"):
            continue
        texts = list((prompts or {}).get(name, []))
        canonical = name if name in full.terms else None
        if canonical is None:
            for candidate in [label_to_text(name), *texts]:
                res = resolve_prompt(candidate, full)
                if len(res.terms) == 1 and res.method == "exact":
                    canonical = res.terms[0]
                    break
        if canonical is not None:
            t = copy.deepcopy(full.terms[canonical])
            t.synonyms = list(dict.fromkeys([*texts, *t.synonyms]))
        else:
            canonical = name
            t = Term(name, list(dict.fromkeys([label_to_text(name), *texts])))
        terms[canonical] = t
        label_of[canonical] = name
    return Vocabulary(terms, full.bases, full.groups, label_of)


def vocabulary_from_model_folder(folder: Path) -> Vocabulary:
    """Vocabulary of a trained model folder (``plans.json`` prompts, else ``dataset.json`` labels)."""
    plans, dj = folder / "plans.json", folder / "dataset.json"
    if not dj.exists():
        raise NnunetCausalError(f"{folder} is not a trained model folder (no dataset.json)")
    dataset_json = json.loads(dj.read_text())
    prompts = None
    if plans.exists():
        prompts = (json.loads(plans.read_text()).get("nnunet_causal") or {}).get("prompts")
    return vocabulary_from_labels(dataset_json["labels"], prompts or dataset_json.get("prompts"))
