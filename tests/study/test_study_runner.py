"""``nnunet_causal study`` orchestration with the stock commands replaced by a stand-in: checks, folds, resume,
failures, dry run. The real commands run in ``test_study_backends.py``."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.study import runs as study_runs
from nnunet_causal.study.checks import check_prompts, prepare_study
from nnunet_causal.study.config import CommandError, StudyError
from nnunet_causal.study.paths import StudyPaths
from nnunet_causal.study.runner import plan_runs, run_study
from tests.conftest import read_json
from tests.study.study_fakes import DATASET, FakeCommands, study_config as _config


# --------------------------------------------------------------------------------------------------------------
# checks against a (fake) preprocessed dataset
# --------------------------------------------------------------------------------------------------------------

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
