"""The causal trainer in 3D through the stock commands: killed with SIGKILL mid-training, resumed with ``--c``
to the end, then used by ``nnUNetv2_predict_text`` (tiny CT-like volumes)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_tiny_3d_dataset, read_json
from tests.integration.test_stock_cli_text import run

pytestmark = pytest.mark.slow

RESUMABLE_TRAINER_MODULE = '''
import torch
from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText


class nnUNetTrainerCausalText_TinyResumable(nnUNetTrainerCausalText):
    """2 epochs of 2 iterations, checkpoint_latest.pth after every epoch, intervention on from epoch 1; the
    final validation is left to nnUNetv2_predict_text below (saves minutes on a loaded CPU)."""
    text_embed_dim = 8
    warmup_fraction = 0.5

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1
        self.save_every = 1

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("final validation skipped (test trainer)")
'''
TRAINER = "nnUNetTrainerCausalText_TinyResumable"


def logged_epochs(log: str):
    return [int(e) for e in re.findall(r"^[\d\- :.]+: Epoch (\d+)\s*$", log, flags=re.M)]


def shrink_network(preprocessed: Path, configuration: str, features=(8, 16, 32)) -> None:
    """A narrower network than nnU-Net's minimum of 32 features (3D convolutions dominate a CPU test)."""
    path = preprocessed / "nnUNetPlans.json"
    plans = read_json(path)
    kwargs = plans["configurations"][configuration]["architecture"]["arch_kwargs"]
    kwargs["features_per_stage"] = list(features[:kwargs["n_stages"]])
    path.write_text(json.dumps(plans, indent=1))


def wait_for(predicate, proc, what: str, timeout: float = 240.0) -> None:
    t0 = time.time()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training ended (exit {proc.returncode}) before {what}:\n"
                                 f"{proc.stderr.read()[-3000:]}")
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_causal_3d_kill_resume_and_predict_text(nnunet_env, tmp_path):
    raw = make_tiny_3d_dataset(Path(nnunet_env["nnUNet_raw"]))
    extra = Path(nnunet_env["nnUNet_extTrainer"].split(os.pathsep)[-1])
    (extra / "tiny_resumable_trainers.py").write_text(RESUMABLE_TRAINER_MODULE)
    run(["nnUNetv2_plan_and_preprocess", "-d", "2", "-c", "3d_fullres", "-np", "1", "-npfp", "1"], nnunet_env)
    shrink_network(Path(nnunet_env["nnUNet_preprocessed"]) / "Dataset002_Tiny3D", "3d_fullres")
    env_tr = dict(nnunet_env, nnUNet_n_proc_DA="0")
    folder = Path(nnunet_env["nnUNet_results"]) / "Dataset002_Tiny3D" / f"{TRAINER}__nnUNetPlans__3d_fullres"
    fold = folder / "fold_0"
    cmd = ["nnUNetv2_train", "2", "3d_fullres", "0", "-tr", TRAINER, "-device", "cpu"]

    # first run: SIGKILL the whole process group once epoch 1 has started (epoch 0's checkpoint is complete)
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env_tr, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        def epoch_1_started():
            logs = list(fold.glob("training_log_*.txt")) if fold.is_dir() else []
            return bool(logs) and 1 in logged_epochs(logs[0].read_text())
        wait_for(epoch_1_started, proc, "epoch 1 started")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    print(f"{time.time() - t0:6.1f} s  killed training")
    assert proc.returncode == -signal.SIGKILL
    assert not (fold / "checkpoint_final.pth").exists()
    latest = torch.load(fold / "checkpoint_latest.pth", map_location="cpu", weights_only=False)
    resume_epoch = latest["current_epoch"]
    assert resume_epoch == 1  # nnU-Net writes no checkpoint_latest.pth in the last epoch
    first_log = next(fold.glob("training_log_*.txt"))

    # --c: continues from the checkpoint's epoch (not from 0) and finishes
    time.sleep(1.1)  # nnU-Net names each run's log by the second it started
    run(cmd + ["--c"], env_tr)
    logs = sorted(fold.glob("training_log_*.txt"))
    assert len(logs) == 2 and first_log in logs
    resumed = next(f for f in logs if f != first_log).read_text()
    assert logged_epochs(resumed) == [1]
    final = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert "causal intervention switched on" in resumed and "final validation skipped" in resumed
    assert final["current_epoch"] == 2 and final["trainer_name"] == TRAINER
    # the history of the causal terms spans both epochs: the resumed part appended, nothing lost
    assert final["logging"]["gate"] == [0.0, 1.0]
    assert final["logging"]["l_causal"][0] == latest["logging"]["l_causal"][0]
    assert len(final["logging"]["l_causal"]) == 2 and np.all(np.isfinite(final["logging"]["l_causal"]))
    assert len(final["logging"]["train_losses"]) == 2
    # the weights moved after the resume (training really ran on the loaded state)
    key = next(k for k in final["network_weights"] if k.startswith("backbone.encoder.") and k.endswith("weight"))
    assert not torch.equal(final["network_weights"][key], latest["network_weights"][key])
    z = final["network_weights"]["bottleneck.confounder_embeddings"]
    torch.testing.assert_close(z, latest["network_weights"]["bottleneck.confounder_embeddings"])  # a fixed buffer

    # prediction with the causal model through nnUNetv2_predict_text: trained names and a synonym
    out = tmp_path / "pred_text"
    run(["nnUNetv2_predict_text", "-i", str(raw / "imagesTs"), "-o", str(out), "-d", "2", "-c", "3d_fullres",
         "-f", "0", "-tr", TRAINER, "-device", "cpu", "--disable_tta", "-prompts", "spleen", "liver",
         "--save_binary", "-npp", "1", "-nps", "1"], nnunet_env)
    import SimpleITK as sitk
    side = read_json(out / "vol_005.prompts.json")
    assert [p["prompt"] for p in side["prompts"]] == ["spleen", "liver"]
    assert [p["trained_structures"] for p in side["prompts"]] == [["spleen"], ["liver"]]
    ref = sitk.ReadImage(str(raw / "labelsTs" / "vol_005.nii.gz"))
    pred = sitk.ReadImage(str(out / "vol_005.nii.gz"))
    assert pred.GetSize() == ref.GetSize() and pred.GetSpacing() == ref.GetSpacing()
    assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1, 2}
    label_map = sitk.GetArrayFromImage(pred)
    for p in side["prompts"]:
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / p["binary_mask"])))
        assert mask.shape == label_map.shape and set(np.unique(mask)) <= {0, 1}
        assert int(mask.sum()) == p["binary_voxel_count"] and int((label_map == p["label_value"]).sum()) == p["voxel_count"]
        assert p["voxel_count"] <= p["binary_voxel_count"]  # the label map resolves overlaps, masks keep them
