"""A tiny trained-looking model folder (2D RGB, PlainConvUNet, random weights) and a fake text encoder, so
that prediction-side tests need neither training nor the MiniLM weights."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch

from nnunet_causal.benchmarking.plans_builder import plain_unet_arch, plain_unet_plans

TEXT_DIM = 384
DATASET_JSON = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "lesion": 1, "marker": 2},
                "numTraining": 2, "file_ending": ".png", "imaging_family": "endoscopy",
                "prompts": {"lesion": ["lesion", "red spot"], "marker": ["marker", "blue square"]}}
_CONV = plain_unet_arch(2, [8, 16, 32], [[1, 1], [2, 2], [2, 2]], conv_per_stage=1)
PLANS = plain_unet_plans(
    "Dataset001_Tiny2D", "2d", _CONV, [32, 32], [32, 32],
    {c: {"max": 255.0, "mean": 120.0, "median": 120.0, "min": 0.0, "percentile_00_5": 0.0, "percentile_99_5": 255.0,
         "std": 30.0} for c in ("0", "1", "2")},
    "NaturalImage2DIO", "nnUNetPlans_2d", [999.0, 1.0, 1.0], [1, 32, 32], batch_dice=True)
TEXT_SETTINGS = {"text_encoder": "minilm", "text_encoder_id": "minilm", "text_dim": TEXT_DIM, "embed_dim": 8,
                 "connector": "mlp", "add_background": True,
                 "prompts": {"lesion": ["lesion", "red spot"], "marker": ["marker", "blue square"]},
                 "causal": {"confounders": ["bright white light", "motion blur"], "layers": 1, "alpha": 0.5,
                            "width": 16}}


class FakeEncoder:
    """Deterministic unit vectors from a hash of each text (stands in for MiniLM)."""
    id = "minilm"
    dim = TEXT_DIM

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        rows = []
        for t in texts:
            g = torch.Generator().manual_seed(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
            rows.append(torch.randn(TEXT_DIM, generator=g))
        return torch.nn.functional.normalize(torch.stack(rows), dim=1)


def use_fake_encoder(monkeypatch) -> FakeEncoder:
    import nnunet_causal.text.embedding_cache as cache

    enc = FakeEncoder()
    monkeypatch.setattr(cache, "get_text_encoder", lambda *a, **k: enc)
    return enc


def find_our_trainers(monkeypatch) -> None:
    """Let nnU-Net's trainer lookup (predictor, stock commands) find the package's trainers."""
    from nnunet_causal.env_cli import ext_trainer_folder

    monkeypatch.setenv("nnUNet_extTrainer", str(ext_trainer_folder()))


def tiny_plans(with_text: bool = True, presence: bool = False) -> dict:
    plans = copy.deepcopy(PLANS)
    if with_text:
        plans["nnunet_causal"] = copy.deepcopy(TEXT_SETTINGS)
        if presence:
            plans["nnunet_causal"]["presence"] = {"hidden_dim": 16, "loss_weight": 0.5, "negatives": ["brain"]}
    return plans


def managers(plans: dict | None = None):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(plans or tiny_plans())
    return pm, pm.get_configuration("2d")


def make_model_folder(root: Path, trainer: str = "nnUNetTrainerText", folds=(0,), presence: bool = False) -> Path:
    """``root/model`` with dataset.json, plans.json and ``fold_X/checkpoint_final.pth`` for ``folds``."""
    from nnunet_causal.inference.stock_prompts import caller_sets_prompts
    from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText

    cls = {"nnUNetTrainerText": nnUNetTrainerText, "nnUNetTrainerCausalText": nnUNetTrainerCausalText}[trainer]
    model = Path(root) / "model"
    model.mkdir(parents=True)
    (model / "dataset.json").write_text(json.dumps(DATASET_JSON))
    (model / "plans.json").write_text(json.dumps(tiny_plans(presence=presence)))
    pm, cm = managers(tiny_plans(presence=presence))
    torch.manual_seed(0)        # the same random weights on every machine: tests that need foreground get it
    with caller_sets_prompts():
        net = cls.build_network_architecture(pm, cm, 3, 3, enable_deep_supervision=False)
    for f in folds:
        (model / f"fold_{f}").mkdir()
        torch.save({"network_weights": net.state_dict(), "trainer_name": trainer,
                    "init_args": {"configuration": "2d", "fold": f}, "inference_allowed_mirroring_axes": (0, 1)},
                   model / f"fold_{f}" / "checkpoint_final.pth")
    return model
