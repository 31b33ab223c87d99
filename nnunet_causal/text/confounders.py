"""Confounder dictionaries: text descriptions of imaging style, one family per modality (MCDRL, seed 001).

The shipped files (``resources/confounders/{endoscopy,ct,mri}.txt``) are plain text, one description per
line, ``#`` comments; edit them or point dataset.json ``"confounder_dictionary"`` at your own file.
The family is dataset.json ``"imaging_family"`` or, failing that, guessed from ``channel_names``.
"""
from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import List

from nnunet_causal.errors import DatasetError

FAMILIES = ("endoscopy", "ct", "mri")
_MRI = re.compile(r"\b(t1|t1w|t1ce|t1c|t1gd|t2|t2w|flair|adc|dwi|mr|mri|pd|swi|spir|dual|in.?phase|opp)\b", re.I)


def dictionary_path(family: str) -> Path:
    if family not in FAMILIES:
        raise DatasetError(f"unknown imaging family '{family}': use one of {', '.join(FAMILIES)} or a file path")
    return Path(str(resources.files("nnunet_causal") / "resources" / "confounders" / f"{family}.txt"))


def load_confounder_dictionary(family_or_path: str) -> List[str]:
    """Descriptions of a family (``endoscopy``/``ct``/``mri``) or of a user's file.

    Raises :class:`DatasetError` for a missing file, an empty one, or duplicate lines (naming them)."""
    path = Path(family_or_path) if (os.sep in family_or_path or family_or_path.endswith(".txt")) \
        else dictionary_path(family_or_path)
    if not path.is_file():
        raise DatasetError(f"confounder dictionary {path} does not exist")
    lines, seen = [], {}
    for no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        key = " ".join(text.lower().split())
        if key in seen:
            raise DatasetError(f"{path}: line {no} repeats line {seen[key]} ('{text}')")
        seen[key] = no
        lines.append(text)
    if not lines:
        raise DatasetError(f"{path}: no confounder descriptions (every line is empty or a comment)")
    return lines


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


def confounders_for_dataset(dataset_json: dict) -> List[str]:
    """The dictionary a dataset uses: its own file (``"confounder_dictionary"``) or its family's."""
    own = dataset_json.get("confounder_dictionary")
    return load_confounder_dictionary(own if own else confounder_family_for_dataset(dataset_json))
