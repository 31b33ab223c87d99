"""Confounder dictionaries: a style description per line, and the simulator that sets it (MCDRL, seed 001).

Format (UTF-8 text; ``#`` starts a comment; blank lines ignored)::

    [surface interference]
    a frame with specular reflections and bright white highlights  ::  specular_highlights(count=2..10)
    [imaging technology]
    a narrow-band imaging frame with green and blue tones          ::  nbi(amount=0.6..1) + colour_cast
    a T1-weighted MRI scan                                          # text only: no simulator

``[kind]`` starts a group of alternative confounders of one kind (MCDRL's kinds: field of view, lighting,
imaging technology, ...); a counterfactual view sets at most one entry of a group. Entries before the first
header form one group each.

Left of ``::`` is the description (embedded by the text encoder for the confounder bottleneck and LAD);
right of it one or more simulator calls joined by ``+``, each ``name`` or ``name(param=lo..hi, param=v)``
(a single value means ``v..v``). Names come from :data:`nnunet_causal.confounders.registry.SIMULATORS`;
parameters must lie within the simulator's bounds. A trailing ``@weight=w`` (w > 0, default 1) makes an
entry w times as likely as a weight-1 entry when a counterfactual view draws from its kind (our addition to
MCDRL's dictionary: the cue experiments (``benchmarks/cue_experiments``) found that views breaking *all* of a lesion's redundant
cues at once teach shape, so such a joint entry is drawn more often). A line without ``::`` is a text-only
confounder (it acts on features, not on images). The shipped files are ``resources/confounders/{endoscopy,ct,mri}.txt``;
dataset.json ``"confounder_dictionary"`` points at a user's own file.

Recipe header. Lines ``@recipe key = value`` before the first ``[kind]`` or entry set how a trainer draws
counterfactual views from the file (the share of views, of label-aware views, the weight exponent, GIN/IPA
on top...; keys, ranges and defaults in :mod:`nnunet_causal.confounders.recipe`)::

    @recipe probability = 0.5                # half of the samples stay factual
    @recipe label_aware_probability = 1.0    # every view includes a label-aware kind
    @recipe weight_exponent = 4              # within a kind, draw ~ @weight ** 4

A key the header leaves out keeps its default; dataset.json ``"counterfactual_recipe": {"probability": 0.6}``
overrides keys per dataset. An unknown key, a value out of range, a recipe line after the first entry, or a
recipe that cannot draw what it asks for (``label_aware_probability > 0`` with no label-aware entry,
``probability > 0`` with no simulated entry) is an error naming the file and line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Dict, List, Tuple

from nnunet_causal.confounders.base import Simulator
from nnunet_causal.confounders.recipe import (CounterfactualRecipe, kind_names, build_recipe, parse_header_line,
                                              with_overrides)
from nnunet_causal.confounders.registry import get_simulator
from nnunet_causal.errors import DatasetError

FAMILIES = ("endoscopy", "ct", "mri")
_MRI = re.compile(r"\b(t1|t1w|t1ce|t1c|t1gd|t2|t2w|flair|adc|dwi|mr|mri|pd|swi|spir|dual|in.?phase|opp)\b", re.I)
_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_WEIGHT = re.compile(rf"\s@\s*weight\s*=\s*(\S*)\s*$")
_ARG = re.compile(rf"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*({_NUM})\s*(?:\.\.\s*({_NUM}))?\s*$")


@dataclass
class ConfounderEntry:
    """One dictionary line: its ``description``, its simulators (empty for text-only), where it came from."""
    description: str
    simulators: Tuple[Simulator, ...]
    source: str
    line: int
    group: str = ""
    weight: float = 1.0

    @property
    def where(self) -> str:
        return f"{self.source}, line {self.line}"


def dictionary_path(family: str) -> Path:
    if family not in FAMILIES:
        raise DatasetError(f"unknown imaging family '{family}': use one of {', '.join(FAMILIES)} or a file path")
    return Path(str(resources.files("nnunet_causal") / "resources" / "confounders" / f"{family}.txt"))


def _resolve(family_or_path: str) -> Path:
    if os.sep in family_or_path or family_or_path.endswith(".txt"):
        return Path(family_or_path)
    return dictionary_path(family_or_path)


def _parse_calls(spec: str, where: str) -> Tuple[Simulator, ...]:
    calls = []
    for part in _split_plus(spec):
        m = _CALL.match(part)
        if not m:
            raise DatasetError(f"{where}: cannot read simulator call '{part.strip()}' (expected name or "
                               f"name(param=lo..hi, ...))")
        name, args = m.group(1), m.group(2)
        ranges = {}
        for arg in filter(str.strip, (args or "").split(",")):
            a = _ARG.match(arg)
            if not a:
                raise DatasetError(f"{where}: cannot read parameter '{arg.strip()}' of {name} (expected "
                                   f"param=lo..hi or param=value)")
            lo = float(a.group(2))
            ranges[a.group(1)] = (lo, float(a.group(3)) if a.group(3) is not None else lo)
        try:
            calls.append(get_simulator(name, **ranges))
        except ValueError as e:
            raise DatasetError(f"{where}: {e}") from None
    if not calls:
        raise DatasetError(f"{where}: '::' is followed by no simulator")
    return tuple(calls)


def _parse_weight(spec: str, where: str, strict: bool = True) -> Tuple[float, str]:
    """``(weight, spec without it)`` for a trailing ``@weight=w``; 1 when there is none."""
    m = _WEIGHT.search(" " + spec)
    if not m:
        if strict and "@" in spec:
            raise DatasetError(f"{where}: cannot read '{spec[spec.index('@'):].strip()}' (expected a trailing "
                               f"@weight=w with w > 0)")
        return 1.0, spec
    try:
        weight = float(m.group(1))
    except ValueError:
        weight = float("nan")
    if not weight > 0 or weight == float("inf"):
        raise DatasetError(f"{where}: entry weight '{m.group(1)}' must be a positive number (@weight=w)")
    return weight, (" " + spec)[:m.start()]


def _split_plus(spec: str) -> List[str]:
    """Split on '+' outside parentheses (a '+' inside a number such as 1e+3 stays)."""
    parts, depth, cur = [], 0, ""
    for ch in spec:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "+" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()] if spec.strip() else []


def load_confounder_entries(family_or_path: str) -> List[ConfounderEntry]:
    """Entries of a family (``endoscopy``/``ct``/``mri``) or of a user's file; errors name file and line."""
    return _read(family_or_path)[0]


