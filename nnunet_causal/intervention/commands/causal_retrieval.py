"""Causal retrieval (seed 003): which cause -- and which confounder dictionary entry -- a command means.

Ranking is by *shared causes*, never by embedding similarity alone. For a command clause and the case's
style description (its dataset.json domain record ``"style"``), each cause of the knowledge base
(:mod:`.causal_knowledge`) is scored by the tuple

    (words of the command covered by the cause's phrases, cause occurs in the case's imaging family,
     command names the cause's kind only vaguely, words of the style covered by its phrases, embedding
     similarity of command + style to the cause's words)

compared lexicographically: a cause the user names wins; for "ignore the artefact" the case's style decides
among artefact-kind causes; the text encoder only breaks ties (and is optional). Candidates are limited to
causes that have an entry in the model's confounder dictionary. The chosen cause's entry is the one whose
description holds most of the cause words the query used, then one that names the cause at all, then
the fewest other cause words, then most shared words ("arterial" picks the arterial-phase line, "noise"
the low-dose line, "T1 weighted" the plain T1 line rather than the contrast-enhanced one).

:class:`ExemplarBank` holds cases with their domain records and retrieves the cases that share most causes
with a query style (ties by embedding similarity), e.g. to show which earlier cases had the same problem.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from nnunet_causal.errors import DatasetError
from nnunet_causal.intervention.commands.causal_knowledge import (Cause, CausalKnowledge, find_phrases,
                                                                  load_causal_knowledge)
from nnunet_causal.text.vocabulary import normalize

_STOP = {"a", "an", "the", "with", "and", "of", "from", "scan", "frame", "ct", "mri", "by", "at", "very", "strong"}


@dataclass(frozen=True)
class DictionaryEntry:
    """A confounder dictionary line as retrieval sees it: its text and its simulators' names."""
    description: str
    simulators: Tuple[str, ...] = ()


@dataclass
class RankedCause:
    cause: Cause
    command_terms: List[str]
    style_terms: List[str]
    vague_match: bool
    family_match: bool
    similarity: float
    entries: List[DictionaryEntry]

    @property
    def key(self) -> tuple:
        """Words of the command the cause explains ("colour cast" = 2 beats "colour" = 1), same family,
        vague match, words of the style it explains, similarity."""
        return (_n_words(self.command_terms), int(self.family_match), int(self.vague_match),
                _n_words(self.style_terms), self.similarity)


def _n_words(phrases: List[str]) -> int:
    return sum(len(p.split()) for p in phrases)


@dataclass
class ConfounderChoice:
    """The retrieval answer: cause, effect, dictionary entry (None when nothing fits) and the reasoning."""
    cause: Optional[str]
    effect: Optional[str]
    entry: Optional[str]
    why: str
    ranking: List[RankedCause]


def dictionary_entries(confounders=None) -> List[DictionaryEntry]:
    """The entries to choose from: ``None`` = every shipped family; a family name or file path; or a list
    of descriptions / :class:`~nnunet_causal.confounders.dictionary.ConfounderEntry` objects. Plain
    descriptions that equal a shipped line get that line's simulators."""
    from nnunet_causal.confounders.dictionary import FAMILIES, load_confounder_entries

    if confounders is None:
        confounders = [e for f in FAMILIES for e in load_confounder_entries(f)]
    elif isinstance(confounders, (str, Path)):
        confounders = load_confounder_entries(str(confounders))
    shipped = {normalize(e.description): e for f in FAMILIES for e in load_confounder_entries(f)}
    out = []
    for c in confounders:
        if isinstance(c, DictionaryEntry):
            out.append(c)
        elif isinstance(c, str):
            known = shipped.get(normalize(c))
            out.append(DictionaryEntry(c, tuple(s.name for s in known.simulators) if known else ()))
        elif hasattr(c, "description"):
            out.append(DictionaryEntry(c.description, tuple(s.name for s in getattr(c, "simulators", ()))))
        else:
            raise DatasetError(f"confounder {c!r} is neither a description nor a dictionary entry")
    return out


