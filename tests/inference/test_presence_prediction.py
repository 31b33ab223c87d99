"""Presence at prediction (issue 14): absent prompts get an empty mask and say so, --keep_absent_masks keeps
them, both sliding-window paths score alike, models without a presence head report "unknown"."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nnunet_causal.errors import ModelError
from nnunet_causal.inference.predict_text_entry import main
from nnunet_causal.inference.presence import CALIBRATION_FILE, decide, load_calibrations
from nnunet_causal.inference.text_predictor import nnUNetTextPredictor
from tests.inference.tiny_model import find_our_trainers, make_model_folder, use_fake_encoder


def _run(tmp_path, model, out, *extra):
    from PIL import Image

    inp = tmp_path / "in"
    if not inp.exists():
        inp.mkdir()
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(inp / "c0_0000.png")
    assert main(["-i", str(inp), "-o", str(tmp_path / out), "-m", str(model), "-f", "0", "-device", "cpu",
                 "-prompts", "lesion", "a purple dragon", "--open_vocabulary", "--disable_progress_bar", "-npp", "1",
                 "-nps", "1", *extra]) == 0
    seg = np.asarray(Image.open(tmp_path / out / "c0.png"))
    return seg, json.loads((tmp_path / out / "c0.prompts.json").read_text())["prompts"]


PROPS_2D = {"spacing": [999.0, 1.0, 1.0], "shape_after_cropping_and_before_resampling": (1, 40, 40),
            "shape_before_cropping": (1, 40, 40), "bbox_used_for_cropping": [[0, 1], [0, 40], [0, 40]]}


def test_absent_prompts_get_empty_masks_unless_kept(tmp_path, monkeypatch):
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    model = make_model_folder(tmp_path, presence=True)
    p = nnUNetTextPredictor(device=torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model), (0,))
    p.set_prompts(["lesion", "a purple dragon"], open_vocabulary=True, use_embedding_resolution=False)
    data = torch.randn(3, 1, 40, 40, generator=torch.Generator().manual_seed(0))

    def predict(threshold, keep=False):
        p.presence_calibrations, p.keep_absent_masks = [{"threshold": threshold}], keep
        seg = p.predict_case_from_features(data, PROPS_2D, None)["segmentation"]
        return seg, p.case_presence[f"case_{len(p.case_max_probabilities) - 1}"]

    raw, rows = predict(-0.01)  # every score passes: all present
    assert raw.any() and [r["present"] for r in rows] == [True, True]
    assert all(0 <= r["presence_score"] <= 1 and r["presence_calibration"] == "validation fold" for r in rows)
    scores = [r["presence_score"] for r in rows]
    assert scores[0] != scores[1]
    low, high = (1, 2) if scores[0] < scores[1] else (2, 1)
    seg, rows = predict(sum(scores) / 2)  # the lower-scoring prompt is absent
    assert [r["present"] for r in rows] == [low != 1, low != 2]
    assert not (seg == low).any() and (seg == high).sum() >= (raw == high).sum() and (raw == low).any()
    seg, rows = predict(1.01)  # no score passes: all absent
    assert not seg.any() and [r["present"] for r in rows] == [False, False]
    kept, rows = predict(1.01, keep=True)
    assert np.array_equal(kept, raw) and [r["present"] for r in rows] == [False, False]


def test_sidecar_reports_absent_prompts_and_their_unused_label(tmp_path, monkeypatch):
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    model = make_model_folder(tmp_path, presence=True)
    (model / "fold_0" / CALIBRATION_FILE).write_text(json.dumps({"threshold": 1.01}))
    seg, rows = _run(tmp_path, model, "absent")
    assert not seg.any() and [r["present"] for r in rows] == [False, False]
    assert [r["voxel_count"] for r in rows] == [0, 0] and all(r["mask_suppressed"] for r in rows)
    assert all(r["presence_threshold"] == 1.01 and r["presence_calibration"] == "validation fold" for r in rows)


def test_logit_path_scores_presence_like_the_feature_path(tmp_path, monkeypatch):
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    model = make_model_folder(tmp_path, presence=True)
    p = nnUNetTextPredictor(device=torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model), (0,))
    assert p.presence_calibrations == [None]  # no calibration file: the 0.5 default, said in the sidecar
    p.set_prompts(["lesion", "marker", "kidneys"], open_vocabulary=True, use_embedding_resolution=False)
    data = torch.randn(3, 1, 40, 48)
    from nnunet_causal.inference.feature_window import aggregate_case
    feature_scores = aggregate_case(p, data).presence
    p.predict_logits_from_preprocessed_data(data)  # nnU-Net's path records presence through forward
    logit_rows = p.case_presence["case_0"]
    assert [r["presence_score"] for r in logit_rows] == pytest.approx(feature_scores[0].tolist(), abs=1e-5)
    assert all("uncalibrated" in r["presence_calibration"] for r in logit_rows)


def test_fold_decisions_average_scores_and_thresholds(tmp_path):
    scores = torch.tensor([[0.9, 0.2], [0.7, 0.5]])
    d = decide(scores, [{"threshold": 0.6}, None])
    assert [x.present for x in d] == [True, False] and d[0].threshold == pytest.approx(0.55)
    assert "1 of 2 folds" in d[0].calibration
    (tmp_path / "fold_0").mkdir()
    (tmp_path / "fold_0" / CALIBRATION_FILE).write_text("{}")
    with pytest.raises(ModelError, match="not a presence calibration"):
        load_calibrations(str(tmp_path), [0])
