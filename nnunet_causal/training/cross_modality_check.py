"""At training start: a dataset declared for cross-modality training must not be planned with the CT window.

A dataset declared cross-modality (:mod:`nnunet_causal.data.cross_modality`) is meant to be z-scored per
image; plans that still normalise a channel with ``CTNormalization`` would clip the other modality into the
CT training set's HU window, and the training would run for nothing. Two ways to get there, both caught:

* the declaration was written by hand and left a ``"CT"`` channel: the dataset.json nnU-Net copied into
  ``$nnUNet_preprocessed/DatasetXXX_Name`` (the one the trainer holds) declares, the plans say CT;
* the raw dataset was declared after planning and not planned again: the raw
  ``$nnUNet_raw/DatasetXXX_Name/dataset.json`` declares, the preprocessed plans still say CT.

:func:`check_plans_at_training_start` raises :class:`~nnunet_causal.errors.DatasetError` naming the plans file,
the configuration and the dataset.json, and what to run. The text trainers (and every trainer built on them,
the causal ones included) and the stock-network counterfactual and GIN mixins call it in ``initialize``,
before the network is built.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Tuple

from nnunet_causal.data.cross_modality import check_cross_modality_plans


def raw_dataset_json(dataset_name: str) -> Tuple[Optional[Path], Optional[dict]]:
    """``($nnUNet_raw/<dataset_name>/dataset.json, its content)``; ``(path or None, None)`` when the variable is
    unset or the file is missing or unreadable (training reads only preprocessed data: a raw folder that is
    gone is not its business)."""
    raw = os.environ.get("nnUNet_raw")
    path = Path(raw) / dataset_name / "dataset.json" if raw else None
    if path is None or not path.is_file():
        return path, None
    try:
        dj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return path, None
    return path, (dj if isinstance(dj, dict) else None)


def check_plans_at_training_start(trainer) -> None:
    """Raise when the trainer's dataset.json, or the raw one of its dataset, declares cross-modality training
    and its plans configuration normalises a channel with ``CTNormalization``. Reads the nnU-Net trainer's
    public ``plans_manager``, ``configuration_manager``, ``configuration_name``, ``dataset_json`` and
    ``preprocessed_dataset_folder_base``."""
    folder = trainer.preprocessed_dataset_folder_base
    plans_name = trainer.plans_manager.plans_name
    plans_file = os.path.join(folder, plans_name + ".json") if folder else f"plans {plans_name}"
    where = f"{plans_file} (configuration {trainer.configuration_name})"
    schemes = trainer.configuration_manager.normalization_schemes
    held = os.path.join(folder, "dataset.json") if folder else "the trainer's dataset.json"
    check_cross_modality_plans(schemes, trainer.dataset_json, f"{where} with {held}")
    raw_file, raw = raw_dataset_json(trainer.plans_manager.dataset_name)
    if raw is not None:
        check_cross_modality_plans(schemes, raw, f"{where} with {raw_file} (declared after planning?)")
