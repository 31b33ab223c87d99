"""Presence at prediction: absent prompts get an empty mask and say so, --keep_absent_masks keeps them, both
sliding-window paths score alike; a calibration that is missing, unreadable or from another model leaves the
masks unfiltered and says why; images unlike the training images and prompts the model cannot support are
decided absent with a reason; models without a presence head report "unknown"."""
from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nnunet_causal.inference import presence
from nnunet_causal.inference.predict_text_entry import main
from nnunet_causal.inference.presence import CALIBRATION_FILE, decide, domain_statistics, load_calibrations
from nnunet_causal.inference.text_predictor import PredictionOptions, nnUNetTextPredictor
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


def _predictor(model, keep=False):
    p = nnUNetTextPredictor(device=torch.device("cpu"), allow_tqdm=False,
                            options=PredictionOptions(keep_absent_masks=keep))
    p.initialize_from_trained_model_folder(str(model), (0,))
    p.set_prompts(["lesion", "a purple dragon"], open_vocabulary=True, use_embedding_resolution=False)
    return p


def test_absent_prompts_get_empty_masks_unless_kept(tmp_path, monkeypatch):
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    model = make_model_folder(tmp_path, presence=True)
    p, kept_p = _predictor(model), _predictor(model, keep=True)
    data = torch.randn(3, 1, 40, 40, generator=torch.Generator().manual_seed(0))

    def predict(threshold, predictor=p):
        predictor.presence_calibrations = [{"threshold": threshold}]
        result = predictor.predict_case(data, PROPS_2D)
        return result.segmentation, result.presence

    raw, rows = predict(0.0)  # every score passes: all present
    assert raw.any() and [r["present"] for r in rows] == [True, True]
    assert all(0 <= r["presence_score"] <= 1 and r["presence_calibration"] == "validation fold" for r in rows)
    scores = [r["presence_score"] for r in rows]
    assert scores[0] != scores[1]
    low, high = (1, 2) if scores[0] < scores[1] else (2, 1)
    seg, rows = predict(sum(scores) / 2)  # the lower-scoring prompt is absent
    assert [r["present"] for r in rows] == [low != 1, low != 2]
    assert rows[low - 1]["presence_reason"] == "presence score below the calibrated threshold"
    assert not (seg == low).any() and (seg == high).sum() >= (raw == high).sum() and (raw == low).any()
    seg, rows = predict(1.0)  # no score passes: all absent
    assert not seg.any() and [r["present"] for r in rows] == [False, False]
    kept, rows = predict(1.0, kept_p)
    assert np.array_equal(kept, raw) and [r["present"] for r in rows] == [False, False]


def test_sidecar_reports_absent_prompts_and_their_unused_label(tmp_path, monkeypatch):
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    model = make_model_folder(tmp_path, presence=True)
    (model / "fold_0" / CALIBRATION_FILE).write_text(json.dumps({"threshold": 1.0}))
    seg, rows = _run(tmp_path, model, "absent")
    assert not seg.any() and [r["present"] for r in rows] == [False, False]
    assert [r["voxel_count"] for r in rows] == [0, 0] and all(r["mask_suppressed"] for r in rows)
    assert all(r["presence_threshold"] == 1.0 and r["presence_calibration"] == "validation fold" for r in rows)


def _other_model_calibration(model) -> dict:
    return {"threshold": 1.0, "model": {"dataset": "Dataset001_Tiny2D", "prompts": ["lesion", "marker"],
                                        "presence_weights": "0123456789abcdef"}}


