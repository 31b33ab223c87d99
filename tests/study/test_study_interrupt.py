"""Ctrl-C during a study (``nnunet_causal study``, local backend) while its stock ``nnUNetv2_train`` runs.

The study runs as a user starts it (a subprocess in its own session, so that SIGINT to its process group is what a
terminal's Ctrl-C sends). The trainer pauses after its first epoch, once ``checkpoint_latest.pth`` is written,
and says so in a file: the test waits for that file, presses Ctrl-C, and checks that the study exits with 130
and one line (no traceback), the training command stopped with it, ``study_state.json`` is whole and marks the
run interrupted (the run planned after it: not started), and the same command run again continues the training (``--c``) and finishes the study.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_tiny_2d_dataset, read_json

pytestmark = pytest.mark.slow
DATASET = "Dataset001_Tiny2D"
TRAINER = "nnUNetTrainer_StudyPause"
RUN_ID = "pause__site1__seed0"
NEXT_RUN_ID = "pause__site1__seed1"   # planned after RUN_ID: never started when the study is stopped
PAUSE_VARIABLE = "NNUNET_CAUSAL_TEST_PAUSE_FILE"

PAUSING_TRAINER = f'''
import os, time
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {TRAINER}(nnUNetTrainer):
    """2 epochs of 2 iterations, checkpoint_latest.pth after the first; when ${PAUSE_VARIABLE} names a file, it
    writes its process id there after the first epoch and waits until it is stopped."""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1
        self.save_every = 1

    def on_epoch_start(self):
        pause = os.environ.get("{PAUSE_VARIABLE}")
        if pause and self.current_epoch == 1:
            with open(pause + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(pause + ".tmp", pause)
            while True:
                time.sleep(0.1)
        super().on_epoch_start()
'''

STUDY = """
dataset: 1
configuration: 2d
trainers:
  - {{name: {trainer}, label: pause}}
