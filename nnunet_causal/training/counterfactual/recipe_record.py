"""``fold_X/counterfactual_recipe.json``: the counterfactual recipe a training started with, so that a training
continued with ``--c`` keeps it even when the dictionary's header or dataset.json changed in between.

File format (JSON object, written atomically when a training starts from epoch 0)::

    {
      "schema": 1,
      "trainer": "nnUNetTrainerCausalText",
      "knobs": {"probability": 0.5, "group_probability": 0.5, ...},   # the values the trainer used
      "set_by": {"probability": "<dictionary file>, line 3", ...}       # where each non-default value came from
    }

``knobs`` holds every key of :data:`nnunet_causal.confounders.recipe.RECIPE_KEYS` the trainer has as an
attribute, after the class's pins (a pinned ablation stores its pinned value). A continued training reads the
file back and, where the values it would resolve now differ, logs both and keeps the stored ones. A file that
cannot be read is an error naming it (never a silent re-resolution).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Mapping, Optional

from nnunet_causal.confounders.recipe import RECIPE_KEYS, parse_value
from nnunet_causal.errors import DatasetError
from nnunet_causal.files import write_json_atomic

RECIPE_RECORD = "counterfactual_recipe.json"
SCHEMA = 1


def write_recipe_record(folder: Path, trainer: str, knobs: Mapping[str, object], set_by: Mapping[str, str]) -> Path:
    path = Path(folder) / RECIPE_RECORD
    write_json_atomic(path, {"schema": SCHEMA, "trainer": trainer, "knobs": dict(knobs), "set_by": dict(set_by)})
    return path


def read_recipe_record(folder: Path) -> Optional[Dict[str, object]]:
    """The stored knob values (checked like a header's), or None when the folder has no record."""
    path = Path(folder) / RECIPE_RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot read the recipe this training started with ({e}); delete it to "
                           f"train with the recipe the dictionary gives now") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("knobs"), dict):
        raise DatasetError(f"{path}: not a schema-{SCHEMA} recipe record (expected an object with 'schema' and "
                           f"'knobs')")
    knobs: Dict[str, object] = {}
    for key, value in data["knobs"].items():
        if key not in RECIPE_KEYS:
            raise DatasetError(f"{path}: unknown recipe key '{key}' (known: {', '.join(RECIPE_KEYS)})")
        # None means "like the other kinds" for label_aware_probability: kept as is
        knobs[key] = None if value is None else parse_value(key, value, str(path))
    return knobs
