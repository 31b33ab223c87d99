"""The counterfactual sampling recipe: how a trainer draws do(z) views from a confounder dictionary.

A recipe is the header of a dictionary file (``@recipe key = value`` lines before the first ``[kind]`` or
entry; format in :mod:`nnunet_causal.confounders.dictionary`) and may be overridden per dataset by a
dataset.json object ``"counterfactual_recipe": {"key": value, ...}``. ``nnUNetTrainerCausalText`` trains with
it; a trainer class that sets the matching attribute (the ablations) pins that one knob.

Keys (range; value when neither the header nor dataset.json sets it):

=========================== ============================ ========================================================
key                         range (default)              what it sets
=========================== ============================ ========================================================
``probability``             0..1 (0.7)                   share of training samples that become a counterfactual
                                                         view; the rest stay factual
``probability_start``       0..1 (as probability)        the share at the first epoch; it moves linearly to
                                                         ``probability`` at the last (a curriculum)
``group_probability``       0..1 (0.5)                   chance that a view includes each kind (``[kind]``)
``label_aware_probability`` 0..1 (as group_probability)  chance for the kinds whose simulators read the label
                                                         (change a structure against its surroundings)
``max_kinds``               integer >= 1 (4)             most kinds set on one view
``weight_exponent``         >= 0 (1)                     an entry is drawn within its kind ~ ``@weight ** e``
``image_intervention``      gin_ipa | gin | none         GIN/IPA views on top (causal trainer)
                            (gin_ipa)
``intervention_probability`` 0..1 (0.5)                  share of samples given a GIN/IPA view (causal trainer)
``consistency_weight``      >= 0 (0)                     > 0: half of each batch paired factual / do(z) plus
                                                         ``w * symmetric KL`` (causal trainer)
``kinds``                   ``all`` or kind names,       the dictionary kinds (``[kind]``) a view may draw from;
                            comma-separated (all)        every other kind is left out (its descriptions still
                                                         reach the confounder bottleneck)
=========================== ============================ ========================================================

Written by hand: a dozen typed keys need no configuration library.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Dict, Mapping, Optional, Tuple

from nnunet_causal.errors import DatasetError

IMAGE_INTERVENTIONS = ("gin_ipa", "gin", "none")
ALL_KINDS = "all"


def _fraction(v: float) -> Optional[str]:
    return None if 0.0 <= v <= 1.0 else "must lie in [0, 1]"


def _non_negative(v: float) -> Optional[str]:
    return None if v >= 0.0 and math.isfinite(v) else "must be a finite number >= 0"


def _kind_list(v: str) -> Optional[str]:
    names = [n.strip() for n in v.split(",")]
    return None if v.strip() and all(names) else "must be 'all' or kind names separated by commas"


def kind_names(kinds: str) -> Optional[Tuple[str, ...]]:
    """The kind names of a ``kinds`` value; None for ``all``."""
    return None if kinds.strip() == ALL_KINDS else tuple(n.strip() for n in kinds.split(","))


def _at_least_one(v: float) -> Optional[str]:
    return None if v >= 1 and float(v).is_integer() else "must be a whole number >= 1"


#: key -> (type, check) of every recipe key; the keys a header or dataset.json may set
_KEYS = {
    "probability": (float, _fraction),
    "probability_start": (float, _fraction),
    "group_probability": (float, _fraction),
    "label_aware_probability": (float, _fraction),
    "max_kinds": (int, _at_least_one),
    "weight_exponent": (float, _non_negative),
    "image_intervention": (str, lambda v: None if v in IMAGE_INTERVENTIONS
                           else f"must be one of {', '.join(IMAGE_INTERVENTIONS)}"),
    "intervention_probability": (float, _fraction),
    "consistency_weight": (float, _non_negative),
    "kinds": (str, _kind_list),
}
RECIPE_KEYS: Tuple[str, ...] = tuple(_KEYS)


@dataclass(frozen=True)
class CounterfactualRecipe:
    """One recipe (defaults: the generic recipe). ``where[key]`` names the file and line (or dataset.json)
    that set each key; keys absent from it have their default value."""
    probability: float = 0.7
    probability_start: Optional[float] = None           # None: as probability (no curriculum)
    group_probability: float = 0.5
    label_aware_probability: Optional[float] = None     # None: as group_probability
    max_kinds: int = 4
    weight_exponent: float = 1.0
    image_intervention: str = "gin_ipa"
    intervention_probability: float = 0.5
    consistency_weight: float = 0.0
    kinds: str = ALL_KINDS
    where: Mapping[str, str] = field(default_factory=dict, compare=False)

    def values(self) -> Dict[str, object]:
        """The knob values (without ``where``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "where"}

    def describe(self) -> str:
        """One line: ``key=value`` for every knob, the ones set by a header or dataset.json marked ``*``."""
        unset = {"label_aware_probability": "like other kinds", "probability_start": "as probability"}
        return ", ".join(f"{k}={unset.get(k) if v is None else v}{'*' if k in self.where else ''}"
                         for k, v in self.values().items())


