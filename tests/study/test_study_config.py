"""STUDY.yaml schema: defaults, trainer forms, the backend block, and errors that name the file and key."""
from __future__ import annotations

from pathlib import Path

import pytest

from nnunet_causal.cli import main
from nnunet_causal.study.checks import find_trainer, study_environment
from nnunet_causal.study.config import StudyError, load_study, parse_study

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "studies"


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
        env = study_environment(config)
        for trainer in config.trainers:  # every example names a trainer nnUNetv2_train can find
            assert find_trainer(trainer.name, env, str(f)).__name__ == trainer.name
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


def test_backend_block_and_override():
    local = parse_study({**BASE}, "s.yaml")
    assert local.backend.name == "local" and dict(local.backend.settings) == {}
    slurm = parse_study({**BASE, "backend": {"name": "slurm", "partition": "gpu", "gpus_per_run": 2,
                                             "time_min": 60, "mem_gb": 32, "setup": "module load cuda",
                                             "additional": {"exclusive": ""}}}, "s.yaml")
    assert slurm.backend.name == "slurm" and slurm.backend.get("gpus_per_run") == 2
    assert slurm.backend.get("setup") == ("module load cuda",) and slurm.backend.get("mem_gb") == 32.0
    ray = parse_study({**BASE, "backend": {"name": "ray", "address": "auto",
                                           "resources_per_run": {"num_cpus": 4, "num_gpus": 1}}}, "s.yaml")
    assert ray.backend.get("resources_per_run") == {"num_cpus": 4, "num_gpus": 1}
    # --backend: the same file elsewhere; settings kept only when they are for that backend
    assert parse_study({**BASE, "backend": "ray"}, "s.yaml", backend="slurm").backend.settings == {}
    kept = parse_study({**BASE, "backend": {"name": "ray", "num_cpus": 2}}, "s.yaml", backend="ray")
    assert kept.backend.get("num_cpus") == 2
    # one file, settings for every backend; 'backend' picks one, --backend another
    both = {**BASE, "backend": "local", "backend_settings": {"slurm": {"executor": "local"}, "ray": {"num_cpus": 2}}}
    assert parse_study(both, "s.yaml").backend.name == "local"
    assert dict(parse_study(both, "s.yaml", backend="slurm").backend.settings) == {"executor": "local"}
    assert dict(parse_study(both, "s.yaml", backend="ray").backend.settings) == {"num_cpus": 2}


@pytest.mark.parametrize("backend,message", [
    ("pbs", "'backend.name' must be one of local, slurm, ray"),
    ({"partition": "gpu"}, "'backend' must be one of local, slurm, ray or a mapping with 'name'"),
    ({"name": "slurm", "gpus": 1}, "'backend' (slurm) has unknown key(s) gpus (allowed: max_retries"),
    ({"name": "local", "partition": "gpu"}, "'backend' (local) has unknown key(s) partition (allowed: none)"),
    ({"name": "slurm", "gpus_per_run": -1}, "'backend.gpus_per_run' must be an integer >= 0"),
    ({"name": "slurm", "executor": "pbs"}, "'backend.executor' must be one of slurm, local, debug"),
    ({"name": "ray", "resources_per_run": {"num_gpus": "one"}}, "'backend.resources_per_run' must map resource"),
    ({"name": "ray", "poll_seconds": "often"}, "'backend.poll_seconds' must be a number >= 0"),
    ({"name": "local", "settings": {"pbs": {}}}, "'backend_settings' must map backend names"),
    ({"name": "local", "settings": {"ray": {"adress": "auto"}}},
     "'backend_settings.ray' (ray) has unknown key(s) adress"),
    ({"name": "ray", "num_cpus": 1, "settings": {"ray": {"num_cpus": 2}}}, "both under 'backend' and under"),
])
def test_backend_errors_name_the_file_and_key(backend, message):
    data = {**BASE, "backend": backend}
    if isinstance(backend, dict) and "settings" in backend:
        data["backend_settings"] = backend.pop("settings")
    with pytest.raises(StudyError) as e:
        parse_study(data, "my_study.yaml")
    assert str(e.value).startswith("my_study.yaml: ") and message in str(e.value), str(e.value)
    with pytest.raises(StudyError, match="--backend must be one of"):
        parse_study(BASE, "my_study.yaml", backend="pbs")
