"""``nnUNetv2_predict_text --resample`` and ``--keep_absent_masks`` through the command line, on a tiny model
whose plans resample (2 mm network spacing, 1 mm images), so that the resampling mode matters."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nnunet_causal.inference.predict_text_entry import main
from nnunet_causal.inference.presence import CALIBRATION_FILE
from nnunet_causal.inference.text_predictor import nnUNetTextPredictor
from tests.inference.test_feature_window import float32_reference  # noqa: F401 - fixture
from tests.inference.tiny_model import find_our_trainers, make_model_folder, use_fake_encoder

EMBED_DIM = 8   # tiny_model's embedding channels: auto takes "features" from 8 prompts on (K + 1 > E)
TWO_PROMPTS = ["lesion", "marker"]
# trained names, their synonyms, a synonym list and open-vocabulary prompts: the random model gives each case
# a label map of 4-5 values (with prompts whose logits are near-tied)
EIGHT_PROMPTS = ["lesion", "marker", "red spot", "blue square", "the lesion|a red spot", "a purple dragon",
                 "a green cube", "a yellow star"]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """(model folder whose network works at 2 mm, input folder of two 1 mm RGB images, run, modes used)."""
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    model = make_model_folder(tmp_path, presence=True)
    plans = json.loads((model / "plans.json").read_text())
    assert plans["nnunet_causal"]["embed_dim"] == EMBED_DIM
    plans["configurations"]["2d"]["spacing"] = [2.0, 2.0]
    (model / "plans.json").write_text(json.dumps(plans))
    (model / "fold_0" / CALIBRATION_FILE).write_text(json.dumps({"threshold": 0.0}))   # every prompt present
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(images / f"c{i}_0000.png")
    modes = []
    real = nnUNetTextPredictor.predict_case_from_features

    def spy(self, *a, **k):
        result = real(self, *a, **k)
        modes.append(result.resample_mode)
        return result
    monkeypatch.setattr(nnUNetTextPredictor, "predict_case_from_features", spy)

    def run(out, prompts, *extra):
        modes.clear()
        code = main(["-i", str(images), "-o", str(tmp_path / out), "-m", str(model), "-f", "0", "-device", "cpu",
                     "-prompts", *prompts, "--open_vocabulary", "--disable_progress_bar", "-npp", "1", "-nps", "1",
                     *extra])
        return code, list(modes)
    return model, tmp_path, run, modes


def outputs(folder, case="c0"):
    seg = np.asarray(Image.open(folder / f"{case}.png"))
    rows = json.loads((folder / f"{case}.prompts.json").read_text())["prompts"]
    return seg, rows


def test_resample_auto_resamples_logits_for_few_prompts_and_embeddings_for_many(cli):
    _, root, run, _ = cli
    assert run("few", TWO_PROMPTS) == (0, ["logits", "logits"])                # default: auto
    assert run("few_auto", TWO_PROMPTS, "--resample", "auto") == (0, ["logits", "logits"])
    assert run("many", EIGHT_PROMPTS, "--resample", "auto") == (0, ["features", "features"])
    assert run("many_logits", EIGHT_PROMPTS, "--resample", "logits") == (0, ["logits", "logits"])
    assert run("few_features", TWO_PROMPTS, "--resample", "features") == (0, ["features", "features"])
    assert np.array_equal(outputs(root / "few")[0], outputs(root / "few_auto")[0])
    seg, rows = outputs(root / "many")
    assert seg.shape == (40, 56) and len(rows) == 8


def test_resample_modes_and_nnunet_logit_path_agree_through_the_cli(cli, monkeypatch, float32_reference):
    """``features``, ``logits`` and nnU-Net's own logit aggregation and export give identical label maps and
    probabilities within 1e-5 (nnU-Net's float16 accumulation switched to float32 for the comparison)."""
    _, root, run, _ = cli
    for mode in ("features", "logits"):
        assert run(mode, EIGHT_PROMPTS, "--resample", mode, "--save_probabilities")[0] == 0
    monkeypatch.setattr(nnUNetTextPredictor, "uses_feature_window", lambda self: False)
    assert run("nnunet", EIGHT_PROMPTS, "--save_probabilities") == (0, [])
    for case in ("c0", "c1"):
        segs = {d: outputs(root / d, case)[0] for d in ("features", "logits", "nnunet")}
        assert segs["features"].shape == (40, 56) and len(np.unique(segs["nnunet"])) >= 4   # not vacuous
        assert np.array_equal(segs["features"], segs["nnunet"]) and np.array_equal(segs["logits"], segs["nnunet"])
        probs = {d: np.load(root / d / f"{case}.npz")["probabilities"] for d in segs}
        assert probs["nnunet"].shape == (9, 1, 40, 56)
        np.testing.assert_allclose(probs["features"], probs["nnunet"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(probs["logits"], probs["nnunet"], rtol=0, atol=1e-5)


def test_resample_features_is_refused_in_one_line_for_a_non_linear_resampling(cli, capsys):
    model, root, run, _ = cli
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["2d"]["resampling_fn_probabilities_kwargs"]["order"] = 3
    (model / "plans.json").write_text(json.dumps(plans))
    capsys.readouterr()
    assert run("cubic", EIGHT_PROMPTS, "--resample", "features") == (2, [])
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("nnUNetv2_predict_text: error: resampling_fn_probabilities resample_data_or_seg_to_"
                              "shape with ") and "is not linear in the data" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not (root / "cubic" / "c0.png").exists()
    assert run("cubic_auto", EIGHT_PROMPTS) == (0, ["logits", "logits"])   # auto falls back to the logits


def test_an_unknown_resample_mode_is_an_argument_error(cli, capsys):
    _, _, run, _ = cli
    with pytest.raises(SystemExit) as stop:
        run("bad", TWO_PROMPTS, "--resample", "nearest")
    assert stop.value.code == 2
    assert "--resample: invalid choice: 'nearest'" in capsys.readouterr().err


def test_keep_absent_masks_keeps_the_voxels_of_prompts_decided_absent(cli):
    model, root, run, _ = cli
    assert run("present", EIGHT_PROMPTS[:3], "--save_binary")[0] == 0                  # threshold 0: all present
    (model / "fold_0" / CALIBRATION_FILE).write_text(json.dumps({"threshold": 1.0}))   # threshold 1: all absent
    assert run("absent", EIGHT_PROMPTS[:3], "--save_binary")[0] == 0
    assert run("kept", EIGHT_PROMPTS[:3], "--save_binary", "--keep_absent_masks")[0] == 0
    for case in ("c0", "c1"):
        present, present_rows = outputs(root / "present", case)
        absent, absent_rows = outputs(root / "absent", case)
        kept, kept_rows = outputs(root / "kept", case)
        assert present.any()                                # not vacuous: the prompts hold voxels when present
        assert not absent.any() and np.array_equal(kept, present)
        assert [r["present"] for r in present_rows] == [True] * 3
        assert [r["present"] for r in absent_rows] == [r["present"] for r in kept_rows] == [False] * 3
        assert [r["mask_suppressed"] for r in absent_rows] == [True] * 3
        assert [r["mask_suppressed"] for r in kept_rows] == [False] * 3
        assert [r["voxel_count"] for r in absent_rows] == [0, 0, 0]
        assert [r["voxel_count"] for r in kept_rows] == [r["voxel_count"] for r in present_rows] == \
            [int((present == r["voxels_label_value"]).sum()) for r in present_rows]
        for p, a, k in zip(present_rows, absent_rows, kept_rows):
            masks = {d: np.asarray(Image.open(root / d / r["binary_mask"])) for d, r in
                     (("present", p), ("absent", a), ("kept", k))}
            assert not masks["absent"].any() and a["binary_voxel_count"] == 0
            assert np.array_equal(masks["kept"], masks["present"])
            assert k["binary_voxel_count"] == p["binary_voxel_count"]
        assert sum(r["binary_voxel_count"] for r in kept_rows) > 0
