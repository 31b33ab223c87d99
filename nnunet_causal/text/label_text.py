"""Label names -> natural-language prompts (``kidney_left`` -> ``"left kidney"``)."""
from __future__ import annotations

import re
from typing import Dict, List

from nnunet_causal.data.raw_dataset import validate_prompts

_SIDES = {"left", "right"}
_VERTEBRA = re.compile(r"^vertebrae?_([CTLS])(\d+)$", re.IGNORECASE)
_RIB = re.compile(r"^rib_(left|right)_(\d+)$")
_REGION_NAMES = {"C": "cervical", "T": "thoracic", "L": "lumbar", "S": "sacral"}
_ORDINALS = ["zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
             "tenth", "eleventh", "twelfth"]


def label_to_text(name: str) -> str:
    """Readable text for a snake_case label name.

    ``kidney_left`` -> ``left kidney``; ``adrenal_gland_right`` -> ``right adrenal gland``;
    ``vertebrae_L5`` -> ``L5 vertebra``; ``rib_left_3`` -> ``left 3rd rib``; other underscores become spaces.
    """
    m = _VERTEBRA.match(name)
    if m:
        return f"{m.group(1).upper()}{m.group(2)} vertebra"
    m = _RIB.match(name)
    if m:
        n = int(m.group(2))
        suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"{m.group(1)} {n}{suffix} rib"
    words = [w for w in re.split(r"[_\s]+", name.strip()) if w]
    side = [w for w in words if w.lower() in _SIDES]
    rest = [w for w in words if w.lower() not in _SIDES]
    text = " ".join(side + rest)
    return text.lower() if text.isupper() is False else text


def label_synonyms(name: str) -> List[str]:
    """Extra phrasings derived from the name alone (e.g. ``fifth lumbar vertebra`` for ``vertebrae_L5``)."""
    m = _VERTEBRA.match(name)
    if m and int(m.group(2)) < len(_ORDINALS):
        return [f"{_ORDINALS[int(m.group(2))]} {_REGION_NAMES[m.group(1).upper()]} vertebra"]
    return []


def prompts_for_labels(dataset_json: dict, source: str = "dataset.json") -> Dict[str, List[str]]:
    """``{label name: [prompt, synonym, ...]}`` for every foreground label (background / ignore excluded).

    dataset.json ``"prompts"`` wins (validated: unknown labels and empty prompts are errors); labels it
    does not list get :func:`label_to_text` of their name.
    """
    labels = dataset_json["labels"]
    given = validate_prompts(dataset_json.get("prompts") or {}, labels, source)
    out = {}
    for name in labels:
        if name in ("background", "ignore"):
            continue
        out[name] = given.get(name) or [label_to_text(name), *label_synonyms(name)]
    return out
