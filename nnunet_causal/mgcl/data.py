"""Where MGCL's data lives: the dataset's raw and preprocessed folders, its training cases and their reports.

Image patches come from nnU-Net's own preprocessed data and ``nnUNetDataLoader`` (the model's planned patch
size and configuration; no augmentation, because the frozen encoder should see what it sees at test time;
foreground oversampling 0.5 so that most patches hold structures).
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from nnunet_causal.errors import DatasetError

logger = logging.getLogger(__name__)


@dataclass
class DatasetFolders:
    name: str
    preprocessed: Path
    raw: Optional[Path]
    dataset_json: dict


def _env_folder(variable: str, required: bool) -> Optional[Path]:
    value = os.environ.get(variable, "").strip()
    if not value:
        if required:
            raise DatasetError(f"the environment variable {variable} is not set (export {variable}=/path, or run "
                               f"eval \"$(nnunet_causal env)\")")
        return None
    return Path(value)


def _find(root: Optional[Path], dataset: str) -> Optional[Path]:
    if root is None or not root.is_dir():
        return None
    if re.fullmatch(r"\d+", dataset):
        hits = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(f"Dataset{int(dataset):03d}_"))
        return hits[0] if hits else None
    return root / dataset if (root / dataset).is_dir() else None


def locate_dataset(dataset: str) -> DatasetFolders:
    """``-d`` (an id such as ``991`` or a name ``Dataset991_SynthCT``) -> its folders and dataset.json."""
    pre_root = _env_folder("nnUNet_preprocessed", True)
    preprocessed = _find(pre_root, str(dataset))
    if preprocessed is None:
        raise DatasetError(f"dataset {dataset} is not in {pre_root}: run nnUNetv2_plan_and_preprocess -d {dataset} "
                           f"first")
    raw = _find(_env_folder("nnUNet_raw", False), preprocessed.name)
    dj_path = preprocessed / "dataset.json"
    try:
        dataset_json = json.loads(dj_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{dj_path}: cannot read it ({e})") from e
    return DatasetFolders(preprocessed.name, preprocessed, raw, dataset_json)


def training_cases(data_folder: Path) -> List[str]:
    """Identifiers of nnU-Net's preprocessed training cases (one ``.pkl`` each)."""
    return sorted(p.stem for p in data_folder.glob("*.pkl"))


def raw_cases(raw: Optional[Path], file_ending: str) -> Dict[str, str]:
    """``{case: "Tr" | "Ts"}`` of the raw dataset's image folders (empty without a raw folder)."""
    out: Dict[str, str] = {}
    if raw is None:
        return out
    for split in ("Ts", "Tr"):
        for f in (raw / f"images{split}").glob(f"*{file_ending}"):
            out[re.sub(r"_\d{4}$", "", f.name[: -len(file_ending)])] = split
    return out


def structures_of(dataset_json: dict, source: str) -> Dict[str, int]:
    """``{label name: value}`` of the foreground structures; region-based datasets are not supported."""
    labels = dataset_json.get("labels") or {}
    out = {}
    for name, value in labels.items():
        if name in ("background", "ignore"):
            continue
        if isinstance(value, (list, tuple)):
            if len(value) > 1:
                raise DatasetError(f"{source}: region-based labels ('{name}': {value}) are not supported by MGCL "
                                   f"pretraining (organ masks need one label value per structure)")
            value = value[0]
        out[name] = int(value)
    if not out:
        raise DatasetError(f"{source}: no foreground label")
    return out


def report_file(folders: DatasetFolders, given: Optional[str]) -> Optional[Path]:
    """``--reports FILE`` if given, else the raw dataset.json's ``"reports"`` entry (relative to the raw
    folder), else None (captions from the labels)."""
    if given:
        return Path(given)
    entry = folders.dataset_json.get("reports")
    if not entry and folders.raw is not None and (folders.raw / "dataset.json").is_file():
        entry = json.loads((folders.raw / "dataset.json").read_text(encoding="utf-8")).get("reports")
    if not entry:
        return None
    if folders.raw is None:
        raise DatasetError(f"dataset.json of {folders.name} names reports '{entry}' but nnUNet_raw is not set or "
                           f"has no {folders.name}: set it, or pass --reports FILE")
    return folders.raw / entry


def check_report_cases(reports: Dict[str, str], cases: List[str], raw: Dict[str, str], source: Path) -> Dict[str, str]:
    """Reports of preprocessed training cases; test cases are left out (logged); a training case of the raw
    folder that was not preprocessed (no mask) is an error."""
    kept, test = {}, 0
    have = set(cases)
    for case, text in reports.items():
        if case in have:
            kept[case] = text
        elif raw.get(case) == "Ts":
            test += 1
        else:
            raise DatasetError(f"{source}: case {case} has a report but no mask (it is not among the preprocessed "
                               f"training cases: is labelsTr/{case} missing, or was the dataset preprocessed before "
                               f"it was added?)")
    if test:
        logger.info("%s: %d report(s) of test cases (imagesTs) not used for training", source, test)
    if not kept:
        raise DatasetError(f"{source}: no report matches a preprocessed training case")
    return kept
