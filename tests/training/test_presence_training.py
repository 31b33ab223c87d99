"""Presence head training: negatives, threshold choice, the loss learns presence; the default text and
causal trainers (stock ``nnUNetv2_train``) write the head and a calibration that ``nnUNetv2_predict_text``
uses; the ``_NoPresence`` ablation trains without them; old and new checkpoints load strictly."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_causal.training.text.presence import PresenceLoss, choose_threshold, negative_prompts


def test_negative_prompts_share_no_word_with_the_dataset():
    prompts = {"liver": ["liver", "hepatic parenchyma"], "kidney_left": ["left kidney"]}
    free = negative_prompts(prompts, 100000)   # every knowledge-base structure free of the dataset's words
    assert "brain" in free and "heart" in free and "liver" not in free
    neg = negative_prompts(prompts, 200)
    assert len(neg) == 200 and set(neg) <= set(free)
    assert not any(w in n.split() for n in neg for w in ("liver", "kidney", "hepatic"))
    few = negative_prompts({"liver": ["liver"]}, 5)
    assert len(few) == 5 and few == negative_prompts({"liver": ["liver"]}, 5)


def test_threshold_keeps_the_present_structures_with_a_margin():
    cal = choose_threshold([0.9, 0.8, 0.3, 0.1, 0.2], [True, True, False, False, False])
    assert 0.3 < cal["threshold"] < 0.8 and cal["kept_present"] == 1 and cal["masked_absent"] == 1
    # a positive scoring below two negatives is still kept: recall first, at the negatives' cost
    cal = choose_threshold([0.9, 0.2, 0.5, 0.4, 0.1], [True, True, False, False, False])
    assert 0.1 < cal["threshold"] < 0.2 and cal["kept_present"] == 1 and cal["masked_absent"] == pytest.approx(1 / 3)
    assert choose_threshold([0.4, 0.6], [True, True])["threshold"] == 0.5  # one class only: the default


def _batch(rng, n, size=32):
    img = rng.normal(0, 0.3, (n, 3, size, size)).astype(np.float32)
    seg = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        if rng.random() < 0.5:
            x, y = rng.integers(2, size - 10, 2)
            img[i, 0, x:x + 8, y:y + 8] += 2
            seg[i, 0, x:x + 8, y:y + 8] = 1
        if rng.random() < 0.5:
            x, y = rng.integers(2, size - 6, 2)
            img[i, 2, x:x + 4, y:y + 4] += 2
            seg[i, 0, x:x + 4, y:y + 4] = 2
    return torch.from_numpy(img), torch.from_numpy(seg)


def test_presence_loss_learns_which_structures_are_in_the_patch():
    from nnunet_causal.inference.stock_prompts import caller_sets_prompts
    from nnunet_causal.training.losses import PromptDiceBCELoss
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText
    from tests.inference.tiny_model import managers, tiny_plans

    torch.manual_seed(0)
    pm, cm = managers(tiny_plans(presence=True))
    with caller_sets_prompts():
        net = nnUNetTrainerText.build_network_architecture(pm, cm, 3, 3, enable_deep_supervision=False)
    text = torch.nn.functional.normalize(torch.randn(5, 384), dim=1)
    net.set_prompt_embeddings(text[:2])
    net.presence_negatives = text[2:]  # three structures the data never holds
    loss = PresenceLoss(PromptDiceBCELoss(2), lambda: net, 1.0, lambda: None)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    rng = np.random.default_rng(0)
    net.train()
    for _ in range(130):
        x, y = _batch(rng, 8)
        opt.zero_grad()
        loss(net(x), y).backward()
        opt.step()
    x, y = _batch(np.random.default_rng(1), 48)
    net.eval()
    net.set_inference_prompts(text)
    net.presence_recorder = []
    with torch.no_grad():
        net(x)
    scores = torch.sigmoid(net.presence_recorder[0])
    truth = torch.stack([(y[:, 0] == v).flatten(1).any(1) for v in (1, 2)], 1)
    assert ((scores[:, :2] > 0.5) == truth).float().mean() >= 0.9
    assert (scores[:, 2:] < 0.5).float().mean() >= 0.95


NO_PRESENCE_TRAINER = '''
import torch
from nnunet_causal.training.text.variants import nnUNetTrainerText_NoPresence


class nnUNetTrainerText_NoPresence_Tiny(nnUNetTrainerText_NoPresence):
    text_embed_dim = 8

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1
'''


def _train(nnunet_env, trainer: str) -> Path:
    for cmd, env in ((["nnUNetv2_plan_and_preprocess", "-d", "1", "-c", "2d", "-np", "1", "-npfp", "1"], nnunet_env),
                     (["nnUNetv2_train", "1", "2d", "0", "-tr", trainer, "-device", "cpu"],
                      dict(nnunet_env, nnUNet_n_proc_DA="0"))):
        if cmd[0] == "nnUNetv2_plan_and_preprocess" and (Path(nnunet_env["nnUNet_preprocessed"]) /
                                                          "Dataset001_Tiny2D" / "nnUNetPlans.json").is_file():
            continue
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return Path(nnunet_env["nnUNet_results"]) / "Dataset001_Tiny2D" / f"{trainer}__nnUNetPlans__2d"


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["nnUNetTrainerText_Tiny", "nnUNetTrainerCausalText_Tiny"])
def test_default_trainers_save_presence_head_and_calibration(nnunet_env, tmp_path, trainer):
    """The default text and causal trainers (stock nnUNetv2_train) train the head, write its calibration, and
    the predictor's strict load takes the checkpoint; absent prompts get no voxels and ``present: false``."""
    from tests.conftest import make_tiny_2d_dataset
    from nnunet_causal.inference.predict_text_entry import main
    from nnunet_causal.inference.presence import presence_weights_digest

    raw = make_tiny_2d_dataset(Path(nnunet_env["nnUNet_raw"]), n_train=6)
    model = _train(nnunet_env, trainer)
    plans = json.loads((model / "plans.json").read_text())["nnunet_causal"]
    assert plans["presence"]["hidden_dim"] == 64 and len(plans["presence"]["negatives"]) == 32
    cal = json.loads((model / "fold_0" / "presence_calibration.json").read_text())
    assert 0 <= cal["threshold"] <= 1 and cal["negative_texts"] == 32 and cal["cases"] >= 1
    assert cal["domain"]["threshold"] > 0 and len(cal["domain"]["mean"]) == 2 * 8
    ckpt = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert any(k.startswith("presence.") for k in ckpt["network_weights"])
    assert cal["model"]["presence_weights"] == presence_weights_digest(ckpt["network_weights"])
    assert cal["model"]["prompts"] == ["lesion", "marker"]

    out = tmp_path / "pred"
    assert main(["-i", str(raw / "imagesTs"), "-o", str(out), "-m", str(model), "-f", "0", "-device", "cpu",
                 "-prompts", "lesion", "brain", "--open_vocabulary", "--disable_progress_bar", "-npp", "1"]) == 0
    for sidecar in out.glob("*.prompts.json"):
        rows = json.loads(sidecar.read_text())["prompts"]
        assert [type(r["present"]) for r in rows] == [bool, bool]
        assert all(r["presence_threshold"] == pytest.approx(cal["threshold"], abs=1e-6) or r.get("presence_reason")
                   for r in rows)
        assert all(r["voxel_count"] == 0 for r in rows if r["present"] is False)
    # a threshold no score reaches: every prompt absent, nothing in the label map
    (model / "fold_0" / "presence_calibration.json").write_text(json.dumps({**cal, "threshold": 1.0}))
    out = tmp_path / "pred_absent"
    assert main(["-i", str(raw / "imagesTs"), "-o", str(out), "-m", str(model), "-f", "0", "-device", "cpu",
                 "-prompts", "lesion", "marker", "--disable_progress_bar", "-npp", "1"]) == 0
    from PIL import Image
    for sidecar in out.glob("*.prompts.json"):
        rows = json.loads(sidecar.read_text())["prompts"]
        assert [r["present"] for r in rows] == [False, False] and [r["voxel_count"] for r in rows] == [0, 0]
        assert not np.asarray(Image.open(out / sidecar.name.replace(".prompts.json", ".png"))).any()