def share_of_views(probability: float, probability_start: Optional[float], epoch: int, num_epochs: int) -> float:
    """The share of counterfactual views at ``epoch`` (0-based) of ``num_epochs``: ``probability_start`` at the
    first epoch, moving linearly to ``probability`` at the last; ``probability`` throughout when no start is set."""
    if probability_start is None or num_epochs <= 1:
        return probability
    t = min(max(epoch, 0), num_epochs - 1) / (num_epochs - 1)
    return probability_start + t * (probability - probability_start)


def parse_value(key: str, raw: object, where: str) -> object:
    """``raw`` (header text or a JSON value) as the typed, checked value of ``key``; errors name ``where``."""
    if key not in _KEYS:
        raise DatasetError(f"{where}: unknown recipe key '{key}' (known: {', '.join(RECIPE_KEYS)})")
    kind, check = _KEYS[key]
    raw = raw.strip() if isinstance(raw, str) else raw
    value: object
    if kind is str:
        value = str(raw).strip()
    else:
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = float(str(raw).strip())
        except ValueError:
            raise DatasetError(f"{where}: recipe key '{key}' needs a number, got '{raw}'") from None
        if not math.isfinite(value):
            raise DatasetError(f"{where}: recipe key '{key}' = {raw} {check(value) or 'must be finite'}")
    problem = check(value)
    if problem:
        raise DatasetError(f"{where}: recipe key '{key}' = {raw} {problem}")
    return int(value) if kind is int else value


def parse_header_line(body: str, where: str) -> Tuple[str, object]:
    """``@recipe key = value`` (comment already stripped) -> ``(key, value)``."""
    word, rest = (body.split(None, 1) + [""])[:2]
    key, eq, raw = rest.partition("=")
    if word != "@recipe" or not eq or not key.strip() or not raw.strip():
        raise DatasetError(f"{where}: cannot read '{body}' (expected '@recipe key = value')")
    key = key.strip()
    return key, parse_value(key, raw, where)


def build_recipe(values: Mapping[str, object], where: Mapping[str, str]) -> CounterfactualRecipe:
    return CounterfactualRecipe(**dict(values), where=dict(where))


def with_overrides(recipe: CounterfactualRecipe, overrides: object, where: str) -> CounterfactualRecipe:
    """``recipe`` with the keys of a dataset's ``"counterfactual_recipe"`` object set (``where`` names it)."""
    if not isinstance(overrides, Mapping):
        raise DatasetError(f"{where} must be an object of recipe keys ({', '.join(RECIPE_KEYS)}), got "
                           f"{type(overrides).__name__}")
    values = {str(k): parse_value(str(k), v, f"{where}") for k, v in overrides.items()}
    return replace(recipe, **values, where={**recipe.where, **{k: where for k in values}})
