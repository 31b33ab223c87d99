"""Where the trained FiLM generator lives in a model folder, and how it is read back.

``fold_X/tci_weights.pth``: ``{"state_dict", "generator": FiLMGenerator.config(), "settings"}``;
``fold_X/tci_settings.json``: the same settings in readable form (steps, radii, losses, the checkpoint the
generator was trained against). Both are written atomically; the network checkpoint is never touched, so the
model's own predictions stay exactly what they were.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Tuple, Union

import torch

from nnunet_causal.files import atomic_path, load_torch_file, write_json_atomic
from nnunet_causal.errors import ModelError
from nnunet_causal.intervention.modulation.film import FiLMGenerator

WEIGHTS_NAME = "tci_weights.pth"
SETTINGS_NAME = "tci_settings.json"


def fold_folder(model_folder: Union[str, os.PathLike], fold) -> Path:
    return Path(model_folder) / f"fold_{fold}"


def save_tci(model_folder, fold, generator: FiLMGenerator, settings: dict) -> Path:
    """Write the generator and its settings into ``fold_X`` (atomically); returns the weights path."""
    folder = fold_folder(model_folder, fold)
    path = folder / WEIGHTS_NAME
    with atomic_path(path, suffix=".pth") as tmp:
        torch.save({"state_dict": {k: v.detach().cpu() for k, v in generator.state_dict().items()},
                    "generator": generator.config(), "settings": settings}, tmp)
    write_json_atomic(folder / SETTINGS_NAME, {**settings, "generator": generator.config()})
    return path


def load_tci(model_folder, fold, device: torch.device, path=None) -> Tuple[FiLMGenerator, dict]:
    """The trained generator of ``fold`` (eval mode; from ``path`` if given) and its settings; a
    :class:`ModelError` that says how to train it when the fold has none."""
    path = Path(path) if path is not None else fold_folder(model_folder, fold) / WEIGHTS_NAME
    if not path.is_file():
        raise ModelError(f"{path} does not exist: this model has no test-time intervention weights for fold "
                         f"{fold}; run nnunet_causal train-tci -m {model_folder} -f {fold}")
    try:
        saved = load_torch_file(path, "cpu")
        generator = FiLMGenerator(**saved["generator"])
        generator.load_state_dict(saved["state_dict"])
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported with its name and the fix
        raise ModelError(f"{path}: cannot read the intervention weights ({type(e).__name__}: {e}); run "
                         f"nnunet_causal train-tci -m {model_folder} -f {fold} again") from e
    return generator.to(device).eval(), dict(saved.get("settings", {}))


def read_tci_settings(model_folder, fold) -> dict:
    path = fold_folder(model_folder, fold) / SETTINGS_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