@pytest.mark.slow
def test_no_presence_ablation_trains_without_head_and_predicts_unknown(nnunet_env, tmp_path):
    from tests.conftest import make_tiny_2d_dataset
    from nnunet_causal.inference.predict_text_entry import main

    (tmp_path / "extra_trainers" / "tiny_no_presence.py").write_text(NO_PRESENCE_TRAINER)
    raw = make_tiny_2d_dataset(Path(nnunet_env["nnUNet_raw"]), n_train=6)
    model = _train(nnunet_env, "nnUNetTrainerText_NoPresence_Tiny")
    assert "presence" not in json.loads((model / "plans.json").read_text())["nnunet_causal"]
    assert not (model / "fold_0" / "presence_calibration.json").exists()
    ckpt = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert not any(k.startswith("presence.") for k in ckpt["network_weights"])
    out = tmp_path / "pred"
    assert main(["-i", str(raw / "imagesTs"), "-o", str(out), "-m", str(model), "-f", "0", "-device", "cpu",
                 "-prompts", "lesion", "--disable_progress_bar", "-npp", "1"]) == 0
    rows = json.loads(next(out.glob("*.prompts.json")).read_text())["prompts"]
    assert rows[0]["present"] is None and "no presence head" in rows[0]["presence_calibration"]