def load_recipe(family_or_path: str) -> CounterfactualRecipe:
    """The recipe header of a family's or a user's dictionary (defaults where it sets nothing), checked
    against the file's entries."""
    entries, recipe = _read(family_or_path)
    check_recipe(recipe, entries)
    return recipe


def check_recipe(recipe: CounterfactualRecipe, entries: List[ConfounderEntry]) -> None:
    """A recipe that asks for views the entries cannot give is an error naming where it asked."""
    if recipe.label_aware_probability and not any(s.label_aware for e in entries for s in e.simulators):
        raise DatasetError(f"{recipe.where.get('label_aware_probability', 'recipe')}: label_aware_probability = "
                           f"{recipe.label_aware_probability} asks for label-aware views, but {entries[0].source} "
                           f"has no label-aware entry (a simulator that reads the label, e.g. structure_colour, "
                           f"contrast_phase, tissue_contrast); add one or set it to 0")
    for key in ("probability", "probability_start"):
        value = getattr(recipe, key)
        if key in recipe.where and value and not any(e.simulators for e in entries):
            raise DatasetError(f"{recipe.where[key]}: {key} = {value} asks for counterfactual views, but "
                               f"{entries[0].source} has no entry with a simulator; add one "
                               f"('description :: simulator') or set it to 0")
    known = list(dict.fromkeys(e.group for e in entries))
    unknown = [k for k in (kind_names(recipe.kinds) or ()) if k not in known]
    if unknown:
        raise DatasetError(f"{recipe.where.get('kinds', 'recipe')}: kinds = {recipe.kinds} names "
                           f"{', '.join(repr(k) for k in unknown)}, not a kind of {entries[0].source} "
                           f"(its kinds: {', '.join(known)})")


