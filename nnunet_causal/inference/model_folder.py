"""Checks of a trained model folder before anything is loaded from it (``nnUNetv2_predict_text``).

nnU-Net's predictor opens ``fold_X/CHECKPOINT`` with ``torch.load`` and fails with a bare traceback
when a fold was not trained or a file is damaged; :func:`check_model_folder` says which file is wrong and
what is there instead.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import List, Sequence, Union

from nnunet_causal.errors import ModelError

#: keys nnU-Net's predictor reads from every checkpoint
CHECKPOINT_KEYS = ("network_weights", "trainer_name", "init_args")


def available_folds(model_folder: Union[str, os.PathLike], checkpoint_name: str) -> List[str]:
    """Folds of ``model_folder`` (``"0"``, ``"1"``, ..., ``"all"``) whose folder holds ``checkpoint_name``."""
    folds = [p.name[len("fold_"):] for p in Path(model_folder).glob("fold_*")
             if p.is_dir() and (p / checkpoint_name).is_file()]
    return sorted(folds, key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))


def check_checkpoint(path: Union[str, os.PathLike]) -> None:
    """Open ``path`` as nnU-Net would (memory-mapped, so cheap) and check the keys the predictor reads."""
    from nnunet_causal.files import load_torch_file

    path = str(path)
    try:
        checkpoint = load_torch_file(path, "cpu", mmap=zipfile.is_zipfile(path), trusted_fallback=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle is a damaged file, reported with its name
        raise ModelError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {e}); the file is corrupt or "
                         f"incomplete (copied while training was saving it?): copy it again or retrain this fold") from e
    if not isinstance(checkpoint, dict):
        raise ModelError(f"{path}: not an nnU-Net checkpoint (holds a {type(checkpoint).__name__}, not a dict)")
    missing = [k for k in CHECKPOINT_KEYS if k not in checkpoint]
    if missing:
        raise ModelError(f"{path}: not an nnU-Net checkpoint (no {', '.join(missing)}; it has "
                         f"{', '.join(map(str, checkpoint)) or 'no keys'})")


def check_model_folder(model_folder: Union[str, os.PathLike], folds: Sequence[Union[int, str]],
                       checkpoint_name: str) -> None:
    """Raise :class:`ModelError` unless ``model_folder`` holds a readable ``dataset.json``, ``plans.json`` and,
    for every fold of ``folds``, a readable ``fold_X/checkpoint_name``."""
    folder = Path(model_folder)
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist: train first, or check -d/-tr/-p/-c (or -m)")
    for name in ("dataset.json", "plans.json"):
        f = folder / name
        if not f.is_file():
            raise ModelError(f"{f} does not exist: {folder} is not a complete nnU-Net model folder")
        try:
            json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"{f}: cannot read it as JSON ({e})") from e
    if not folds:
        raise ModelError("no folds given (-f)")
    available = available_folds(folder, checkpoint_name)
    hint = f"available folds with {checkpoint_name}: {' '.join(available)} (pass -f {' '.join(available)})" \
        if available else f"no fold of {folder} has {checkpoint_name}"
    for fold in folds:
        fold_dir = folder / f"fold_{fold}"
        if not fold_dir.is_dir():
            raise ModelError(f"{folder}: fold {fold} was not trained (no {fold_dir.name}); {hint}")
        checkpoint = fold_dir / checkpoint_name
        if not checkpoint.is_file():
            present = sorted(p.name for p in fold_dir.glob("checkpoint_*.pth"))
            found = (f"it has {', '.join(present)} (choose one with -chk)" if present
                     else "it has no checkpoint: did training of this fold finish?")
            raise ModelError(f"{checkpoint} does not exist: {found}; {hint}")
        check_checkpoint(checkpoint)
