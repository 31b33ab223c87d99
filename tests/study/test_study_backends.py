"""One tiny study through the real stock commands on every backend: ``local``, ``slurm`` (submitit's local
executor, with its worker killed once mid-run and resubmitted) and ``ray`` (a local Ray cluster, 2 CPUs).

The trainer seeds torch / numpy / random from the study's seed (``nnUNet_causal_study_seed``) and augments in
the main process (``nnUNet_n_proc_DA: 0``), so every backend trains the same network and the tables must be
identical, not just close. One plan-and-preprocess serves the whole module.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnunet_causal.cli import main
from tests.conftest import make_tiny_2d_dataset, read_json

pytestmark = pytest.mark.slow
DATASET = "Dataset001_Tiny2D"
RUN_ID = "tiny__site1__seed0"
KILL_VARIABLE = "NNUNET_CAUSAL_TEST_KILL_WORKER_ONCE"

SEEDED_TRAINER = f'''
import os, random, signal
import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_StudyTiny(nnUNetTrainer):
    """1 epoch of 2 iterations, seeded by the study's seed; under submitit's local executor it kills its worker
    once when {KILL_VARIABLE} names a marker file that does not exist yet (a lost worker)."""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        seed = int(os.environ.get("nnUNet_causal_study_seed", "0"))
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1
        marker = os.environ.get("{KILL_VARIABLE}")
        if marker and os.environ.get("SUBMITIT_EXECUTOR") == "local" and not os.path.exists(marker):
            if os.getppid() != int(os.environ["NNUNET_CAUSAL_TEST_PYTEST_PID"]):
                open(marker, "w").close()
                os.kill(os.getppid(), signal.SIGKILL)
                os._exit(1)
'''

STUDY = """
dataset: 1
configuration: 2d
trainers:
  - {{name: nnUNetTrainer_StudyTiny, label: tiny}}
heldout_domains: [site1]
seeds: [0]
device: cpu
num_processes: 1
overlay_cases: 1
env: {{nnUNet_n_proc_DA: 0}}
output: {output}
backend: local
backend_settings:
  slurm: {{executor: local, gpus_per_run: 0, cpus_per_run: 1, time_min: 10, poll_seconds: 0.5, max_retries: 2}}
  ray: {{num_cpus: 2, poll_seconds: 0.5, resources_per_run: {{num_cpus: 1}}}}
"""


@pytest.fixture(scope="module")
def study_env(tmp_path_factory):
    """Raw + preprocessed tiny 2D dataset (stock plan and preprocess, once) and the study file."""
    from nnunet_causal.env_cli import ext_trainer_folder

    root = tmp_path_factory.mktemp("study_backends")
    extra = root / "extra_trainers"
    extra.mkdir()
    (extra / "study_tiny_trainer.py").write_text(SEEDED_TRAINER)
    env = {"nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
           "nnUNet_results": str(root / "results"),
           "nnUNet_extTrainer": os.pathsep.join([str(ext_trainer_folder()), str(extra)]),
           "nnUNet_compile": "false", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "nnUNet_def_n_proc": "1",
           "NNUNET_CAUSAL_TEST_PYTEST_PID": str(os.getpid())}
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[key]).mkdir(parents=True)
    make_tiny_2d_dataset(Path(env["nnUNet_raw"]), n_train=4, n_test=0)  # 2 cases per site: quick to validate
    full = {**os.environ, **env, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", "1", "-c", "2d", "-np", "1", "-npfp", "1"],
                          env=full, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = root / "study.yaml"
    study.write_text(STUDY.format(output=root / "study_local"))
    return {"env": full, "study": study, "root": root}


@pytest.fixture
def in_study_env(study_env, monkeypatch):
    for key, value in study_env["env"].items():
        monkeypatch.setenv(key, value)
    return study_env


def _run(study_env, *args) -> Path:
    assert main(["study", str(study_env["study"]), *args]) == 0
    return Path(args[args.index("--output") + 1]) if "--output" in args else study_env["root"] / "study_local"


def _tables(out: Path) -> dict:
    report = (out / "report.md").read_text()
    return {"results.csv": (out / "results.csv").read_text(), "table.md": (out / "table.md").read_text(),
            "report.md (up to the run list)": report[:report.index("## Runs")]}


@pytest.fixture(scope="module")
def local_tables(study_env):
    """The reference: the study on the local backend (and a re-run that trains nothing)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in study_env["env"].items():
            mp.setenv(key, value)
        out = _run(study_env)
        fold_dir = out / "seed_0" / "nnUNet_results" / DATASET / "nnUNetTrainer_StudyTiny__nnUNetPlans__2d" / "fold_1"
        checkpoint = fold_dir / "checkpoint_final.pth"
        mtime = checkpoint.stat().st_mtime_ns
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            _run(study_env)  # resumable: everything is skipped
        assert checkpoint.stat().st_mtime_ns == mtime  # nothing trained again (no wall-clock bound: busy CPUs)
        assert "1 run(s), 1 already done and skipped" in printed.getvalue()
    return out, _tables(out), fold_dir