def _read(family_or_path: str) -> Tuple[List[ConfounderEntry], CounterfactualRecipe]:
    path = _resolve(family_or_path)
    if not path.is_file():
        raise DatasetError(f"confounder dictionary {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"confounder dictionary {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    entries, seen, group = [], {}, None
    header: Dict[str, object] = {}
    header_where: Dict[str, str] = {}
    for no, raw in enumerate(text.splitlines(), start=1):
        body = raw.split("#", 1)[0].strip()
        if not body:
            continue
        if body.startswith("@"):
            where = f"{path}, line {no}"
            if entries or group is not None:
                raise DatasetError(f"{where}: recipe lines belong to the header, before the first [kind] or entry")
            key, value = parse_header_line(body, where)
            if key in header_where:
                raise DatasetError(f"{where}: recipe key '{key}' repeats {header_where[key]}")
            header[key], header_where[key] = value, where
            continue
        if body.startswith("[") and body.endswith("]"):
            group = body[1:-1].strip()
            if not group:
                raise DatasetError(f"{path}, line {no}: empty group name '[]'")
            continue
        description, _, spec = body.partition("::")
        where = f"{path}, line {no}"
        if "::" in body:
            weight, spec = _parse_weight(spec, where)
        else:
            weight, description = _parse_weight(description, where, strict=False)
        description = description.strip()
        if not description:
            raise DatasetError(f"{where}: no description before '::'")
        key = " ".join(description.lower().split())
        if key in seen:
            raise DatasetError(f"{path}: line {no} repeats line {seen[key]} ('{description}')")
        seen[key] = no
        sims = _parse_calls(spec, where) if "::" in body else ()
        entries.append(ConfounderEntry(description, sims, str(path), no,
                                       group if group is not None else f"line {no}", weight))
    if not entries:
        raise DatasetError(f"{path}: no confounder descriptions (every line is empty or a comment)")
    return entries, build_recipe(header, header_where)


def load_confounder_dictionary(family_or_path: str) -> List[str]:
    """The descriptions of a dictionary (what the text encoder embeds)."""
    return [e.description for e in load_confounder_entries(family_or_path)]


def confounder_family_for_dataset(dataset_json: dict) -> str:
    """dataset.json ``"imaging_family"``, else from ``channel_names`` (CT -> ct; T1/T2/FLAIR/... -> mri;
    R, G, B -> endoscopy)."""
    family = dataset_json.get("imaging_family")
    if family:
        if family not in FAMILIES:
            raise DatasetError(f"dataset.json: unknown imaging_family '{family}' (use {', '.join(FAMILIES)})")
        return family
    names = [str(v) for v in dataset_json.get("channel_names", {}).values()]
    if any(n.strip().upper() == "CT" for n in names):
        return "ct"
    if any(_MRI.search(n) for n in names):
        return "mri"
    if sorted(n.strip().upper() for n in names) == ["B", "G", "R"] or any("rgb" in n.lower() for n in names):
        return "endoscopy"
    raise DatasetError(f"dataset.json: cannot tell the imaging family from channel_names {names}; add "
                       f"\"imaging_family\": \"ct\" | \"mri\" | \"endoscopy\"")


def dictionary_for_dataset(dataset_json: dict) -> str:
    """The dictionary a dataset uses: its own file (``"confounder_dictionary"``) or its family's name."""
    return dataset_json.get("confounder_dictionary") or confounder_family_for_dataset(dataset_json)


def confounders_for_dataset(dataset_json: dict) -> List[str]:
    """The descriptions of the dataset's dictionary."""
    return load_confounder_dictionary(dictionary_for_dataset(dataset_json))


def confounder_entries_for_dataset(dataset_json: dict) -> List[ConfounderEntry]:
    return load_confounder_entries(dictionary_for_dataset(dataset_json))


RECIPE_OVERRIDE_KEY = "counterfactual_recipe"


def recipe_for_dataset(dataset_json: dict) -> CounterfactualRecipe:
    """The recipe a dataset trains with: its dictionary's header, then dataset.json ``"counterfactual_recipe"``
    on top; checked against the dictionary's entries (errors name the file and line, or dataset.json)."""
    entries, recipe = _read(dictionary_for_dataset(dataset_json))
    if RECIPE_OVERRIDE_KEY in dataset_json:
        recipe = with_overrides(recipe, dataset_json[RECIPE_OVERRIDE_KEY], f'dataset.json "{RECIPE_OVERRIDE_KEY}"')
    check_recipe(recipe, entries)
    return recipe