def entries_of_cause(cause: Cause, entries: Sequence[DictionaryEntry]) -> List[DictionaryEntry]:
    """Entries that realise ``cause``: one of its simulators, one of its text fragments, or (for entries
    without simulators) one of its words in the description."""
    out = []
    for e in entries:
        desc = normalize(e.description)
        if set(e.simulators) & set(cause.simulators) or any(f and f in desc for f in cause.text_fragments):
            out.append(e)
        elif not e.simulators and cause.matched_terms(e.description):
            out.append(e)
    return out


_FAMILY_WORDS = {"ct": ["ct", "hu", "kernel", "computed tomography", "contrast phase", "scanner"],
                 "mri": ["mri", "mr", "t1", "t2", "flair", "tesla", "weighted"],
                 "endoscopy": ["frame", "colonoscope", "colonoscopy", "endoscopy", "endoscope", "white light",
                               "nbi", "mucosa", "site"]}


def imaging_family_of(text: Optional[str]) -> Optional[str]:
    """The family a style description speaks of (most family words), or None."""
    counts = {f: len(find_phrases(text or "", words)) for f, words in _FAMILY_WORDS.items()}
    best = max(counts, key=counts.get)
    return best if counts[best] and list(counts.values()).count(counts[best]) == 1 else None


def _content_words(text: str) -> set:
    return {w for w in normalize(text).split() if w not in _STOP}


def rank_causes(command: str, style: Optional[str] = None, confounders=None,
                knowledge: Optional[CausalKnowledge] = None, encoder=None) -> List[RankedCause]:
    """Causes with an entry among ``confounders``, best first (ranking in the module docstring)."""
    kb = knowledge or load_causal_knowledge()
    entries = dictionary_entries(confounders)
    vague = set(kb.vague_kinds(command))
    family = imaging_family_of(style) or imaging_family_of(command)
    ranked = []
    for cause in kb.causes:
        mine = entries_of_cause(cause, entries)
        if not mine:
            continue
        ranked.append(RankedCause(cause, cause.matched_terms(command), cause.matched_terms(style or ""),
                                  cause.kind in vague, family is None or family in cause.families, 0.0, mine))
    if encoder is not None and ranked:
        query = f"{command}. {style or ''}"
        texts = [query] + [", ".join([r.cause.name, *r.cause.terms[:6], *r.cause.effects]) for r in ranked]
        emb = encoder.encode(texts)
        for r, s in zip(ranked, (emb[1:] @ emb[0]).tolist()):
            r.similarity = float(s)
    ranked.sort(key=lambda r: r.key, reverse=True)
    return ranked


def resolve_confounder(command: str, style: Optional[str] = None, confounders=None,
                       knowledge: Optional[CausalKnowledge] = None, encoder=None) -> ConfounderChoice:
    """The dictionary entry a confounder command means, with its reasoning in ``why``."""
    ranking = rank_causes(command, style, confounders, knowledge, encoder)
    evidenced = [r for r in ranking if r.command_terms or (r.vague_match and r.style_terms)]
    if not evidenced:
        if not style and any(r.vague_match for r in ranking):
            why = (f"'{command}' does not say which artefact and no style description of the case was given; "
                   f"pass the case's style (--style) to resolve it")
        else:
            why = f"'{command}' names no cause of the knowledge base that this model's confounder dictionary holds"
        return ConfounderChoice(None, None, None, why, ranking)
    best = evidenced[0]
    words = _content_words(f"{command} {style or ''}")
    asked = {w for p in best.command_terms + best.style_terms for w in p.split()}

    def fit(e: DictionaryEntry) -> tuple:  # see the module docstring; an entry that also sets confounders
        own = {w for p in best.cause.matched_terms(e.description) for w in p.split()}  # the cause does not
        extra = len(set(e.simulators) - set(best.cause.simulators)) if best.cause.simulators else 0  # explain
        return (len(own & asked), bool(own), -extra, -len(own - asked),        # is a worse reading of it
                len(_content_words(e.description) & words))
    entry = max(best.entries, key=fit)
    effect = best.cause.effect_of(best.command_terms + best.style_terms)
    if best.command_terms:
        how = f"the command names cause '{best.cause.name}' ({', '.join(best.command_terms)})"
        if best.style_terms:
            how += f", and the case's style agrees ({', '.join(best.style_terms)})"
    else:
        how = (f"the command names an {best.cause.kind} vaguely; the case's style '{style}' shows cause "
               f"'{best.cause.name}' ({', '.join(best.style_terms)})")
    runner = [r for r in evidenced[1:] if r.key[:4] == best.key[:4]]
    broken = "embedding similarity" if encoder is not None else "knowledge-base order (no text encoder)"
    tie = f"; tie with {', '.join(r.cause.name for r in runner)} broken by {broken}" if runner else ""
    why = f"{how} -> effect '{effect}' -> dictionary entry '{entry.description}'{tie}"
    return ConfounderChoice(best.cause.name, effect, entry.description, why, ranking)