@pytest.mark.parametrize("content,what", [
    (None, "missing"),
    (b"\x89PNG\x00 not json", "not a readable presence calibration"),
    (json.dumps({"threshold": "high"}).encode(), "not a readable presence calibration"),
    (json.dumps({"threshold": 1.0, "model": {"dataset": "Dataset999_Other"}}).encode(), "Dataset999_Other"),
    (json.dumps({"threshold": 1.0, "model": {"prompts": ["liver"]}}).encode(), "prompts ['liver']"),
    ("weights", "other presence-head weights"),
])
def test_bad_calibration_leaves_masks_unfiltered_and_says_why(tmp_path, monkeypatch, caplog, content, what):
    """Missing, unreadable, malformed or another model's calibration: a warning naming the file, every
    ``present`` null, the masks as without presence, and the sidecar naming the file and the problem."""
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    model = make_model_folder(tmp_path, presence=True)
    path = model / "fold_0" / CALIBRATION_FILE
    if content == "weights":
        content = json.dumps(_other_model_calibration(model)).encode()
    if content is not None:
        path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="nnunet_causal.inference.presence"):
        seg, rows = _run(tmp_path, model, "bad")
    assert any(str(path) in r.getMessage() and what in r.getMessage() for r in caplog.records)
    assert [r["present"] for r in rows] == [None, None] and not any(r["mask_suppressed"] for r in rows)
    assert all(str(path) in r["presence_calibration"] and what in r["presence_calibration"] for r in rows)
    assert all("masks are not filtered" in r["presence_calibration"] for r in rows)
    # the same masks as a prediction that keeps absent masks (a calibration every score fails)
    path.write_text(json.dumps({"threshold": 1.0}))
    kept, kept_rows = _run(tmp_path, model, "kept", "--keep_absent_masks")
    assert np.array_equal(seg, kept) and [r["present"] for r in kept_rows] == [False, False]


def test_calibration_of_this_model_is_accepted(tmp_path, monkeypatch):
    from nnunet_causal.inference.presence import model_identity

    find_our_trainers(monkeypatch)
    model = make_model_folder(tmp_path, presence=True)
    weights = torch.load(model / "fold_0" / "checkpoint_final.pth", weights_only=False)["network_weights"]
    plans = json.loads((model / "plans.json").read_text())
    (model / "fold_0" / CALIBRATION_FILE).write_text(json.dumps(
        {"threshold": 0.4, "model": model_identity(plans, "2d", weights)}))
    cal = load_calibrations(str(model), [0], [weights])
    assert cal[0]["threshold"] == 0.4 and "problem" not in cal[0]


def test_logit_path_scores_presence_like_the_feature_path(tmp_path, monkeypatch):
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    model = make_model_folder(tmp_path, presence=True)
    p = nnUNetTextPredictor(device=torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model), (0,))
    assert "missing" in p.presence_calibrations[0]["problem"]  # no calibration file: said, not defaulted
    p.set_prompts(["lesion", "marker", "kidneys"], open_vocabulary=True, use_embedding_resolution=False)
    data = torch.randn(3, 1, 40, 48)
    from nnunet_causal.inference.feature_window import aggregate_case
    feature_scores = aggregate_case(p, data).presence
    _, logit_scores = p.logits_and_presence(data)  # nnU-Net's path records presence through forward
    assert logit_scores[0].tolist() == pytest.approx(feature_scores[0].tolist(), abs=1e-5)


def test_fold_decisions_average_scores_and_thresholds(tmp_path):
    scores = torch.tensor([[0.9, 0.2], [0.7, 0.5]])
    d = decide(scores, [{"threshold": 0.6}, {"threshold": 0.5}])
    assert [x.present for x in d] == [True, False] and d[0].threshold == pytest.approx(0.55)
    d = decide(scores, [{"threshold": 0.6}, {"problem": "fold_1/presence_calibration.json: missing"}])
    assert [x.present for x in d] == [None, None] and "fold_1/presence_calibration.json" in d[0].calibration
    (tmp_path / "fold_0").mkdir()
    (tmp_path / "fold_0" / CALIBRATION_FILE).write_text("{}")
    assert "not a readable presence calibration" in load_calibrations(str(tmp_path), [0])[0]["problem"]


def test_images_unlike_the_training_images_are_decided_absent():
    rng = torch.Generator().manual_seed(0)
    validation = [torch.randn(20, 16, generator=rng) for _ in range(3)]
    stats = domain_statistics(validation)
    assert stats["threshold"] == pytest.approx(2 * max(stats["case_distances"]), rel=1e-3)
    cal = [{"threshold": 0.3, "domain": stats}]
    near = presence.domain_ratio([torch.randn(20, 16, generator=rng)], cal)
    far = presence.domain_ratio([5 + 4 * torch.randn(20, 16, generator=rng)], cal)
    assert near < 1 < far
    scores = torch.tensor([[0.9, 0.1]])
    assert [x.present for x in decide(scores, cal, near)] == [True, False]
    out = decide(scores, cal, far)
    assert [x.present for x in out] == [False, False] and all("unlike this model's training" in x.reason for x in out)
    assert out[0].as_record()["presence_domain_ratio"] == pytest.approx(far, abs=1e-3)
    # two folds: the pooled vectors of fold 0, then fold 1 (as the window records them)
    assert presence.domain_ratio([torch.zeros(20, 16), torch.zeros(20, 16)], cal * 2) is not None
    assert presence.domain_ratio([torch.zeros(20, 16)], [{"threshold": 0.3}]) is None  # old calibration: no check


