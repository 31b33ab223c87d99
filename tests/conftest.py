"""Shared fixtures: an isolated nnU-Net environment and tiny datasets written in nnU-Net raw format."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

TINY_TRAINER_MODULE = '''
import torch
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText


class nnUNetTrainerText_Tiny(nnUNetTrainerText):
    """Test schedule: 2 epochs of 4 iterations."""
    text_embed_dim = 8

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 4
        self.num_val_iterations_per_epoch = 1


from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
from nnunet_causal.training.causal.variants import nnUNetTrainerCausalText_FrozenEncoder
from nnunet_causal.training.gin.nnUNetTrainerGIN import nnUNetTrainerGINIPA


class _TinySchedule:
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 4
        self.num_val_iterations_per_epoch = 1


class nnUNetTrainerCausalText_Tiny(_TinySchedule, nnUNetTrainerCausalText):
    text_embed_dim = 8
    warmup_fraction = 0.5  # epoch 0 warm-up, epoch 1 intervention on


class nnUNetTrainerCausalText_Paired_Tiny(_TinySchedule, nnUNetTrainerCausalText):
    text_embed_dim = 8
    counterfactual_probability = 1.0
    counterfactual_consistency_weight = 1.0
    image_intervention = "none"  # the halves differ only by the counterfactual: consistency > 0 shows it acted


class nnUNetTrainerCausalText_FrozenEncoder_Tiny(_TinySchedule, nnUNetTrainerCausalText_FrozenEncoder):
    text_embed_dim = 8


class nnUNetTrainerGINIPA_Tiny(_TinySchedule, nnUNetTrainerGINIPA):
    pass


from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import nnUNetTrainerCounterfactual


class nnUNetTrainerCounterfactual_Tiny(_TinySchedule, nnUNetTrainerCounterfactual):
    counterfactual_probability = 1.0
'''


def in_ci() -> bool:
    """True under CI (``CI=true``, which .ci/run sets and every CI service sets)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _skip_is_allowed(reason: str) -> bool:
    """The one skip CI accepts: a test that needs a CUDA GPU (CI machines have none)."""
    return "CUDA" in reason


def _fail_skips_in_ci(report) -> None:
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not _skip_is_allowed(reason):
            report.outcome = "failed"
            report.longrepr = (f"skipped under CI=true, where every test must run (only CUDA tests may skip): "
                               f"{reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI a skipped test is a failure (a browser that cannot start, a missing tool or data set), so CI
    cannot stay green while a test silently did not run."""
    outcome = yield
    _fail_skips_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import (``pytest.importorskip``)."""
    outcome = yield
    _fail_skips_in_ci(outcome.get_result())


@pytest.fixture
def nnunet_env(tmp_path, monkeypatch):
    """nnUNet_raw / _preprocessed / _results under tmp_path, trainers findable, CPU-friendly settings.

    Returns the environment dict for subprocesses (also applied to os.environ via monkeypatch)."""
    from nnunet_causal.env_cli import ext_trainer_folder

    extra = tmp_path / "extra_trainers"
    extra.mkdir()
    (extra / "tiny_text_trainers.py").write_text(TINY_TRAINER_MODULE)
    env = {
        "nnUNet_raw": str(tmp_path / "raw"),
        "nnUNet_preprocessed": str(tmp_path / "preprocessed"),
        "nnUNet_results": str(tmp_path / "results"),
        "nnUNet_extTrainer": os.pathsep.join([str(ext_trainer_folder()), str(extra)]),
        "nnUNet_compile": "false",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "2",
        "nnUNet_def_n_proc": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
        if k.startswith("nnUNet_") and k != "nnUNet_compile" and k != "nnUNet_extTrainer":
            Path(v).mkdir(parents=True, exist_ok=True)
    full = dict(os.environ)
    full["PATH"] = str(Path(sys.executable).parent) + os.pathsep + full.get("PATH", "")
    return full


def _disk(shape, centre, radius):
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius ** 2


def make_tiny_2d_dataset(raw_root: Path, dataset_id: int = 1, n_train: int = 8, n_test: int = 2, size: int = 32,
                         seed: int = 0, prompts: dict | None = None) -> Path:
    """RGB PNG frames with a reddish disk ("lesion", label 1) and a bluish square ("marker", label 2)."""
    from PIL import Image

    from nnunet_causal.data.raw_dataset import write_dataset_json

    rng = np.random.default_rng(seed)
    folder = raw_root / f"Dataset{dataset_id:03d}_Tiny2D"
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    domains = {}
    for i in range(n_train + n_test):
        img = rng.normal(120, 10, (size, size, 3))
        seg = np.zeros((size, size), np.uint8)
        c = rng.integers(8, size - 8, 2)
        disk = _disk((size, size), c, rng.integers(4, 7))
        img[disk] = (200, 80, 80)
        x, y = rng.integers(2, size - 8, 2)
        square = np.zeros_like(disk)
        square[x:x + 6, y:y + 6] = True
        square &= ~disk
        img[square] = (60, 80, 200)
        seg[disk], seg[square] = 1, 2
        split = "Tr" if i < n_train else "Ts"
        case = f"tiny_{i:03d}"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"images{split}" / f"{case}_0000.png")
        Image.fromarray(seg).save(folder / f"labels{split}" / f"{case}.png")
        domains[case] = {"domain": f"site{i % 2}", "modality": "endoscopy", "style": f"site {i % 2} white light"}
    write_dataset_json(folder, {"0": "R", "1": "G", "2": "B"}, {"background": 0, "lesion": 1, "marker": 2},
                       n_train, ".png", prompts=prompts or {"lesion": ["lesion", "red spot"],
                                                            "marker": ["marker", "blue square"]},
                       domains=domains, imaging_family="endoscopy")
    return folder


def make_tiny_3d_dataset(raw_root: Path, dataset_id: int = 2, n_train: int = 5, n_test: int = 1,
                         shape=(20, 20, 16), seed: int = 0) -> Path:
    """CT-like NIfTI volumes with a bright sphere ("liver", 1) and a dark one ("spleen", 2)."""
    import SimpleITK as sitk

    from nnunet_causal.data.raw_dataset import write_dataset_json

    rng = np.random.default_rng(seed)
    folder = raw_root / f"Dataset{dataset_id:03d}_Tiny3D"
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    domains = {}
    for i in range(n_train + n_test):
        vol = rng.normal(0, 20, shape).astype(np.float32)
        seg = np.zeros(shape, np.uint8)
        a = _disk(shape, (6, 6, 8), 4)
        b = _disk(shape, (14, 14, 8), 3)
        vol[a] += 100
        vol[b] -= 100
        seg[a], seg[b] = 1, 2
        split = "Tr" if i < n_train else "Ts"
        case = f"vol_{i:03d}"
        for arr, name in ((vol, f"images{split}/{case}_0000.nii.gz"), (seg, f"labels{split}/{case}.nii.gz")):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing((1.0, 1.0, 2.0))
            sitk.WriteImage(im, str(folder / name))
        domains[case] = {"domain": "scanner0", "modality": "CT", "style": "CT scanner 0"}
    write_dataset_json(folder, {"0": "CT"}, {"background": 0, "liver": 1, "spleen": 2}, n_train, ".nii.gz",
                       prompts={"liver": ["liver"], "spleen": ["spleen"]}, domains=domains, imaging_family="ct")
    return folder


def read_json(path):
    return json.loads(Path(path).read_text())
