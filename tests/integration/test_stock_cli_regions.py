"""A region-based (BraTS-like) text model with the cross-attention connector, trained and predicted through the
stock commands and ``nnUNetv2_predict_text`` (tiny 2D data: a lesion whose core is a nested region)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import _disk, read_json
from tests.integration.test_stock_cli_text import run

pytestmark = pytest.mark.slow

TRAINER = "nnUNetTrainerText_CrossAttention_TinyRegions"
TRAINER_MODULE = f'''
import torch
from nnunet_causal.training.text.variants import nnUNetTrainerText_CrossAttentionConnector


class {TRAINER}(nnUNetTrainerText_CrossAttentionConnector):
    """2 epochs of 3 iterations; the final validation is left to prediction below (saves a CPU minute)."""
    text_embed_dim = 8

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 1

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("final validation skipped (test trainer)")
'''


def make_region_dataset(raw_root: Path, n_train: int = 8, n_test: int = 1, size: int = 32) -> Path:
    """RGB frames with a red lesion (label 1) around a dark core (label 2); regions: lesion = {1, 2},
    lesion core = {2}, as BraTS' whole tumour / tumour core."""
    from PIL import Image

    from nnunet_causal.data.raw_dataset import write_dataset_json

    rng = np.random.default_rng(0)
    folder = raw_root / "Dataset003_TinyRegions"
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    domains = {}
    for i in range(n_train + n_test):
        img = rng.normal(120, 10, (size, size, 3))
        c = rng.integers(10, size - 10, 2)
        lesion, core = _disk((size, size), c, rng.integers(6, 9)), _disk((size, size), c, 3)
        img[lesion], img[core] = (200, 80, 80), (90, 20, 20)
        seg = np.zeros((size, size), np.uint8)
        seg[lesion], seg[core] = 1, 2
        split = "Tr" if i < n_train else "Ts"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"images{split}" / f"r_{i:03d}_0000.png")
        Image.fromarray(seg).save(folder / f"labels{split}" / f"r_{i:03d}.png")
        domains[f"r_{i:03d}"] = {"domain": "site0", "modality": "endoscopy", "style": "white light"}
    write_dataset_json(folder, {"0": "R", "1": "G", "2": "B"}, {"background": 0, "lesion": [1, 2], "lesion_core": 2},
                       n_train, ".png", prompts={"lesion": ["lesion", "red spot"], "lesion_core": ["lesion core"]},
                       domains=domains, imaging_family="endoscopy", regions_class_order=[1, 2])
    return folder


def test_region_model_with_cross_attention_connector(nnunet_env, tmp_path):
    from PIL import Image

    raw = make_region_dataset(Path(nnunet_env["nnUNet_raw"]))
    extra = Path(nnunet_env["nnUNet_extTrainer"].split(os.pathsep)[-1])
    (extra / "tiny_region_trainers.py").write_text(TRAINER_MODULE)
    run(["nnUNetv2_plan_and_preprocess", "-d", "3", "-c", "2d", "-np", "1", "-npfp", "1"], nnunet_env)
    run(["nnUNetv2_train", "3", "2d", "0", "-tr", TRAINER, "-device", "cpu"], dict(nnunet_env, nnUNet_n_proc_DA="0"))
    model = Path(nnunet_env["nnUNet_results"]) / "Dataset003_TinyRegions" / f"{TRAINER}__nnUNetPlans__2d"
    settings = read_json(model / "plans.json")["nnunet_causal"]
    assert settings["connector"] == "cross_attention"
    assert list(settings["prompts"]) == ["lesion", "lesion_core"]  # one sigmoid output per region
    ckpt = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    weights = ckpt["network_weights"]
    assert weights["connector.attention.in_proj_weight"].shape == (3 * 8, 8)
    assert weights["prompt_embeddings"].shape == (2, 384)
    assert all(np.isfinite(ckpt["logging"]["train_losses"]))

    # stock prediction: nnU-Net turns the region outputs into a label map by regions_class_order
    out = tmp_path / "pred_stock"
    run(["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(out), "-d", "3", "-c", "2d", "-f", "0",
         "-tr", TRAINER, "-device", "cpu", "--save_probabilities", "-npp", "1", "-nps", "1"], nnunet_env)
    seg = np.asarray(Image.open(out / "r_008.png"))
    probs = np.load(out / "r_008.npz")["probabilities"]
    assert seg.shape == (32, 32) and set(np.unique(seg)) <= {0, 1, 2}
    assert probs.shape[0] == 2 and 0 <= probs.min() and probs.max() <= 1  # sigmoid per region, no background
    # label 2 (core) wherever the core region fires, 1 where only the lesion region does
    core, lesion = probs[1].reshape(seg.shape) > 0.5, probs[0].reshape(seg.shape) > 0.5
    assert np.array_equal(seg == 2, core) and np.array_equal(seg == 1, lesion & ~core)

    # text prompts: each region by its name or synonym, binary masks are the region's own sigmoid
    out_t = tmp_path / "pred_text"
    run(["nnUNetv2_predict_text", "-i", str(raw / "imagesTs"), "-o", str(out_t), "-d", "3", "-c", "2d", "-f", "0",
         "-tr", TRAINER, "-device", "cpu", "-prompts", "lesion", "lesion core", "--save_binary",
         "-npp", "1", "-nps", "1"], nnunet_env)
    side = read_json(out_t / "r_008.prompts.json")
    assert [p["trained_structures"] for p in side["prompts"]] == [["lesion"], ["lesion_core"]]
    for p, region in zip(side["prompts"], (lesion, core)):
        mask = np.asarray(Image.open(out_t / p["binary_mask"])) > 0
        assert np.array_equal(mask, region), p["prompt"]
