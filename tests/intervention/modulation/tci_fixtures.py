"""A tiny text-model folder with nnU-Net-preprocessed training data, for the intervention tests."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import make_tiny_2d_dataset
from tests.inference.tiny_model import managers, make_model_folder


def preprocess_tiny_dataset(raw_folder: Path, preprocessed_root: Path) -> Path:
    """nnU-Net's DefaultPreprocessor, in this process (no worker pool), on every training case."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    pm, cm = managers()
    dataset_json = json.loads((raw_folder / "dataset.json").read_text())
    out = preprocessed_root / raw_folder.name / cm.data_identifier
    out.mkdir(parents=True)
    pre = DefaultPreprocessor(verbose=False)
    for img in sorted((raw_folder / "imagesTr").glob("*_0000.png")):
        case = img.name[:-len("_0000.png")]
        pre.run_case_save(str(out / case), [str(img)], str(raw_folder / "labelsTr" / f"{case}.png"), pm, cm,
                          dataset_json)
    return out


def tiny_tci_setup(tmp_path: Path, trainer: str = "nnUNetTrainerText"):
    """(model folder, preprocessed data folder, raw dataset folder)."""
    raw = make_tiny_2d_dataset(tmp_path / "raw", n_train=6, n_test=2)
    data = preprocess_tiny_dataset(raw, tmp_path / "preprocessed")
    model = make_model_folder(tmp_path, trainer)
    return model, data, raw


def case_files(raw: Path, i: int = 6):
    """The channel files of test case ``i`` of the tiny raw dataset."""
    return [str(raw / "imagesTs" / f"tiny_{i:03d}_0000.png")]