class ExemplarBank:
    """Cases with their domain records (``{"domain", "site", "modality", "scanner", "style"}``), retrieved
    by the causes their style descriptions share with a query."""

    def __init__(self, records: Mapping[str, Mapping], knowledge: Optional[CausalKnowledge] = None):
        self.knowledge = knowledge or load_causal_knowledge()
        self.records: Dict[str, dict] = {}
        for case, rec in records.items():
            if not isinstance(rec, Mapping):
                raise DatasetError(f"exemplar bank: the domain record of case '{case}' must be a mapping, got "
                                   f"{type(rec).__name__}")
            self.records[str(case)] = dict(rec)

    @classmethod
    def from_dataset_json(cls, dataset_json: Union[str, Path, Mapping], **kw) -> "ExemplarBank":
        """The ``"domains"`` records of a dataset.json (a path or the loaded mapping)."""
        if not isinstance(dataset_json, Mapping):
            path = Path(dataset_json)
            if not path.is_file():
                raise DatasetError(f"{path} does not exist")
            dataset_json = json.loads(path.read_text(encoding="utf-8"))
        domains = dataset_json.get("domains")
        if not isinstance(domains, Mapping) or not domains:
            raise DatasetError("dataset.json has no 'domains' records (case -> {domain, style, ...}) to build an "
                               "exemplar bank from")
        return cls(domains, **kw)

    def style_of(self, case: str) -> str:
        if case not in self.records:
            raise DatasetError(f"exemplar bank has no case '{case}' (it holds {len(self.records)} cases)")
        rec = self.records[case]
        return str(rec.get("style") or " ".join(str(rec.get(k, "")) for k in ("modality", "scanner", "domain")))

    def causes_of(self, case_or_style: str) -> Dict[str, List[str]]:
        """Cause name -> matched words for a case id or a style text (causes of the style's imaging family
        only, when the style names one)."""
        style = self.style_of(case_or_style) if case_or_style in self.records else case_or_style
        family = imaging_family_of(style)
        out = {}
        for cause in self.knowledge.causes:
            if family is not None and family not in cause.families:
                continue
            hit = cause.matched_terms(style)
            if hit:
                out[cause.name] = hit
        return out

    def retrieve(self, case_or_style: str, k: int = 5, encoder=None) -> List[dict]:
        """The ``k`` other cases sharing most causes with the query: ``{"case", "shared_causes", "similarity"}``
        (cases sharing none are left out; similarity is 0.0 without an encoder)."""
        query = set(self.causes_of(case_or_style))
        query_text = self.style_of(case_or_style) if case_or_style in self.records else case_or_style
        hits = []
        for case in self.records:
            if case == case_or_style:
                continue
            shared = sorted(query & set(self.causes_of(case)))
            if shared:
                hits.append({"case": case, "shared_causes": shared, "similarity": 0.0})
        if encoder is not None and hits:
            emb = encoder.encode([query_text] + [self.style_of(h["case"]) for h in hits])
            for h, s in zip(hits, (emb[1:] @ emb[0]).tolist()):
                h["similarity"] = round(float(s), 4)
        hits.sort(key=lambda h: (len(h["shared_causes"]), h["similarity"]), reverse=True)
        return hits[:k]
