"""``nnunet_causal study``: schema and bad-input errors, resume logic, tables/charts/report, one real tiny study."""
from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from nnunet_causal.cli import main
from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.evaluation import study as st
from nnunet_causal.evaluation.study import StudyError, load_study, parse_study
from tests.conftest import make_tiny_2d_dataset, make_tiny_3d_dataset, read_json

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "studies"
DATASET = "Dataset001_Tiny2D"


def write_study(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------------------------

def test_example_studies_pass_the_schema_and_name_existing_trainers(tmp_path):
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert {f.name for f in files} >= {"synthetic_endoscopy.yaml", "endoscopy_composite.yaml",
                                       "abdomen_composite.yaml"}
    for f in files:
        config = load_study(f)
        assert config.trainers and config.seeds and config.output.is_absolute()
        env = st.study_environment(config)
        for trainer in config.trainers:  # every example names a trainer nnUNetv2_train can find
            assert st.find_trainer(trainer.name, env, str(f)).__name__ == trainer.name
    endo = load_study(EXAMPLES / "endoscopy_composite.yaml")
    assert endo.heldout_domains == ("kvasir", "cvc-clinicdb", "etis") and endo.configuration == "2d"
    abd = load_study(EXAMPLES / "abdomen_composite.yaml")
    assert abd.heldout_domains == ("btcv", "amos", "chaos") and abd.configuration == "3d_fullres"


def test_defaults_and_trainer_forms(tmp_path):
    config = parse_study({"dataset": 7, "trainers": ["nnUNetTrainer", {"name": "nnUNetTrainerGINIPA",
                                                                       "label": "GIN | IPA",
                                                                       "env": {"X_FLAG": 1, "Y": True}}],
                          "output": "out"}, "s.yaml")
    assert config.dataset == "7" and config.configuration == "2d" and config.plans == "nnUNetPlans"
    assert config.heldout_domains == "all" and config.seeds == (0,) and config.device is None
    assert config.split_by == "domain" and config.prediction.mode == "validation"
    assert config.output == (Path.cwd() / "out").resolve()
    assert [t.label for t in config.trainers] == ["nnUNetTrainer", "GIN | IPA"]
    assert dict(config.trainers[1].env) == {"X_FLAG": "1", "Y": "true"}
    override = parse_study({"dataset": "Dataset007_X", "trainers": ["nnUNetTrainer"]}, "s.yaml", output=tmp_path)
    assert override.output == tmp_path.resolve() and override.dataset == "Dataset007_X"


BASE = {"dataset": 1, "trainers": ["nnUNetTrainer"], "output": "o"}


@pytest.mark.parametrize("change,message", [
    ({"dataset": None}, "missing required key 'dataset'"),
    ({"trainers": None}, "missing required key 'trainers'"),
    ({"output": None}, "missing required key 'output'"),
    ({"trainer": ["x"]}, "unknown key(s) trainer"),
    ({"dataset": "liver"}, "'dataset' must be a dataset id"),
    ({"dataset": 1000}, "'dataset' id must be 1..999"),
    ({"trainers": []}, "'trainers' must be a non-empty list"),
    ({"trainers": "nnUNetTrainer"}, "'trainers' must be a non-empty list"),
    ({"trainers": [{"label": "x"}]}, "trainers[0] lacks 'name'"),
    ({"trainers": [{"name": "A", "lable": "x"}]}, "trainers[0] has unknown key(s) lable"),
    ({"trainers": ["nnUNet Trainer"]}, "is not a Python class name"),
    ({"trainers": ["A", "A"]}, "listed more than once: A"),
    ({"trainers": [{"name": "A", "label": "m"}, {"name": "B", "label": "m"}]}, "label(s) listed more than once"),
    ({"seeds": "0,1"}, "'seeds' must be a non-empty list of integers"),
    ({"seeds": [0, True]}, "'seeds' must be a non-empty list of integers"),
    ({"seeds": [1, 1]}, "lists a seed more than once"),
    ({"heldout_domains": 3}, "'heldout_domains' must be 'all' or a non-empty list"),
    ({"heldout_domains": ["a", "a"]}, "lists a domain more than once"),
    ({"device": "gpu"}, "'device' must be one of cpu, cuda, mps"),
    ({"configuration": ""}, "'configuration' must be a non-empty string"),
    ({"env": ["A=1"]}, "'env' must be a mapping"),
    ({"env": {"A": [1]}}, "'env.A' must be a string or number"),
    ({"num_processes": 0}, "'num_processes' must be an integer >= 1"),
    ({"split_by": "the site"}, "'split_by' must be the name of a domain-record field"),
    ({"prediction": {"mode": "test"}}, "'prediction.mode' must be one of validation, predict"),
    ({"prediction": {"prompts": ["lesion"]}}, "prompt options need 'prediction.mode: predict'"),
    ({"prediction": {"mode": "predict", "step_size": 2}}, "'prediction.step_size' must be a number in (0, 1]"),
    ({"prediction": {"mode": "predict", "prompts": ["a"], "prompt_file": "p.txt"}}, "either"),
    ({"prediction": {"tta": False}}, "'prediction' has unknown key(s) tta"),
])
def test_schema_errors_name_the_file_and_key(change, message):
    data = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(StudyError) as e:
        parse_study(data, "my_study.yaml")
    assert str(e.value).startswith("my_study.yaml: ") and message in str(e.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(StudyError, match="cannot read study file .*nope.yaml"):
        load_study(tmp_path / "nope.yaml")
    bad = write_study(tmp_path, "dataset: 1\ntrainers: [nnUNetTrainer\n", "bad.yaml")
    with pytest.raises(StudyError, match=r"bad.yaml: not valid YAML"):
        load_study(bad)
    lst = write_study(tmp_path, "- dataset: 1\n", "list.yaml")
    with pytest.raises(StudyError, match=r"list.yaml: a study file must be a YAML mapping"):
        load_study(lst)


def test_cli_reports_bad_input_in_one_line_and_exits_2(tmp_path, capsys):
    path = write_study(tmp_path, "dataset: 1\ntrainers: [nnUNetTrainer]\nseeds: [a]\noutput: o\n")
    assert main(["study", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnunet_causal study: error: ") and str(path) in err and "'seeds'" in err
    assert len(err.splitlines()) == 1


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
    ctx = st.prepare_study(_config(tmp_path, trainers=["nnUNetTrainer", "nnUNetTrainerGINIPA_Tiny"]))
    assert ctx.dataset.name == DATASET and ctx.domains == ["site0", "site1"] and ctx.device == "cpu"
    assert st.prepare_study(_config(tmp_path, heldout_domains=["site1"], configuration="2d_big")).domains == ["site1"]

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
            st.prepare_study(_config(tmp_path, **kw))
        assert str(e.value).startswith("s.yaml: ") and message in str(e.value), str(e.value)

    shutil.rmtree(pre / "nnUNetPlans_2d")
    with pytest.raises(StudyError, match=r"configuration '2d' of Dataset001_Tiny2D is not preprocessed.*"
                                         r"run nnUNetv2_plan_and_preprocess -d 1 -c 2d"):
        st.prepare_study(_config(tmp_path))
    (pre / "nnUNetPlans.json").unlink()
    with pytest.raises(StudyError, match=r"Dataset001_Tiny2D is not preprocessed: .*nnUNetPlans.json does not "
                                         r"exist; run nnUNetv2_plan_and_preprocess -d 1 -c 2d"):
        st.prepare_study(_config(tmp_path))


def test_prompt_options_are_checked(fake_dataset, tmp_path):
    bad = tmp_path / "prompts.txt"
    bad.write_text("lesion || spot\n")
    with pytest.raises(NnunetCausalError, match="prompts.txt"):
        st.check_prompts(_config(tmp_path, prediction={"mode": "predict", "prompt_file": str(bad)}))
    with pytest.raises(StudyError, match="prompt file .*missing.txt does not exist"):
        st.check_prompts(_config(tmp_path, prediction={"mode": "predict",
                                                       "prompt_file": str(tmp_path / "missing.txt")}))
    path = st.check_prompts(_config(tmp_path, prediction={"mode": "predict", "prompts": ["lesion", "marker | sq"]}))
    assert path.read_text() == "lesion\nmarker | sq\n"


# --------------------------------------------------------------------------------------------------------------
# orchestration and resume, with nnUNetv2_train replaced by a stand-in that writes what it would write
# --------------------------------------------------------------------------------------------------------------

class FakeCommands:
    """Stand-in for :func:`study.run_command`: make-splits runs for real (in-process), nnUNetv2_train writes a
    checkpoint and 'validation' predictions (the reference with a seed-dependent pixel error)."""

    def __init__(self, raw: Path):
        self.raw = raw
        self.calls = []
        self.prompt_files = []

    def __call__(self, cmd, env, log_path):
        cmd = list(cmd)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if "make-splits" in cmd:
            assert main(cmd[cmd.index("make-splits"):]) == 0
            return
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
        self._validation(fold_dir / "validation", splits[fold]["val"], int(env[st.SEED_VARIABLE]))

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
    monkeypatch.setattr(st, "run_command", fake)
    config = _config(tmp_path, trainers=["nnUNetTrainer", {"name": "nnUNetTrainerGINIPA_Tiny", "label": "GIN"}],
                     seeds=[0, 1], overlay_cases=2)
    result = st.run_study(config)
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
    result = st.run_study(config)
    assert fake.calls == [] and all(a == ["skipped"] for a in result.actions.values())
    log = (out / "study.log").read_text()
    assert log.count("skipped (checkpoint_final.pth and evaluation.json exist)") == 8

    # an interrupted training is continued with --c, a missing validation re-run with --val, a missing
    # evaluation recomputed without training
    runs = {r.run_id: r for r in st.plan_runs(st.prepare_study(config), state["folds"])}
    paths = st.StudyPaths(out, DATASET, "2d", "nnUNetPlans")
    interrupted, unvalidated, unevaluated = (runs["nnUNetTrainer__site0__seed1"], runs["GIN__site1__seed0"],
                                             runs["GIN__site0__seed1"])
    fold_dir = paths.fold_dir(interrupted)
    (fold_dir / "checkpoint_final.pth").rename(fold_dir / "checkpoint_latest.pth")
    shutil.rmtree(paths.fold_dir(unvalidated) / "validation")
    (paths.fold_dir(unvalidated) / "validation").mkdir()
    paths.evaluation_json(unvalidated).unlink()
    paths.evaluation_json(unevaluated).unlink()
    fake.calls.clear()
    result = st.run_study(config)
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
    monkeypatch.setattr(st, "run_command", fake)
    config = _config(tmp_path, heldout_domains=["site0"], prediction={
        "mode": "predict", "disable_tta": True, "step_size": 0.25, "prompts": ["lesion | red spot", "marker"]})
    result = st.run_study(config)
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
    result = st.run_study(_config(tmp_path, heldout_domains=["site0"]))
    assert list(result.actions.values()) == [["evaluated"]] and fake.calls == []
    assert (run_dir / "evaluation.json").is_file()


def test_changed_folds_are_refused(fake_dataset, tmp_path, monkeypatch):
    raw, _ = fake_dataset
    monkeypatch.setattr(st, "run_command", FakeCommands(raw))
    config = _config(tmp_path, heldout_domains=["site1"])
    st.run_study(config)
    state_file = config.output / "study_state.json"
    state = read_json(state_file)
    state["folds"] = {"site0": 1, "site1": 0}
    state_file.write_text(json.dumps(state))
    with pytest.raises(StudyError, match="folds changed since this study started"):
        st.run_study(config)


def test_failed_run_is_reported_after_the_others(fake_dataset, tmp_path, monkeypatch):
    raw, _ = fake_dataset
    fake = FakeCommands(raw)

    def flaky(cmd, env, log_path):
        if "nnUNetTrainerGINIPA_Tiny" in cmd:
            raise st.CommandError(f"nnUNetv2_train exited with code 1; full output in {log_path}")
        fake(cmd, env, log_path)

    monkeypatch.setattr(st, "run_command", flaky)
    config = _config(tmp_path, trainers=["nnUNetTrainer", "nnUNetTrainerGINIPA_Tiny"])
    with pytest.raises(StudyError, match=r"2 of 4 run\(s\) failed"):
        st.run_study(config)
    assert len(list(csv.DictReader((config.output / "results.csv").open()))) == 2
    state = read_json(config.output / "study_state.json")
    assert state["runs"]["nnUNetTrainerGINIPA_Tiny__site0__seed0"]["status"] == "failed"


def test_dry_run_plans_without_running(fake_dataset, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(st, "run_command", lambda *a: pytest.fail("dry run ran a command"))
    caplog.set_level("INFO")
    st.run_study(_config(tmp_path), dry_run=True)
    assert "nnUNetTrainer__site0__seed0: fold 0, next step: train" in caplog.text


# --------------------------------------------------------------------------------------------------------------
# tables, charts and report from fabricated results
# --------------------------------------------------------------------------------------------------------------

def _rows():
    rows = []
    values = {("base", "A"): [0.5, 0.6, 0.7], ("base", "B"): [0.2, 0.3, 0.4],
              ("causal", "A"): [0.8, 0.8, 0.8], ("causal", "B"): [0.6, 0.5, None]}
    for (label, dom), dices in values.items():
        for seed, d in enumerate(dices):
            if d is None:
                continue
            rows.append({"trainer": f"T_{label}", "label": label, "heldout_domain": dom, "fold": "AB".index(dom),
                         "seed": seed, "dice": d, "hd95_mm": float("nan") if label == "causal" and dom == "B" else
                         10 * (1 - d), "n_cases": 4, "n_hd95_undefined": 0, "dice_lesion": d})
    return rows


def test_tables_charts_and_report_from_fabricated_results(tmp_path):
    files = st.write_study_outputs(tmp_path, _rows(), ["base", "causal"], ["A", "B"], title="T",
                                   header_lines=["header line"], runs_table="| runs |\n")
    table = (tmp_path / "table.md").read_text()
    dice_table, hd_table = table.split("## HD95")
    # base: A 0.6 ± 0.1, B 0.3 ± 0.1, per-seed means 0.35/0.45/0.55 -> 0.45 ± 0.1
    assert "| base | 0.600 ± 0.100 | 0.300 ± 0.100 | 0.450 ± 0.100 |" in dice_table
    # causal: B has 2 seeds; the mean column only counts seeds with both domains (0.7, 0.65)
    assert "| causal | **0.800 ± 0.000** | **0.550 ± 0.071** | **0.675 ± 0.035** |" in dice_table
    # HD95: causal's B undefined -> dash, and its mean too; lower is better -> base is bold where it exists
    assert "| causal | **2.00 ± 0.00** | – | – |" in hd_table
    assert "| base | 4.00 ± 1.00 | **7.00 ± 1.00** | **5.50 ± 1.00** |" in hd_table
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 11 and rows[0]["label"] == "base" and rows[-1]["label"] == "causal"
    assert [r["hd95_mm"] for r in rows if r["label"] == "causal" and r["heldout_domain"] == "B"] == ["", ""]
    for key in ("chart_A", "chart_B", "chart_mean"):
        assert files[key].read_bytes()[:4] == b"\x89PNG"
    report = files["report"].read_text()
    assert report.startswith("# T\n\nheader line") and "0.450 ± 0.100" in report
    assert "![A](figures/bars_A.png)" in report and "| runs |" in report


def test_single_seed_cells_have_no_spread(tmp_path):
    rows = [r for r in _rows() if r["seed"] == 0]
    dice = st.markdown_metric_table(rows, "dice", ["base", "causal"], ["A", "B"], True, 3)
    assert "| base | 0.500 | 0.200 | 0.350 |" in dice and "±" not in dice


def test_partial_labels_leave_unannotated_structures_out():
    evaluation = {"records": [
        {"case": "c1", "structure": "liver", "domain": "d", "dice": 0.9, "hd95_mm": 2.0},
        {"case": "c1", "structure": "spleen", "domain": "d", "dice": 0.0, "hd95_mm": None},
        {"case": "c2", "structure": "liver", "domain": "d", "dice": 0.7, "hd95_mm": 4.0},
        {"case": "c2", "structure": "spleen", "domain": "d", "dice": 0.5, "hd95_mm": 6.0}]}
    run = st.Run(st.TrainerSpec("T", "T"), "d", 0, 0, ("c1", "c2"))
    full = st.result_row(run, evaluation)
    assert full["dice"] == pytest.approx(0.525) and full["n_hd95_undefined"] == 1
    partial = st.result_row(run, evaluation, {"c1": ["liver"]})
    assert partial["dice"] == pytest.approx(0.7) and partial["dice_spleen"] == pytest.approx(0.5)
    assert partial["hd95_mm"] == pytest.approx(4.0) and partial["n_hd95_undefined"] == 0


def test_overlays_2d_and_3d(tmp_path):
    vol = np.zeros((9, 6, 6), np.uint8)
    vol[2, 1:3, 1:3] = 1
    vol[6, 1:5, 1:5] = 2
    vol[7, 1:5, 1:5] = 1
    assert st.pick_slice(vol) in (6, 7) and st.pick_slice(vol) == 6  # tie: nearest the middle (4)
    assert st.pick_slice(np.zeros((9, 6, 6))) == 4
    for make, ending in ((make_tiny_2d_dataset, ".png"), (make_tiny_3d_dataset, ".nii.gz")):
        raw = make(tmp_path / "raw")
        dj = read_json(raw / "dataset.json")
        cases = sorted(p.name[: -len(ending)] for p in (raw / "labelsTr").iterdir())[:2]
        out = st.overlay_figure(dj, raw, cases, {"perfect": raw / "labelsTr", "none": tmp_path / "absent"},
                                tmp_path / f"overlay{ending}.png", {"perfect": {cases[0]: 1.0}})
        assert out.read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------------------------------------------
# one real study: stock plan/preprocess, stock training through the study runner, then a re-run that trains nothing
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_tiny_study_end_to_end_and_rerun(nnunet_env, tmp_path, capsys):
    import subprocess

    make_tiny_2d_dataset(Path(nnunet_env["nnUNet_raw"]))
    proc = subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", "1", "-c", "2d", "-np", "1", "-npfp", "1"],
                          env=nnunet_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    path = write_study(tmp_path, f"""
dataset: 1
configuration: 2d
trainers:
  - {{name: nnUNetTrainerGINIPA_Tiny, label: GIN-IPA tiny}}
heldout_domains: [site1]
seeds: [0]
device: cpu
output: {tmp_path / 'study'}
num_processes: 1
overlay_cases: 2
env:
  nnUNet_n_proc_DA: 0
""")
    assert main(["study", str(path)]) == 0
    out = tmp_path / "study"
    fold_dir = out / "seed_0" / "nnUNet_results" / DATASET / "nnUNetTrainerGINIPA_Tiny__nnUNetPlans__2d" / "fold_1"
    checkpoint = fold_dir / "checkpoint_final.pth"
    assert checkpoint.is_file() and sorted(p.name for p in (fold_dir / "validation").glob("*.png")) == [
        "tiny_001.png", "tiny_003.png", "tiny_005.png", "tiny_007.png"]  # site1 = the odd cases
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 1 and rows[0]["heldout_domain"] == "site1" and rows[0]["n_cases"] == "4"
    assert 0.0 <= float(rows[0]["dice"]) <= 1.0
    # our Dice of the held-out domain is nnU-Net's own validation Dice (no empty structures here)
    nnunet_dice = read_json(fold_dir / "validation" / "summary.json")["foreground_mean"]["Dice"]
    assert float(rows[0]["dice"]) == pytest.approx(nnunet_dice, abs=1e-6)
    assert (out / "figures" / "overlay_site1.png").is_file() and "GIN-IPA tiny" in (out / "table.md").read_text()

    mtime = checkpoint.stat().st_mtime_ns
    t0 = time.time()
    assert main(["study", str(path)]) == 0
    assert time.time() - t0 < 60 and checkpoint.stat().st_mtime_ns == mtime
    assert "1 run(s), 1 already done and skipped" in capsys.readouterr().out
    assert "GIN-IPA_tiny__site1__seed0: skipped" in (out / "study.log").read_text()
    state = read_json(out / "study_state.json")["runs"]["GIN-IPA_tiny__site1__seed0"]
    assert [h["actions"] for h in state["history"]] == [["trained", "evaluated"], ["skipped"]]
    assert "![overlays site1](figures/overlay_site1.png)" in (out / "report.md").read_text()
