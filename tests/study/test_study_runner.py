"""``nnunet_causal study`` orchestration with the stock commands replaced by a stand-in: checks, folds, resume,
failures, dry run. The real commands run in ``test_study_backends.py``."""
from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from nnunet_causal.cli import main
from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.study import runs as study_runs
from nnunet_causal.study.checks import check_prompts, prepare_study
from nnunet_causal.study.config import SEED_VARIABLE, CommandError, StudyError, parse_study
from nnunet_causal.study.paths import StudyPaths
from nnunet_causal.study.runner import plan_runs, run_study
from tests.conftest import make_tiny_2d_dataset, read_json

DATASET = "Dataset001_Tiny2D"


# --------------------------------------------------------------------------------------------------------------
# checks against a (fake) preprocessed dataset
# --------------------------------------------------------------------------------------------------------------

@pytest.fixture
def fake_dataset(nnunet_env):
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


def _config(tmp_path, **kw):
    data = {"dataset": 1, "trainers": ["nnUNetTrainer"], "output": str(tmp_path / "study"), "device": "cpu",
            "num_processes": 1, **kw}
    return parse_study(data, "s.yaml")


def test_prepare_checks_dataset_domains_and_trainers(fake_dataset, tmp_path):
    raw, pre = fake_dataset
    ctx = prepare_study(_config(tmp_path, trainers=["nnUNetTrainer", "nnUNetTrainerGINIPA_Tiny"]))
    assert ctx.dataset.name == DATASET and ctx.domains == ["site0", "site1"] and ctx.device == "cpu"
    assert prepare_study(_config(tmp_path, heldout_domains=["site1"], configuration="2d_big")).domains == ["site1"]

    cases = [
        (dict(trainers=["nnUNetTrainer", "nnUNetTrainerDoesNotExist"]), "unknown trainer 'nnUNetTrainerDoesNotExist'"),
        (dict(heldout_domains=["site7"]), "held-out domain(s) 'site7' not in the domain records of "
                                          "Dataset001_Tiny2D (known values of 'domain' among the training cases: "
                                          "site0, site1)"),
        (dict(split_by="scanner"), "have no 'scanner' field"),
        (dict(configuration="3d_fullres"), "has no configuration '3d_fullres' (available: 2d, 2d_big)"),
        (dict(dataset=77), "dataset '77' not found"),
    ]
    for kw, message in cases:
        with pytest.raises(StudyError) as e:
            prepare_study(_config(tmp_path, **kw))
        assert str(e.value).startswith("s.yaml: ") and message in str(e.value), str(e.value)

    shutil.rmtree(pre / "nnUNetPlans_2d")
    with pytest.raises(StudyError, match=r"configuration '2d' of Dataset001_Tiny2D is not preprocessed.*"
                                         r"run nnUNetv2_plan_and_preprocess -d 1 -c 2d"):
        prepare_study(_config(tmp_path))
    (pre / "nnUNetPlans.json").unlink()
    with pytest.raises(StudyError, match=r"Dataset001_Tiny2D is not preprocessed: .*nnUNetPlans.json does not "
                                         r"exist; run nnUNetv2_plan_and_preprocess -d 1 -c 2d"):
        prepare_study(_config(tmp_path))


def test_prompt_options_are_checked(fake_dataset, tmp_path):
    bad = tmp_path / "prompts.txt"
    bad.write_text("lesion || spot\n")
    with pytest.raises(NnunetCausalError, match="prompts.txt"):
        check_prompts(_config(tmp_path, prediction={"mode": "predict", "prompt_file": str(bad)}))
    with pytest.raises(StudyError, match="prompt file .*missing.txt does not exist"):
        check_prompts(_config(tmp_path, prediction={"mode": "predict",
                                                       "prompt_file": str(tmp_path / "missing.txt")}))
    path = check_prompts(_config(tmp_path, prediction={"mode": "predict", "prompts": ["lesion", "marker | sq"]}))
    assert path.read_text() == "lesion\nmarker | sq\n"


# --------------------------------------------------------------------------------------------------------------
# orchestration and resume, with nnUNetv2_train replaced by a stand-in that writes what it would write
# --------------------------------------------------------------------------------------------------------------

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