def test_one_validation_patch_gives_no_domain_rule_instead_of_a_zero_limit():
    """One validation patch is at distance 0 from itself: a zero limit would put the training image itself out of
    domain. Below MIN_DOMAIN_PATCHES the rule is off (threshold None, no ratio), and the score decides."""
    patch = torch.randn(1, 16, generator=torch.Generator().manual_seed(1))
    stats = domain_statistics([patch])
    assert stats["threshold"] is None and stats["rule"].startswith("off: 1 validation patch")
    cal = [{"threshold": 0.3, "domain": stats}]
    assert presence.domain_ratio([patch + 1e-4], cal) is None
    assert [x.present for x in decide(torch.tensor([[0.9, 0.1]]), cal, None)] == [True, False]
    enough = domain_statistics([torch.randn(presence.MIN_DOMAIN_PATCHES, 16)])
    assert enough["threshold"] is not None


def test_pooled_features_are_recorded_only_inside_the_block(monkeypatch):
    from nnunet_causal.inference.stock_prompts import caller_sets_prompts
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText
    from tests.inference.tiny_model import managers, tiny_plans

    pm, cm = managers(tiny_plans(presence=True))
    with caller_sets_prompts():
        net = nnUNetTrainerText.build_network_architecture(pm, cm, 3, 3, enable_deep_supervision=False).eval()
    net.presence_recorder = []
    with presence.recording_pooled_features(net) as pooled, torch.no_grad():
        net(torch.randn(2, 3, 32, 32))
    net(torch.randn(2, 3, 32, 32))
    assert len(pooled) == 1 and tuple(pooled[0].shape) == (2, 16)


def test_prompts_of_another_body_region_are_not_supported(monkeypatch):
    """With region data in the knowledge base, an open-vocabulary prompt of a region none of the trained
    structures belongs to is decided absent with that reason; trained prompts are always supported."""
    from nnunet_causal.text import vocabulary

    real = vocabulary.load_vocabulary

    def use_regions(regions):
        def load(name="all"):  # a new Vocabulary: the loader's cached one stays as it is
            vocab = real(name)
            return vocabulary.Vocabulary({n: SimpleNamespace(**{**vars(t), "region": regions.get(n)})
                                          for n, t in vocab.terms.items()}, vocab.bases, vocab.groups, vocab.labels)
        monkeypatch.setattr(vocabulary, "load_vocabulary", load)
    use_regions({"brain": "head", "liver": "abdomen", "spleen": "abdomen", "gallbladder": "abdomen",
                 "polyp": "whole_body"})
    why = presence.prompt_support(["brain"], "open_vocabulary", ["liver", "spleen"])
    assert "head" in why and "abdomen" in why
    assert presence.prompt_support(["gallbladder"], "open_vocabulary", ["liver", "spleen"]) is None
    assert presence.prompt_support(["liver"], "trained", ["liver", "spleen"]) is None
    assert presence.prompt_support(["liver"], "open_vocabulary", ["polyp"]) is None  # whole body: no verdict
    assignments = [SimpleNamespace(terms=["liver"], source="trained", trained_structures=["liver"]),
                   SimpleNamespace(terms=["brain"], source="open_vocabulary", trained_structures=[])]
    rows = presence.case_records(torch.tensor([[0.9, 0.9]]), [{"threshold": 0.5, "model": {"prompts": [
        "liver", "spleen"]}}], None, assignments)
    assert [r["present"] for r in rows] == [True, False] and "not supported" in rows[1]["presence_reason"]
    use_regions({})  # without region data the presence score decides
    assert presence.prompt_support(["brain"], "open_vocabulary", ["liver", "spleen"]) is None