def test_local_backend_runs_the_stock_commands_and_resumes(local_tables):
    out, tables, fold_dir = local_tables
    assert sorted(p.name for p in (fold_dir / "validation").glob("*.png")) == [
        "tiny_001.png", "tiny_003.png"]  # site1 = the odd cases
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 1 and rows[0]["heldout_domain"] == "site1" and rows[0]["n_cases"] == "2"
    # our Dice of the held-out domain is nnU-Net's own validation Dice (no empty structures here)
    nnunet_dice = read_json(fold_dir / "validation" / "summary.json")["foreground_mean"]["Dice"]
    assert float(rows[0]["dice"]) == pytest.approx(nnunet_dice, abs=1e-6)
    history = read_json(out / "study_state.json")["runs"][RUN_ID]["history"]
    assert [h["actions"] for h in history] == [["trained", "evaluated"], ["skipped"]]
    assert f"{RUN_ID}: skipped" in (out / "study.log").read_text()
    assert (out / "runs" / RUN_ID / "commands.log").read_text().startswith("$ ")
    assert (out / "figures" / "overlay_site1.png").is_file() and "| tiny |" in (out / "table.md").read_text()
    assert "![overlays site1](figures/overlay_site1.png)" in (out / "report.md").read_text()


def test_slurm_backend_through_submitit_resubmits_a_killed_worker(local_tables, in_study_env, monkeypatch):
    marker = in_study_env["root"] / "killed_once"
    monkeypatch.setenv(KILL_VARIABLE, str(marker))
    out = in_study_env["root"] / "study_slurm"
    t0 = time.time()
    _run(in_study_env, "--backend", "slurm", "--output", str(out))
    assert marker.exists()  # the first worker was killed during nnUNetv2_train
    state = read_json(out / "study_state.json")["runs"][RUN_ID]
    actions = [h["actions"] for h in state["history"]]
    assert actions == [["lost"], ["trained", "evaluated"]], actions
    assert state["backend"] == "slurm" and state["history"][0]["job_id"] != state["history"][1]["job_id"]
    assert "ended without an outcome" in state["history"][0]["error"]
    assert Path(state["history"][0]["backend_log"]).is_file()
    assert "resubmitting (1 of at most 2)" in (out / "study.log").read_text()
    assert _tables(out) == local_tables[1], f"submitit study differs from the local one ({time.time() - t0:.0f} s)"


def test_ray_backend_on_a_local_cluster(local_tables, in_study_env):
    pytest.importorskip("ray")
    out = in_study_env["root"] / "study_ray"
    _run(in_study_env, "--backend", "ray", "--output", str(out))
    state = read_json(out / "study_state.json")["runs"][RUN_ID]
    assert state["backend"] == "ray" and [h["actions"] for h in state["history"]] == [["trained", "evaluated"]]
    assert _tables(out) == local_tables[1]