def test_study_runs_resumes_and_skips(fake_dataset, tmp_path, monkeypatch):
    raw, _ = fake_dataset
    fake = FakeCommands(raw)
    monkeypatch.setattr(study_runs, "run_command", fake)
    config = _config(tmp_path, trainers=["nnUNetTrainer", {"name": "nnUNetTrainerGINIPA_Tiny", "label": "GIN"}],
                     seeds=[0, 1], overlay_cases=2)
    result = run_study(config)
    assert len(fake.calls) == 8 and all(a == ["trained", "evaluated"] for a in result.actions.values())
    assert all("-device" in c and c[c.index("-device") + 1] == "cpu" for c in fake.calls)
    out = config.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 8 and {r["heldout_domain"] for r in rows} == {"site0", "site1"}
    assert {"dice_lesion", "hd95_mm_marker"} <= set(rows[0])
    table = (out / "table.md").read_text()
    assert "| method | held out: site0 | held out: site1 | mean |" in table and " ± " in table
    for name in ("bars_site0.png", "bars_site1.png", "bars_mean.png", "overlay_site0.png", "overlay_site1.png"):
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "figures/overlay_site1.png" in report and "## HD95" in report and "fold 1 holds out `site1`" in report
    state = read_json(out / "study_state.json")
    assert state["folds"] == {"site0": 0, "site1": 1} and len(state["runs"]) == 8

    # nothing to do: every run is skipped and says so
    fake.calls.clear()
    result = run_study(config)
    assert fake.calls == [] and all(a == ["skipped"] for a in result.actions.values())
    log = (out / "study.log").read_text()
    assert log.count("skipped (checkpoint_final.pth and evaluation.json exist)") == 8

    # an interrupted training is continued with --c, a missing validation re-run with --val, a missing
    # evaluation recomputed without training
    runs = {r.run_id: r for r in plan_runs(prepare_study(config), state["folds"])}
    paths = StudyPaths(out, DATASET, "2d", "nnUNetPlans")
    interrupted, unvalidated, unevaluated = (runs["nnUNetTrainer__site0__seed1"], runs["GIN__site1__seed0"],
                                             runs["GIN__site0__seed1"])
    fold_dir = paths.fold_dir(interrupted)
    (fold_dir / "checkpoint_final.pth").rename(fold_dir / "checkpoint_latest.pth")
    shutil.rmtree(paths.fold_dir(unvalidated) / "validation")
    (paths.fold_dir(unvalidated) / "validation").mkdir()
    paths.evaluation_json(unvalidated).unlink()
    paths.evaluation_json(unevaluated).unlink()
    fake.calls.clear()
    result = run_study(config)
    assert result.actions[interrupted.run_id] == ["continued", "evaluated"]
    assert result.actions[unvalidated.run_id] == ["validated", "evaluated"]
    assert result.actions[unevaluated.run_id] == ["evaluated"]
    assert sum(a == ["skipped"] for a in result.actions.values()) == 5
    assert sorted(c[-1] for c in fake.calls) == ["--c", "--val"]
    history = read_json(out / "study_state.json")["runs"][interrupted.run_id]["history"]
    assert [h["actions"] for h in history] == [["trained", "evaluated"], ["skipped"], ["continued", "evaluated"]]


def test_predict_mode_runs_the_stock_predictor_with_its_options(fake_dataset, tmp_path, monkeypatch):
    raw, _ = fake_dataset
    fake = FakeCommands(raw)
    monkeypatch.setattr(study_runs, "run_command", fake)
    config = _config(tmp_path, heldout_domains=["site0"], prediction={
        "mode": "predict", "disable_tta": True, "step_size": 0.25, "prompts": ["lesion | red spot", "marker"]})
    result = run_study(config)
    assert list(result.actions.values()) == [["trained", "predicted", "evaluated"]]
    predict = fake.calls[-1]
    assert Path(predict[0]).name == "nnUNetv2_predict" and "--disable_tta" in predict
    assert predict[predict.index("-step_size") + 1] == "0.25" and predict[predict.index("-f") + 1] == "0"
    assert sorted(p.name for p in Path(predict[predict.index("-i") + 1]).iterdir()) == [
        "tiny_000_0000.png", "tiny_002_0000.png", "tiny_004_0000.png", "tiny_006_0000.png"]
    assert fake.prompt_files == [str(config.output / "prompts.txt")]
    run_dir = config.output / "runs" / "nnUNetTrainer__site0__seed0"
    tagged = sorted(p.name for p in run_dir.glob("evaluation_predict_notta_step0p25_prompts-*.json"))
    assert len(tagged) == 1 and not (run_dir / "evaluation.json").exists()
    # the same trained model evaluated through nnU-Net's validation: no training, its own evaluation file
    fake.calls.clear()
    result = run_study(_config(tmp_path, heldout_domains=["site0"]))
    assert list(result.actions.values()) == [["evaluated"]] and fake.calls == []
    assert (run_dir / "evaluation.json").is_file()


