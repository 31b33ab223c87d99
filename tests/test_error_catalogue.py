"""Catalogue of broken inputs: every error of this package is one message without a traceback, in our
commands and in the stock nnU-Net ones (through the exception hook of the trainer shim folder)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_causal.errors import DatasetError, NnunetCausalError, PromptError, TextEncoderError
from tests.inference.tiny_model import (DATASET_JSON, find_our_trainers, make_model_folder, tiny_plans,
                                        use_fake_encoder)


# ------------------------------------------------------------------ the hook
def test_hook_prints_our_errors_in_one_line_and_keeps_tracebacks_of_bugs(capsys):
    from nnunet_causal.error_hook import make_error_hook

    seen = []
    hook = make_error_hook(lambda *exc: seen.append(exc[0]))
    hook(PromptError, PromptError("prompts.txt, line 3: empty prompt"), None)
    err = capsys.readouterr().err
    assert err.endswith(": error: prompts.txt, line 3: empty prompt\n") and "Traceback" not in err
    hook(KeyError, KeyError("bug"), None)
    assert seen == [KeyError]


def test_shim_folder_installs_the_hook_before_any_trainer_module(monkeypatch):
    import pkgutil

    from nnunet_causal.env_cli import ext_trainer_folder

    modules = [m.name for m in pkgutil.iter_modules([str(ext_trainer_folder())])]
    assert modules[0] == "nnunet_causal_0_error_hook"  # nnU-Net imports them in this order and stops early
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    import importlib
    importlib.import_module("nnunet_causal.ext.nnunet_causal_0_error_hook")
    importlib.reload(sys.modules["nnunet_causal.ext.nnunet_causal_0_error_hook"])
    assert getattr(sys.excepthook, "_nnunet_causal_error_hook", False)


# ------------------------------------------------------------------ nnUNetv2_predict_text x broken model folders
def predict_text(tmp_path, model, *extra):
    from nnunet_causal.inference.predict_text_entry import main

    inp = tmp_path / "in"
    inp.mkdir(exist_ok=True)
    return main(["-i", str(inp), "-o", str(tmp_path / "out"), "-m", str(model), "-device", "cpu",
                 "-prompts", "lesion", *extra])


def damage(model: Path, how: str) -> str:
    ckpt = model / "fold_0" / "checkpoint_final.pth"
    if how == "missing fold":
        return "fold 3 was not trained (no fold_3); available folds with checkpoint_final.pth: 0 (pass -f 0)"
    if how == "missing checkpoint":
        ckpt.rename(ckpt.with_name("checkpoint_best.pth"))
        return "checkpoint_final.pth does not exist: it has checkpoint_best.pth (choose one with -chk)"
    if how == "corrupt checkpoint":
        ckpt.write_bytes(b"this is not a checkpoint")
        return f"{ckpt}: cannot read the checkpoint"
    if how == "truncated checkpoint":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
        return f"{ckpt}: cannot read the checkpoint"
    if how == "not a checkpoint":
        import torch
        torch.save({"state_dict": {}}, ckpt)
        return f"{ckpt}: not an nnU-Net checkpoint (no network_weights, trainer_name, init_args"
    if how == "bad plans.json":
        (model / "plans.json").write_text("{")
        return f"{model / 'plans.json'}: cannot read it as JSON"
    raise ValueError(how)


@pytest.mark.parametrize("how", ["missing fold", "missing checkpoint", "corrupt checkpoint", "truncated checkpoint",
                                 "not a checkpoint", "bad plans.json"])
def test_predict_text_names_what_is_wrong_with_the_model(how, tmp_path, capsys):
    model = make_model_folder(tmp_path)
    expected = damage(model, how)
    folds = ("-f", "0", "3") if how == "missing fold" else ("-f", "0")
    assert predict_text(tmp_path, model, *folds) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_predict_text_ignores_the_stock_prediction_prompt_file(tmp_path, monkeypatch, capsys):
    """A stale nnUNet_causal_prompt_file (for stock nnUNetv2_predict) does not break nnUNetv2_predict_text."""
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    monkeypatch.setenv("nnUNet_causal_prompt_file", str(tmp_path / "missing.txt"))
    model = make_model_folder(tmp_path)
    assert predict_text(tmp_path, model, "-f", "0") == 0  # empty input folder: nothing to predict


# ------------------------------------------------------------------ nnUNetv2_train x broken dataset.json (trainer set-up)
def broken_dataset_json(how: str) -> dict:
    dj = json.loads(json.dumps(DATASET_JSON))
    if how == "bad prompts":
        dj["prompts"]["tumour"] = ["tumour"]
    elif how == "unknown text encoder":
        dj["text_encoder"] = "no-such-encoder"
    elif how == "missing text encoder":
        dj["text_encoder"] = "st:/nonexistent/encoder"
    elif how == "bad confounder dictionary":
        dj["imaging_family"] = "/nonexistent/confounders.txt"
    return dj


@pytest.mark.parametrize("how,error,text", [
    ("bad prompts", DatasetError, "label 'tumour', which is not in 'labels'"),
    ("unknown text encoder", TextEncoderError, "unknown text encoder 'no-such-encoder'"),
    ("missing text encoder", TextEncoderError, "/nonexistent/encoder"),
    ("bad confounder dictionary", DatasetError, "unknown imaging_family"),
])
def test_trainer_set_up_raises_our_error_types(how, error, text, monkeypatch):
    """What nnUNetv2_train's trainer construction raises (the hook turns these into one line)."""
    from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText

    monkeypatch.delenv("nnUNet_causal_text_encoder", raising=False)
    trainer = object.__new__(nnUNetTrainerCausalText)
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")) as info:
        trainer._plans_with_text_settings(tiny_plans(with_text=False), broken_dataset_json(how))
    assert isinstance(info.value, NnunetCausalError)


# ------------------------------------------------------------------ stock commands, for real (subprocess)
def run_stock(cmd, env):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr


def test_stock_train_with_bad_dataset_json_prompts(nnunet_env):
    pre = Path(nnunet_env["nnUNet_preprocessed"]) / "Dataset001_Tiny2D"
    pre.mkdir(parents=True)
    (pre / "nnUNetPlans.json").write_text(json.dumps(tiny_plans(with_text=False)))
    (pre / "dataset.json").write_text(json.dumps(broken_dataset_json("bad prompts")))
    err = run_stock(["nnUNetv2_train", "1", "2d", "0", "-tr", "nnUNetTrainerText", "-device", "cpu"], nnunet_env)
    assert "nnUNetv2_train: error: " in err and "label 'tumour', which is not in 'labels'" in err


def test_stock_predict_with_a_bad_prompt_file(nnunet_env, tmp_path):
    model = make_model_folder(tmp_path)
    (tmp_path / "in").mkdir()
    bad = tmp_path / "reword.txt"
    bad.write_text("lesion\n")  # the model has two structures
    err = run_stock(["nnUNetv2_predict_from_modelfolder", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                     "-m", str(model), "-f", "0", "-device", "cpu"],
                    dict(nnunet_env, nnUNet_causal_prompt_file=str(bad)))
    assert f"error: {bad} (nnUNet_causal_prompt_file): 1 prompt(s), but the model has 2 trained structures" in err
