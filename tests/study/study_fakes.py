"""Stand-ins shared by the study tests: a fake preprocessed dataset (fixture in conftest.py), a study config
and a replacement for the stock commands that writes what they would write."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from nnunet_causal.study.config import SEED_VARIABLE, parse_study
from tests.conftest import make_tiny_2d_dataset, read_json

DATASET = "Dataset001_Tiny2D"


def make_fake_dataset(nnunet_env):
    """Tiny raw 2D dataset plus a stand-in for nnU-Net's preprocessed folder (plans, data folder, dataset.json)."""
    raw = make_tiny_2d_dataset(Path(nnunet_env["nnUNet_raw"]))
    pre = Path(nnunet_env["nnUNet_preprocessed"]) / DATASET
    (pre / "nnUNetPlans_2d").mkdir(parents=True)
    for i in range(8):
        (pre / "nnUNetPlans_2d" / f"tiny_{i:03d}.pkl").write_bytes(b"")
    shutil.copy(raw / "dataset.json", pre / "dataset.json")
    (pre / "nnUNetPlans.json").write_text(json.dumps({"configurations": {
        "2d": {"data_identifier": "nnUNetPlans_2d"}, "2d_big": {"inherits_from": "2d"}}}))
    return raw, pre


def study_config(tmp_path, **kw):
    data = {"dataset": 1, "trainers": ["nnUNetTrainer"], "output": str(tmp_path / "study"), "device": "cpu",
            "num_processes": 1, **kw}
    return parse_study(data, "s.yaml")


class FakeCommands:
    """Stand-in for :func:`nnunet_causal.study.runs.run_command`: nnUNetv2_train writes a checkpoint and
    'validation' predictions (the reference with a seed-dependent pixel error), nnUNetv2_predict predictions."""

    def __init__(self, raw: Path):
        self.raw = raw
        self.calls = []
        self.prompt_files = []

    def __call__(self, cmd, env, log_path):
        cmd = list(cmd)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.calls.append(cmd)
        if Path(cmd[0]).name == "nnUNetv2_predict":
            self.prompt_files.append(env.get("nnUNet_causal_prompt_file"))
            cases = [p.name[:-len("_0000.png")] for p in Path(cmd[cmd.index("-i") + 1]).iterdir()]
            self._validation(Path(cmd[cmd.index("-o") + 1]), cases, 0)
            return
        assert Path(cmd[0]).name == "nnUNetv2_train"
        fold, trainer = int(cmd[3]), cmd[cmd.index("-tr") + 1]
        fold_dir = Path(env["nnUNet_results"]) / cmd[1] / f"{trainer}__nnUNetPlans__{cmd[2]}" / f"fold_{fold}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        if "--val" not in cmd:
            (fold_dir / "checkpoint_final.pth").write_bytes(b"final")
            (fold_dir / "checkpoint_latest.pth").unlink(missing_ok=True)
        splits = read_json(Path(env["nnUNet_preprocessed"]) / cmd[1] / "splits_final.json")
        self._validation(fold_dir / "validation", splits[fold]["val"], int(env[SEED_VARIABLE]))

    def _validation(self, folder: Path, cases, seed: int):
        from PIL import Image
        folder.mkdir(parents=True, exist_ok=True)
        for case in cases:
            seg = np.asarray(Image.open(self.raw / "labelsTr" / f"{case}.png")).copy()
            seg[: seed + 1, :4] = 1  # a few wrong pixels, more for larger seeds
            Image.fromarray(seg).save(folder / f"{case}.png")