def test_changed_folds_are_refused(fake_dataset, tmp_path, monkeypatch):
    raw, _ = fake_dataset
    monkeypatch.setattr(study_runs, "run_command", FakeCommands(raw))
    config = _config(tmp_path, heldout_domains=["site1"])
    run_study(config)
    state_file = config.output / "study_state.json"
    state = read_json(state_file)
    state["folds"] = {"site0": 1, "site1": 0}
    state_file.write_text(json.dumps(state))
    with pytest.raises(StudyError, match="folds changed since this study started"):
        run_study(config)


def test_failed_run_is_reported_after_the_others(fake_dataset, tmp_path, monkeypatch):
    raw, _ = fake_dataset
    fake = FakeCommands(raw)

    def flaky(cmd, env, log_path):
        if "nnUNetTrainerGINIPA_Tiny" in cmd:
            raise CommandError(f"nnUNetv2_train exited with code 1; full output in {log_path}")
        fake(cmd, env, log_path)

    monkeypatch.setattr(study_runs, "run_command", flaky)
    config = _config(tmp_path, trainers=["nnUNetTrainer", "nnUNetTrainerGINIPA_Tiny"])
    with pytest.raises(StudyError, match=r"2 of 4 run\(s\) failed"):
        run_study(config)
    assert len(list(csv.DictReader((config.output / "results.csv").open()))) == 2
    state = read_json(config.output / "study_state.json")
    assert state["runs"]["nnUNetTrainerGINIPA_Tiny__site0__seed0"]["status"] == "failed"


def test_dry_run_plans_without_running(fake_dataset, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(study_runs, "run_command", lambda *a: pytest.fail("dry run ran a command"))
    caplog.set_level("INFO")
    run_study(_config(tmp_path), dry_run=True)
    assert "nnUNetTrainer__site0__seed0: fold 0, next step: train" in caplog.text


# --------------------------------------------------------------------------------------------------------------
# splits: a user's splits_final.json is kept; the study's folds are appended after it, with a backup
# --------------------------------------------------------------------------------------------------------------

def test_user_splits_are_kept_and_the_study_folds_appended(fake_dataset, tmp_path, monkeypatch, caplog):
    raw, pre = fake_dataset
    fake = FakeCommands(raw)
    monkeypatch.setattr(study_runs, "run_command", fake)
    cases = [f"tiny_{i:03d}" for i in range(8)]
    user = [{"train": [c for c in cases if c != cases[k]], "val": [cases[k]]} for k in range(5)]
    user[3] = {"train": [c for c in cases if c.endswith(("0", "2", "4", "6"))],  # = the study's 'site1' fold
               "val": [c for c in cases if c.endswith(("1", "3", "5", "7"))]}
    splits_file = pre / "splits_final.json"
    splits_file.write_text(json.dumps(user))
    original = splits_file.read_text()
    caplog.set_level("INFO")
    config = _config(tmp_path)
    run_study(config)
    splits = read_json(splits_file)
    assert splits[:5] == user and len(splits) == 6  # site1 reuses fold 3, site0 is appended as fold 5
    assert splits[5] == {"train": user[3]["val"], "val": user[3]["train"]}
    assert read_json(config.output / "study_state.json")["folds"] == {"site0": 5, "site1": 3}
    assert sorted(int(c[3]) for c in fake.calls) == [3, 5]
    backups = list(pre.glob("splits_final.json.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == original
    assert "kept unchanged and the study's missing folds appended as fold(s) 5-5" in caplog.text
    assert str(backups[0]) in (config.output / "study.log").read_text()
    # a second study on the same dataset finds its folds and writes nothing
    run_study(_config(tmp_path, output=str(tmp_path / "other")))
    assert read_json(splits_file) == splits and len(list(pre.glob("splits_final.json.bak-*"))) == 1


def test_malformed_user_splits_are_refused(fake_dataset, tmp_path, monkeypatch):
    raw, pre = fake_dataset
    monkeypatch.setattr(study_runs, "run_command", FakeCommands(raw))
    (pre / "splits_final.json").write_text(json.dumps({"fold0": []}))
    with pytest.raises(StudyError, match=r"splits_final.json is not in nnU-Net's format"):
        run_study(_config(tmp_path))


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
    worker.wait()
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
