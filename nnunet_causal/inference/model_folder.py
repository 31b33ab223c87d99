"""A trained model folder, read in one place: :class:`ModelFolder`, and its checks before anything is loaded.

A model folder is nnU-Net's ``$nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIG``: ``dataset.json``,
``plans.json`` (with the ``"nnunet_causal"`` text settings of :mod:`nnunet_causal.networks.text_plans`) and
``fold_X/checkpoint_*.pth`` (+ ``presence_calibration.json``, ``tci_weights.pth``). Every reader --
``nnUNetv2_predict_text``, ``nnunet_causal intervene``, the intervention session, the viewer and the audit --
goes through :class:`ModelFolder`: folds parsed once, the confounder dictionary and the case style read once,
errors that name the file.

nnU-Net's predictor opens ``fold_X/CHECKPOINT`` with ``torch.load`` and fails with a bare traceback
when a fold was not trained or a file is damaged; :func:`check_model_folder` says which file is wrong and
what is there instead.
"""
from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path
from functools import cached_property
from typing import List, Optional, Sequence, Union

from nnunet_causal.errors import DatasetError, ModelError

logger = logging.getLogger(__name__)

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


def parse_fold(fold) -> Union[int, str]:
    """``"0"`` -> 0, ``"all"`` -> ``"all"``; a clear error for anything else."""
    fold = str(fold)
    if fold != "all" and not fold.isdigit():
        raise ModelError(f"fold must be a number or 'all', got '{fold}'")
    return fold if fold == "all" else int(fold)


def unwrap_network(network):
    """The module itself of a ``torch.compile``-wrapped network (nnU-Net compiles when ``nnUNet_compile``)."""
    return getattr(network, "_orig_mod", network)


class ModelFolder:
    """One trained model folder (see the module docstring). ``check(folds, checkpoint)`` validates the files a
    prediction will open; the properties read ``dataset.json`` / ``plans.json`` once."""

    def __init__(self, folder: Union[str, os.PathLike]):
        self.path = Path(folder)
        if not self.path.is_dir():
            raise ModelError(f"model folder {self.path} does not exist: train first, or check -d/-tr/-p/-c (or -m)")

    def __repr__(self) -> str:
        return f"ModelFolder({str(self.path)!r})"

    def _json(self, name: str) -> dict:
        f = self.path / name
        if not f.is_file():
            raise ModelError(f"{f} does not exist: {self.path} is not a complete nnU-Net model folder")
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"{f}: cannot read it as JSON ({e})") from e

    def check(self, folds: Sequence[Union[int, str]], checkpoint: str = "checkpoint_final.pth") -> None:
        """:func:`check_model_folder` on this folder."""
        check_model_folder(self.path, folds, checkpoint)

    @cached_property
    def dataset_json(self) -> dict:
        return self._json("dataset.json")

    @cached_property
    def plans(self) -> dict:
        return self._json("plans.json")

    @property
    def file_ending(self) -> str:
        return self.dataset_json["file_ending"]

    @property
    def text_settings(self) -> Optional[dict]:
        """The plans' ``"nnunet_causal"`` entry (None for a model of another trainer)."""
        from nnunet_causal.networks.text_plans import PLANS_KEY

        return self.plans.get(PLANS_KEY) or None

    def require_text_settings(self) -> dict:
        from nnunet_causal.networks.text_plans import PLANS_KEY

        if not self.text_settings:
            raise ModelError(f"{self.path / 'plans.json'} has no '{PLANS_KEY}' entry: this is not a text model "
                             f"(train it with -tr nnUNetTrainerText or a variant)")
        return self.text_settings

    @property
    def structures(self) -> List[str]:
        """Trained structures in output-channel order."""
        from nnunet_causal.networks.text_plans import foreground_label_names

        return foreground_label_names(self.dataset_json)

    def folds(self, checkpoint: str = "checkpoint_final.pth") -> List[str]:
        """Folds whose folder holds ``checkpoint`` (``"0"``, ..., ``"all"``)."""
        return available_folds(self.path, checkpoint)

    def fold_folder(self, fold) -> Path:
        return self.path / f"fold_{parse_fold(fold)}"

    def vocabulary(self):
        """The model's vocabulary (trained prompts, else dataset.json labels)."""
        from nnunet_causal.text.vocabulary import vocabulary_from_labels

        prompts = (self.text_settings or {}).get("prompts") or self.dataset_json.get("prompts")
        return vocabulary_from_labels(self.dataset_json["labels"], prompts)

    @property
    def has_bottleneck_dictionary(self) -> bool:
        return bool(self.text_settings and "causal" in self.text_settings)

    def confounder_entries(self):
        """The dataset's confounder dictionary (its own file, or its imaging family's), parsed. A dictionary
        that cannot be read raises :class:`DatasetError` naming the file; never another dictionary instead."""
        from nnunet_causal.confounders.dictionary import confounder_entries_for_dataset

        return confounder_entries_for_dataset(self.dataset_json)

    def confounders(self) -> Optional[List[str]]:
        """The confounder descriptions a command may name: the bottleneck's dictionary (causal models), else
        the dataset's. ``None`` only when dataset.json names neither a dictionary nor an imaging family that
        can be told (the command parser then knows no confounder of this model); a named dictionary that is
        missing or broken raises :class:`DatasetError` naming the file."""
        from nnunet_causal.confounders.dictionary import confounder_family_for_dataset

        if self.has_bottleneck_dictionary:
            return list(self.text_settings["causal"]["confounders"])
        if not self.dataset_json.get("confounder_dictionary") and not self.dataset_json.get("imaging_family"):
            try:
                confounder_family_for_dataset(self.dataset_json)
            except DatasetError as e:
                logger.warning("%s: %s", self.path / "dataset.json", e)
                return None
        try:
            return [e.description for e in self.confounder_entries()]
        except DatasetError as e:
            raise DatasetError(f"model folder {self.path}: its confounder dictionary cannot be used: {e}") from e

    def case_name(self, file_name: str) -> str:
        """The case of a channel file ``CASE_0000<file ending>``."""
        from nnunet_causal.inference.case_outputs import case_name

        return case_name(file_name, self.dataset_json.get("file_ending", ""))

    def style(self, case: str) -> Optional[str]:
        """The case's style description from dataset.json ``"domains"`` (None when it has none)."""
        return ((self.dataset_json.get("domains") or {}).get(case) or {}).get("style")

    def checkpoint_configuration(self, fold, checkpoint: str = "checkpoint_final.pth") -> str:
        """The configuration a fold was trained with (the checkpoint's ``init_args``)."""
        from nnunet_causal.files import load_torch_file

        path = self.fold_folder(fold) / checkpoint
        ckpt = load_torch_file(path, "cpu", mmap=zipfile.is_zipfile(path), trusted_fallback=True)
        try:
            return ckpt["init_args"]["configuration"]
        except (KeyError, TypeError) as e:
            raise ModelError(f"{path}: the checkpoint names no configuration (init_args)") from e
