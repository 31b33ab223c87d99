"""The editable causal knowledge base: causes -> imaging effects -> affected structures -> confounders.

Seed 003 (multimodal causal RAG) retrieves causal graphs instead of look-alike text. Our graph is small and
explicit, one YAML file (``resources/causal_knowledge.yaml``, format in its header): each *cause* (metal
implant, low dose, contrast phase, NBI, motion, bowel preparation, specular reflection, ...) lists the words
that name it, its imaging *effects* and their words, the *structures* it typically disturbs, and the
*confounders* it corresponds to -- simulator names of :mod:`nnunet_causal.confounders.registry` or
``text:`` fragments of text-only dictionary lines. A ``vague`` section lists words ("the artefact") that
name a kind of cause without saying which one.

Matching is by whole words after :func:`nnunet_causal.text.vocabulary.normalize` (a trailing plural
``s``/``es`` accepted), so "streaks" matches "streak" but "metallic" does not match "meta".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from nnunet_causal.errors import DatasetError
from nnunet_causal.text.vocabulary import normalize

KINDS = ("artefact", "acquisition", "content")
FAMILIES = ("ct", "mri", "endoscopy")


@dataclass(frozen=True)
class Cause:
    """One node of the causal graph with its effects (effect name -> words naming it)."""
    name: str
    kind: str
    families: Tuple[str, ...]
    terms: Tuple[str, ...]
    effects: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    structures: Tuple[str, ...] = ()
    simulators: Tuple[str, ...] = ()
    text_fragments: Tuple[str, ...] = ()

    def matched_terms(self, text: str) -> List[str]:
        """Cause and effect words found in ``text`` (normalised forms, longest first, no overlaps)."""
        phrases = list(self.terms) + [w for words in self.effects.values() for w in words]
        return find_phrases(text, phrases)

    def effect_of(self, matched: List[str]) -> Optional[str]:
        """The first effect whose words are among ``matched``; else the first effect."""
        for effect, words in self.effects.items():
            if any(normalize(w) in matched for w in words):
                return effect
        return next(iter(self.effects), None)


@dataclass(frozen=True)
class CausalKnowledge:
    causes: Tuple[Cause, ...]
    vague: Dict[str, Tuple[str, ...]]
    source: str

    def cause(self, name: str) -> Cause:
        for c in self.causes:
            if c.name == name:
                return c
        raise KeyError(name)

    def vague_kinds(self, text: str) -> List[str]:
        """Kinds named only vaguely in ``text`` ("ignore the artefact" -> ["artefact"])."""
        return [kind for kind, words in self.vague.items() if find_phrases(text, words)]

    def words(self) -> List[str]:
        """Every cause, effect and vague word (normalised), for detecting confounder talk in a command."""
        out: List[str] = []
        for c in self.causes:
            out += [normalize(t) for t in c.terms]
            out += [normalize(w) for ws in c.effects.values() for w in ws]
        out += [normalize(w) for ws in self.vague.values() for w in ws]
        return list(dict.fromkeys(w for w in out if w))


NEGATIONS = ("no", "without", "not", "low", "free of", "absent", "minimal")


def find_phrases(text: str, phrases) -> List[str]:
    """Normalised ``phrases`` that occur in ``text`` as whole words (plural s/es allowed), longest first;
    a phrase inside an already found longer one is not counted again, nor one right after a negation
    (:data:`NEGATIONS`: "low noise", "no specular highlights", "without metal")."""
    norm = f" {normalize(text)} "
    found, taken = [], []
    for phrase in sorted({normalize(p) for p in phrases if normalize(p)}, key=len, reverse=True):
        for m in re.finditer(rf"(?<= ){re.escape(phrase)}(?:s|es)?(?= )", norm):
            span = (m.start(), m.end())
            if any(a <= span[0] and span[1] <= b for a, b in taken):
                continue
            if norm[:span[0]].rstrip().endswith(tuple(f" {n}" for n in NEGATIONS)):
                continue
            taken.append(span)
            found.append(phrase)
            break
    return found


def _strings(value, where: str) -> Tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise DatasetError(f"{where} must be a list of words, got {value!r}")
    return tuple(str(v) for v in value)


def knowledge_path() -> Path:
    return Path(str(resources.files("nnunet_causal") / "resources" / "causal_knowledge.yaml"))


def load_causal_knowledge(path: Optional[str] = None) -> CausalKnowledge:
    """Read and check a knowledge base (default: the shipped one); errors name the file and cause."""
    from nnunet_causal.confounders.registry import SIMULATORS

    if path is None:
        return _shipped()
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"causal knowledge base {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DatasetError(f"causal knowledge base {p} is not readable YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("causes"), dict) or not data["causes"]:
        raise DatasetError(f"{p}: expected a mapping with a non-empty 'causes' mapping at the top")
    causes = []
    for name, spec in data["causes"].items():
        where = f"{p}: cause '{name}'"
        if not isinstance(spec, dict):
            raise DatasetError(f"{where} must be a mapping (kind, families, terms, effects, ...)")
        unknown = set(spec) - {"kind", "families", "terms", "effects", "structures", "confounders"}
        if unknown:
            raise DatasetError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        kind = spec.get("kind", "artefact")
        if kind not in KINDS:
            raise DatasetError(f"{where}: kind '{kind}' is not one of {', '.join(KINDS)}")
        families = _strings(spec.get("families"), f"{where}: families")
        bad = [f for f in families if f not in FAMILIES]
        if bad or not families:
            raise DatasetError(f"{where}: families must be a non-empty subset of {', '.join(FAMILIES)}, got "
                               f"{list(families)}")
        terms = _strings(spec.get("terms"), f"{where}: terms")
        if not terms:
            raise DatasetError(f"{where}: needs at least one term")
        effects_spec = spec.get("effects") or {}
        if not isinstance(effects_spec, dict):
            raise DatasetError(f"{where}: effects must map an effect to its words")
        effects = {str(e): _strings(w, f"{where}: effect '{e}'") for e, w in effects_spec.items()}
        sims, fragments = [], []
        for c in _strings(spec.get("confounders"), f"{where}: confounders"):
            if c.startswith("text:"):
                fragments.append(normalize(c[5:]))
            elif c in SIMULATORS:
                sims.append(c)
            else:
                known = ", ".join(sorted(SIMULATORS))
                raise DatasetError(f"{where}: confounder '{c}' is neither a simulator ({known}) "
                                   f"nor a 'text:' fragment")
        causes.append(Cause(str(name), kind, families, terms, effects,
                            _strings(spec.get("structures"), f"{where}: structures"), tuple(sims), tuple(fragments)))
    vague_spec = data.get("vague") or {}
    if not isinstance(vague_spec, dict) or set(vague_spec) - set(KINDS):
        raise DatasetError(f"{p}: 'vague' must map kinds ({', '.join(KINDS)}) to words")
    vague = {k: _strings(v, f"{p}: vague '{k}'") for k, v in vague_spec.items()}
    return CausalKnowledge(tuple(causes), vague, str(p))


@lru_cache(maxsize=1)
def _shipped() -> CausalKnowledge:
    return load_causal_knowledge(str(knowledge_path()))
