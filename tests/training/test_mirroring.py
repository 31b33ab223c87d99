"""Labels named by their side turn nnU-Net's mirroring off in the text trainers (training and prediction), with
one log line; other datasets keep nnU-Net's mirror axes; a subclass may keep mirroring."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from nnunet_causal.benchmarking.plans_builder import plain_unet_arch, plain_unet_plans
from nnunet_causal.training.text.mirroring import lateral_labels, mirroring_note

DATASET = "Dataset006_Sides"
LATERAL = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "kidney_right": 2, "kidney_left": 3},
           "numTraining": 2, "file_ending": ".nii.gz"}
PLAIN = {**LATERAL, "labels": {"background": 0, "liver": 1, "spleen": 2}}


def test_side_words_are_whole_words_in_any_spelling():
    names = ["background", "kidney_left", "Right-Kidney", "lung right", "adrenal gland LEFT", "Parotid_L", "OpticNrv_R",
             "Lt_Kidney", "leftover", "brightness", "liver", "vertebrae_L5", "L1", "both kidneys"]
    assert lateral_labels(names) == ["kidney_left", "Right-Kidney", "lung right", "adrenal gland LEFT", "Parotid_L",
                                     "OpticNrv_R", "Lt_Kidney"]
    assert mirroring_note(["liver", "spleen"]) == ""
    note = mirroring_note([f"rib_left_{i}" for i in range(1, 9)])
    assert "rib_left_1, rib_left_2" in note and "and 2 more" in note and "without mirroring" in note


def plans() -> dict:
    arch = plain_unet_arch(2, [8, 16, 32], [[1, 1], [2, 2], [2, 2]], conv_per_stage=1)
    intensity = {"0": {"max": 1.0, "mean": 0.0, "median": 0.0, "min": -1.0, "percentile_00_5": -1.0,
                       "percentile_99_5": 1.0, "std": 1.0}}
    p = plain_unet_plans(DATASET, "2d", arch, [32, 32], [32, 32], intensity, "SimpleITKIO", "nnUNetPlans_2d",
                         [999.0, 1.0, 1.0], [1, 32, 32])
    p["configurations"]["2d"]["normalization_schemes"] = ["ZScoreNormalization"]
    p["continue_training"] = False       # nnUNetv2_train sets it (run_training.get_trainer_from_args)
    return p


@pytest.fixture
def env(nnunet_env, monkeypatch):
    from tests.inference.tiny_model import use_fake_encoder

    use_fake_encoder(monkeypatch)
    return nnunet_env


def make(cls, dataset_json):
    return cls(copy.deepcopy(plans()), "2d", 0, copy.deepcopy(dataset_json), torch.device("cpu"))


def log_text(trainer) -> str:
    return Path(trainer.log_file).read_text() if trainer.log_file and Path(trainer.log_file).exists() else ""


@pytest.mark.parametrize("kind", ["text", "causal"])
def test_lateral_labels_train_and_predict_without_mirroring(env, kind):
    from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText

    cls = {"text": nnUNetTrainerText, "causal": nnUNetTrainerCausalText}[kind]
    lateral = make(cls, LATERAL)
    assert lateral.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3] is None
    assert lateral.inference_allowed_mirroring_axes is None
    assert log_text(lateral).count("labels named by their side (kidney_right, kidney_left)") == 1

    plain = make(cls, PLAIN)
    before = log_text(plain).count("without mirroring")  # the two trainers may share one log file
    assert plain.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3] == (0, 1)
    assert plain.inference_allowed_mirroring_axes == (0, 1)
    assert log_text(plain).count("without mirroring") == before


def test_a_subclass_may_keep_mirroring(env):
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText

    class KeepsMirroring(nnUNetTrainerText):
        mirror_lateral_labels = True

    t = make(KeepsMirroring, LATERAL)
    assert t.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3] == (0, 1)
    assert t.inference_allowed_mirroring_axes == (0, 1)


@pytest.mark.parametrize("saved_axes, expected", [((0, 1), (0, 1)), (None, None)])
def test_a_resumed_training_keeps_the_mirroring_of_its_checkpoint(env, tmp_path, saved_axes, expected):
    """--c from a checkpoint that mirrored (trained before the rule) mirrors to its end, with a log line; one
    trained under the rule stays without mirroring."""
    from nnunetv2 import paths

    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText

    data = Path(paths.nnUNet_preprocessed) / DATASET / "nnUNetPlans_2d"
    data.mkdir(parents=True)
    (data / "case_0.b2nd").touch()   # initialize() reads the data format from the file endings only
    first = make(nnUNetTrainerText, LATERAL)
    first.initialize()
    first.inference_allowed_mirroring_axes = saved_axes
    checkpoint = str(tmp_path / "checkpoint_latest.pth")
    first.save_checkpoint(checkpoint)

    resumed = make(nnUNetTrainerText, LATERAL)
    resumed.load_checkpoint(checkpoint)
    assert resumed.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3] == expected
    assert resumed.inference_allowed_mirroring_axes == expected
    kept = log_text(resumed).count("resumed from a checkpoint trained with mirroring (axes (0, 1))")
    assert kept == (1 if saved_axes else 0)
