"""``nnunet_causal study`` backends without a cluster: dry runs, a missing extra, a lost worker, a stock command
dying with its worker, and submitit's debug executor."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from nnunet_causal.cli import main
from nnunet_causal.study import runs as study_runs
from nnunet_causal.study.config import StudyError
from nnunet_causal.study.runner import run_study
from tests.conftest import read_json
from tests.study.study_fakes import FakeCommands, study_config as _config


# --------------------------------------------------------------------------------------------------------------
# backends without a cluster: dry runs, a missing extra, a lost worker
# --------------------------------------------------------------------------------------------------------------

def test_dry_run_shows_what_each_backend_would_submit(fake_dataset, tmp_path, monkeypatch, caplog):
    _, pre = fake_dataset
    monkeypatch.setattr(study_runs, "run_command", lambda *a: pytest.fail("dry run ran a command"))
    caplog.set_level("INFO")
    slurm = {"name": "slurm", "partition": "gpu", "gpus_per_run": 2, "time_min": 90, "array_parallelism": 4}
    run_study(_config(tmp_path, device=None, backend=slurm), dry_run=True)
    text = caplog.text
    assert "slurm (slurm executor via submitit): one job array of 2 job(s)" in text
    assert "slurm_partition=gpu" in text and "timeout_min=90" in text and "gpus_per_node=2" in text
    assert "-device cuda -num_gpus 2" in text  # a cluster run with GPUs defaults to cuda; DDP passed through
    caplog.clear()
    ray = {"name": "ray", "address": "ray://head:10001", "resources_per_run": {"num_cpus": 4, "memory_gb": 2}}
    run_study(_config(tmp_path, device=None, backend=ray), dry_run=True)
    assert "ray: 2 task(s) on the Ray cluster at ray://head:10001, each with num_cpus=4, num_gpus=0, " \
           f"memory={2 * 1024 ** 3}" in caplog.text
    assert "-device cpu" in caplog.text and "-num_gpus" not in caplog.text
    caplog.clear()
    assert main(["study", str(_study_file(tmp_path)), "--dry-run", "--backend", "local"]) == 0
    assert "local: 2 run(s), one after the other in this process" in caplog.text
    assert not (pre / "splits_final.json").exists()  # a dry run writes nothing into the dataset


def _study_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"dataset: 1\ntrainers: [nnUNetTrainer]\ndevice: cpu\noutput: {tmp_path / 'study'}\n"
                    f"backend: {{name: ray, num_cpus: 2}}\n")
    return path


def test_missing_cluster_extra_is_named(fake_dataset, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    monkeypatch.setitem(sys.modules, "ray", None)
    for name in ("slurm", "ray"):
        assert main(["study", str(_study_file(tmp_path)), "--backend", name]) == 2
        err = capsys.readouterr().err
        assert f"backend '{name}' needs the" in err and 'pip install "nnunet_causal[cluster]"' in err, err


def test_lost_worker_is_resubmitted_then_given_up(fake_dataset, tmp_path, monkeypatch):
    from nnunet_causal.study import runner
    from nnunet_causal.study.backends import WorkerLost
    from nnunet_causal.study.backends.local import LocalBackend

    raw, _ = fake_dataset
    monkeypatch.setattr(study_runs, "run_command", FakeCommands(raw))
    losses = {"nnUNetTrainer__site0__seed0": 1, "nnUNetTrainer__site1__seed0": 5}

    class Flaky(LocalBackend):
        def __init__(self, options, output):
            super().__init__(options, output)
            self.max_retries = 2

        def poll(self, handle):  # a lost worker: the job ends before it did anything
            rid = handle.job.run.run_id
            handle.lost = losses.get(rid, 0) > 0
            if handle.lost:
                losses[rid] -= 1
                return True
            return super().poll(handle)

        def collect(self, handle):
            if handle.lost:
                raise WorkerLost(f"worker of {handle.job.run.run_id} killed", log=str(tmp_path / "x.err"))
            return super().collect(handle)

    monkeypatch.setattr(runner, "make_backend", lambda options, output: Flaky(options, output))
    config = _config(tmp_path)
    with pytest.raises(StudyError, match=r"1 of 2 run\(s\) failed") as e:
        run_study(config)
    assert "worker of nnUNetTrainer__site1__seed0 killed; gave up after 3 attempt(s)" in str(e.value)
    runs = read_json(config.output / "study_state.json")["runs"]
    assert [h["actions"] for h in runs["nnUNetTrainer__site0__seed0"]["history"]] == [
        ["lost"], ["trained", "evaluated"]]
    assert runs["nnUNetTrainer__site0__seed0"]["status"] == "done"
    assert runs["nnUNetTrainer__site1__seed0"]["status"] == "failed"
    assert [h["actions"] for h in runs["nnUNetTrainer__site1__seed0"]["history"]] == [["lost"]] * 3 + [["failed"]]
    assert "resubmitting (1 of at most 2)" in (config.output / "study.log").read_text()
    assert len(list(csv.DictReader((config.output / "results.csv").open()))) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_stock_command_dies_with_its_worker(tmp_path):
    """A killed worker must not leave its training running beside the resubmitted one."""
    import os
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "child.pid"
    script = tmp_path / "worker.py"
    script.write_text(
        "import sys\nfrom pathlib import Path\nfrom nnunet_causal.study.runs import run_command\n"
        "child = 'import os, sys, time; open(sys.argv[1], \"w\").write(str(os.getpid())); time.sleep(120)'\n"
        "run_command([sys.executable, '-c', child, sys.argv[1]], {}, Path(sys.argv[2]))\n")
    worker = subprocess.Popen([sys.executable, str(script), str(pid_file), str(tmp_path / "log.txt")],
                              env=dict(os.environ))
    deadline = time.time() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.2)
    child = int(pid_file.read_text())
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=60)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the command outlived its worker")


def test_slurm_backend_with_submitits_debug_executor(fake_dataset, tmp_path, monkeypatch):
    """submitit's debug executor runs each job in this process: the SLURM backend's submit / poll / collect
    path with the stand-in commands (the real commands on submitit's local executor: test_study_backends)."""
    pytest.importorskip("submitit")
    raw, _ = fake_dataset
    fake = FakeCommands(raw)
    monkeypatch.setattr(study_runs, "run_command", fake)
    config = _config(tmp_path, trainers=["nnUNetTrainer", "nnUNetTrainerGINIPA_Tiny"],
                     backend={"name": "slurm", "executor": "debug", "gpus_per_run": 0, "poll_seconds": 0})
    result = run_study(config)
    assert all(a == ["trained", "evaluated"] for a in result.actions.values()) and len(result.actions) == 4
    assert len(fake.calls) == 4 and all("-num_gpus" not in c for c in fake.calls)
    state = read_json(config.output / "study_state.json")
    assert {r["backend"] for r in state["runs"].values()} == {"slurm"} and state["backend"] == "slurm"
    assert (config.output / "backend_logs" / "submitit").is_dir()
    assert "Backend: slurm." in (config.output / "report.md").read_text()
