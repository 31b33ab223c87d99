"""Training start refuses a cross-modality dataset whose plans clip its channel into the CT window: the text and
causal trainers, and the stock-network counterfactual and GIN trainers, raise one error naming the plans file
before the network is built; z-scored plans train."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from nnunet_causal.benchmarking.plans_builder import plain_unet_arch, plain_unet_plans
from nnunet_causal.data.cross_modality import declare_cross_modality
from nnunet_causal.errors import DatasetError

DATASET = "Dataset005_XMod"
UNDECLARED = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2},
              "numTraining": 2, "file_ending": ".nii.gz", "imaging_family": "ct"}
DECLARED = declare_cross_modality(UNDECLARED)


def plans(scheme: str) -> dict:
    """One-channel 2D plans whose channel is normalised with ``scheme``."""
    arch = plain_unet_arch(2, [8, 16, 32], [[1, 1], [2, 2], [2, 2]], conv_per_stage=1)
    intensity = {"0": {"max": 400.0, "mean": 60.0, "median": 60.0, "min": -1000.0, "percentile_00_5": -57.0,
                       "percentile_99_5": 212.0, "std": 40.0}}
    p = plain_unet_plans(DATASET, "2d", arch, [32, 32], [32, 32], intensity, "SimpleITKIO", "nnUNetPlans_2d",
                         [999.0, 1.0, 1.0], [1, 32, 32])
    p["configurations"]["2d"]["normalization_schemes"] = [scheme]
    p["continue_training"] = False       # nnUNetv2_train sets it (run_training.get_trainer_from_args)
    return p


@pytest.fixture
def env(nnunet_env, monkeypatch):
    """The nnU-Net folders with preprocessed data nnU-Net can name (one .b2nd file) and the fake text encoder."""
    from tests.inference.tiny_model import use_fake_encoder

    use_fake_encoder(monkeypatch)
    data = Path(nnunet_env["nnUNet_preprocessed"]) / DATASET / "nnUNetPlans_2d"
    data.mkdir(parents=True)
    (data / "case_000.b2nd").touch()
    return nnunet_env


def trainer(name: str, plans_dict: dict, dataset_json: dict):
    from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
    from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import nnUNetTrainerCounterfactual
    from nnunet_causal.training.gin.nnUNetTrainerGIN import nnUNetTrainerGIN, nnUNetTrainerGINIPA
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText

    cls = {"text": nnUNetTrainerText, "causal": nnUNetTrainerCausalText,
           "counterfactual": nnUNetTrainerCounterfactual, "gin": nnUNetTrainerGIN, "gin_ipa": nnUNetTrainerGINIPA}[name]
    return cls(copy.deepcopy(plans_dict), "2d", 0, copy.deepcopy(dataset_json), torch.device("cpu"))


@pytest.mark.parametrize("name", ["text", "causal", "counterfactual", "gin", "gin_ipa"])
def test_declared_dataset_with_ct_plans_fails_at_training_start(env, name):
    t = trainer(name, plans("CTNormalization"), DECLARED)
    folder = Path(env["nnUNet_preprocessed"]) / DATASET
    with pytest.raises(DatasetError) as err:
        t.initialize()
    msg = str(err.value)
    assert msg.startswith(f"{folder / 'nnUNetPlans.json'} (configuration 2d) with {folder / 'dataset.json'}: ")
    assert "channel(s) [0] with CTNormalization" in msg
    assert "nnunet_causal cross-modality $nnUNet_raw/DatasetXXX_Name" in msg and "nnUNetv2_plan_and_preprocess" in msg
    assert not t.was_initialized and t.network is None              # before any network is built


@pytest.mark.parametrize("name", ["text", "causal", "counterfactual", "gin", "gin_ipa"])
def test_declared_dataset_with_zscore_plans_initialises(env, name):
    t = trainer(name, plans("ZScoreNormalization"), DECLARED)
    t.initialize()
    assert t.was_initialized and t.num_input_channels == 1
    if name in ("text", "causal"):          # the text-prompted network rank-normalises its input
        from nnunet_causal.training.text.nnUNetTrainerText import unwrap_network

        assert unwrap_network(t.network).input_normalization.mode == "rank"


def test_in_modality_ct_dataset_keeps_the_ct_window(env):
    t = trainer("text", plans("CTNormalization"), UNDECLARED)
    t.initialize()
    assert t.was_initialized
    from nnunet_causal.training.text.nnUNetTrainerText import unwrap_network

    assert unwrap_network(t.network).input_normalization.mode == "none"


def test_raw_dataset_declared_after_planning_fails(env):
    """The preprocessed copy of dataset.json is the old one; the raw one was declared afterwards."""
    raw = Path(env["nnUNet_raw"]) / DATASET
    raw.mkdir(parents=True)
    (raw / "dataset.json").write_text(json.dumps(DECLARED))
    t = trainer("text", plans("CTNormalization"), UNDECLARED)
    with pytest.raises(DatasetError, match=r"nnUNetPlans\.json \(configuration 2d\) with .*"
                                           + f"{DATASET}/dataset.json " + r"\(declared after planning\?\): "
                                           r"dataset.json declares cross-modality training"):
        t.initialize()
    (raw / "dataset.json").write_text("{not json")          # an unreadable raw file is not training's business
    trainer("text", plans("CTNormalization"), UNDECLARED).initialize()