def test_presence_is_the_default_of_every_text_trainer_and_the_ablations_remove_it():
    from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
    from nnunet_causal.training.causal.variants import nnUNetTrainerCausalText_NoPresence
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText, nnUNetTrainerTextPresence
    from nnunet_causal.training.text.variants import nnUNetTrainerText_NoPresence

    for cls in (nnUNetTrainerText, nnUNetTrainerCausalText, nnUNetTrainerTextPresence):
        assert cls.presence_hidden_dim == 64, cls
    assert nnUNetTrainerText_NoPresence.presence_hidden_dim is None
    assert nnUNetTrainerCausalText_NoPresence.presence_hidden_dim is None
    assert issubclass(nnUNetTrainerTextPresence, nnUNetTrainerText)  # the deprecated name keeps its folders


@pytest.mark.parametrize("presence", [False, True])
def test_strict_load_of_models_with_and_without_head(presence):
    """nnU-Net's predictor loads ``network_weights`` strictly: a network rebuilt from plans with (without) the
    ``"presence"`` entry takes a state_dict with (without) the head, and not the other kind."""
    from nnunet_causal.inference.stock_prompts import caller_sets_prompts
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText
    from tests.inference.tiny_model import managers, tiny_plans

    def build(with_head):
        pm, cm = managers(tiny_plans(presence=with_head))
        with caller_sets_prompts():
            return nnUNetTrainerText.build_network_architecture(pm, cm, 3, 3, enable_deep_supervision=False)
    saved = build(presence).state_dict()
    assert any(k.startswith("presence.") for k in saved) == presence
    build(presence).load_state_dict(saved)   # strict
    with pytest.raises(RuntimeError):
        build(not presence).load_state_dict(saved)


def test_calibration_scores_validation_cases_and_negative_texts():
    from types import SimpleNamespace

    from nnunet_causal.inference.stock_prompts import caller_sets_prompts
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText
    from nnunet_causal.training.text.presence import calibrate_presence
    from tests.inference.tiny_model import DATASET_JSON, managers, tiny_plans

    torch.manual_seed(0)
    pm, cm = managers(tiny_plans(presence=True))
    with caller_sets_prompts():
        net = nnUNetTrainerText.build_network_architecture(pm, cm, 3, 3, enable_deep_supervision=False)
    net.presence_negatives = torch.nn.functional.normalize(torch.randn(2, 384), dim=1)
    seg = np.zeros((1, 1, 40, 40), np.int8)
    seg[0, 0, 5:9, 5:9] = 1  # case "a" holds lesion only, case "b" nothing
    cases = {"a": seg, "b": np.zeros_like(seg)}

    class Dataset:
        def __init__(self, folder, keys, folder_with_segs_from_previous_stage=None):
            self.keys = keys

        def load_case(self, key):
            return np.random.default_rng(0).normal(size=(3, 1, 40, 40)).astype(np.float32), cases[key], None, {}
    trainer = SimpleNamespace(network=net, plans_manager=pm, configuration_manager=cm, dataset_json=DATASET_JSON,
                              device=torch.device("cpu"), inference_allowed_mirroring_axes=(0, 1),
                              do_split=lambda: ([], ["a", "b"]), dataset_class=Dataset, preprocessed_dataset_folder="",
                              folder_with_segs_from_previous_stage=None, configuration_name="2d")
    cal = calibrate_presence(trainer, net)
    # 2 cases x (2 trained prompts + 2 negative texts): one positive (a, lesion), seven negatives
    assert (cal["cases"], cal["prompts"], cal["negative_texts"], cal["positives"], cal["negatives"]) == (2, 2, 2, 1, 7)
    assert 0 < cal["threshold"] < 1 and net.inference_embeddings is None  # the network is left as it was
    # domain statistics: one pooled [mean F, max F] vector per dimension, one distance per validation case
    assert len(cal["domain"]["mean"]) == 2 * 8 and len(cal["domain"]["case_distances"]) == 2
    assert cal["domain"]["threshold"] == pytest.approx(2 * max(cal["domain"]["case_distances"]), rel=1e-3)
    assert cal["model"]["prompts"] == ["lesion", "marker"] and len(cal["model"]["presence_weights"]) == 16
