"""Resume keeps the model's settings: the text settings a model was trained with, read from its folder.

``nnUNetv2_train`` loads the plans from ``nnUNet_preprocessed`` on ``--c`` and for every new fold, and the
trainer writes them into the model folder again. Re-deriving the text settings there (encoder from the
environment, prompts from a dataset.json that may have changed, causal settings from class defaults) would
silently train the rest of a model with other settings than its first part. So when the model folder
already has a ``plans.json`` with an ``"nnunet_causal"`` entry, that entry is used as it is; an environment
variable that asks for another text encoder, or a dataset whose structures differ, is an error.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Optional

from nnunet_causal.errors import DatasetError
from nnunet_causal.networks.text_plans import PLANS_KEY, foreground_label_names


def model_folder(results_root: Optional[str], plans: dict, configuration: str, trainer_name: str) -> Optional[Path]:
    """nnU-Net's model folder of this trainer, plans and configuration (None without ``nnUNet_results``)."""
    if not results_root:
        return None
    return Path(results_root) / plans["dataset_name"] / f"{trainer_name}__{plans['plans_name']}__{configuration}"


def saved_text_settings(folder: Optional[Path], dataset_json: dict) -> Optional[dict]:
    """The ``"nnunet_causal"`` settings of an existing model folder, checked against the environment and the
    dataset; None if the folder has none yet (a new model)."""
    from nnunet_causal.text.encoders import ENCODER_VARIABLE

    if folder is None or not (folder / "plans.json").is_file():
        return None
    path = folder / "plans.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8")).get(PLANS_KEY)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: cannot read the model's plans ({e}); restore it or train into a new folder") \
            from e
    if not saved:
        return None
    env = os.environ.get(ENCODER_VARIABLE, "").strip()
    if env and env != saved.get("text_encoder"):
        raise DatasetError(f"{ENCODER_VARIABLE}={env} conflicts with the text encoder this model was trained with "
                           f"('{saved.get('text_encoder')}', {path}): unset the variable to continue this model, "
                           f"or train a new one under another trainer or plans name")
    names = foreground_label_names(dataset_json)
    if list(saved.get("prompts", {})) != names:
        raise DatasetError(f"the dataset's structures {names} differ from those this model was trained on "
                           f"{list(saved.get('prompts', {}))} ({path}): continue with the original dataset.json "
                           f"or train a new model")
    return copy.deepcopy(saved)