heldout_domains: [site1]
seeds: [0, 1]
device: cpu
num_processes: 1
overlay_cases: 1
env: {{nnUNet_n_proc_DA: 0}}
output: {output}
"""


@pytest.fixture
def study(tmp_path):
    """A planned and preprocessed tiny 2D dataset, the pausing trainer's folder and the study file."""
    from nnunet_causal.env_cli import ext_trainer_folder

    trainers = tmp_path / "trainers"
    trainers.mkdir()
    (trainers / "study_pause_trainer.py").write_text(PAUSING_TRAINER)
    env = {"nnUNet_raw": str(tmp_path / "raw"), "nnUNet_preprocessed": str(tmp_path / "preprocessed"),
           "nnUNet_results": str(tmp_path / "results"),
           "nnUNet_extTrainer": os.pathsep.join([str(ext_trainer_folder()), str(trainers)]),
           "nnUNet_compile": "false", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "nnUNet_def_n_proc": "1"}
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[key]).mkdir()
    make_tiny_2d_dataset(Path(env["nnUNet_raw"]), n_train=4, n_test=0)  # 2 cases per site
    full = {**os.environ, **env, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    full.pop(PAUSE_VARIABLE, None)
    proc = subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", "1", "-c", "2d", "-np", "1", "-npfp", "1"],
                          env=full, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    study_file = tmp_path / "study.yaml"
    output = tmp_path / "study_out"
    study_file.write_text(STUDY.format(trainer=TRAINER, output=output))
    return {"env": full, "file": study_file, "output": output, "tmp": tmp_path}


def _wait_for(path: Path, proc: subprocess.Popen, deadline_s: float) -> None:
    """Wait until ``path`` exists (the study is inside the step); fail early if the study ends first."""
    end = time.monotonic() + deadline_s
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the study ended ({proc.returncode}) before its training paused:\n{out[-2000:]}\n"
                        f"{err[-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"no {path.name} after {deadline_s:.0f} s")
        time.sleep(0.2)


def _signal_masks(pid: int) -> str:
    """The kernel's record of how ``pid`` treats signals (blocked / ignored / caught masks), for a failure message."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return f"{pid}: gone"
    return f"{pid}: " + ", ".join(l.replace("\t", " ") for l in lines if l.startswith(("SigBlk", "SigIgn", "SigCgt")))


def _as_from_a_terminal() -> None:
    """Run in the study's child before exec: Ctrl-C handled as a terminal's foreground job has it (default
    disposition, not blocked), whatever state the test process's own signal handling is in."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_during_training_exits_130_in_one_line_and_the_rerun_continues(study):
    out, pause = study["output"], study["tmp"] / "paused.pid"
    cmd = [sys.executable, "-m", "nnunet_causal.cli", "study", str(study["file"])]
    proc = subprocess.Popen(cmd, env=dict(study["env"], **{PAUSE_VARIABLE: str(pause)}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_as_from_a_terminal)
    try:
        _wait_for(pause, proc, deadline_s=600)
        trainer_pid = int(pause.read_text())
        masks = f"study {_signal_masks(proc.pid)}; trainer {_signal_masks(trainer_pid)}"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends: the whole foreground group
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the study did not stop within 120 s of Ctrl-C (signal masks before it: {masks}; "
                        f"now: study {_signal_masks(proc.pid)}, trainer {_signal_masks(trainer_pid)})")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)

    assert proc.returncode == 130, f"exit {proc.returncode}\n{stdout[-2000:]}\n{stderr[-3000:]}"
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    state_file = out / "study_state.json"
    assert last == (f"nnunet_causal study: interrupted; run the same command again to continue (the runs in "
                    f"progress are marked 'interrupted' in {state_file})"), stderr[-2000:]
    assert not _alive(trainer_pid)  # the training command stopped with the study

    # the bookkeeping is whole and says what happened; the training stopped before its final checkpoint
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["study.log", "study_state.json"]  # no temp file
    state = json.loads(state_file.read_text())
    run = state["runs"][RUN_ID]
    assert run["status"] == "interrupted"
    assert [h["actions"] for h in run["history"]] == [["interrupted"]]
    nxt = state["runs"][NEXT_RUN_ID]
    assert nxt["status"] == "not started" and [h["actions"] for h in nxt["history"]] == [["not started"]]
    assert not (out / "seed_1" / "nnUNet_results").exists() or not any((out / "seed_1" / "nnUNet_results").rglob("*.pth"))
    fold_dir = out / "seed_0" / "nnUNet_results" / DATASET / f"{TRAINER}__nnUNetPlans__2d" / "fold_1"
    assert (fold_dir / "checkpoint_latest.pth").is_file() and not (fold_dir / "checkpoint_final.pth").exists()
    assert f"{RUN_ID}: interrupted" in (out / "study.log").read_text()
    assert f"{NEXT_RUN_ID}: interrupted" not in (out / "study.log").read_text()

    # the same command again: --c from checkpoint_latest.pth, nnU-Net's validation, evaluation, report
    again = subprocess.run(cmd, env=study["env"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 run(s), 0 already done and skipped" in again.stdout
    run = read_json(state_file)["runs"][RUN_ID]
    assert run["status"] == "done"
    assert [h["actions"] for h in run["history"]] == [["interrupted"], ["continued", "evaluated"]]
    nxt = read_json(state_file)["runs"][NEXT_RUN_ID]
    assert nxt["status"] == "done" and [h["actions"] for h in nxt["history"]][0] == ["not started"]
    commands = [l for l in (out / "runs" / RUN_ID / "commands.log").read_text().splitlines() if l.startswith("$ ")]
    assert len(commands) == 2 and "--c" not in commands[0].split() and commands[1].split()[-1] == "--c"
    assert (fold_dir / "checkpoint_final.pth").is_file() and not (fold_dir / "checkpoint_latest.pth").exists()
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted((r["heldout_domain"], r["seed"], r["n_cases"]) for r in rows) == [("site1", "0", "2"),
                                                                                      ("site1", "1", "2")]
