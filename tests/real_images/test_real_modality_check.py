"""The prediction-time modality check on real scans: a real MR (pyradiomics brain1, Colin27 T1) given to a model
whose plans normalise its channel with CTNormalization is reported once, by case; a real chest CT (pyradiomics
lung1, in HU) is not; a z-scored (cross-modality) model takes the MR silently. The files go through the
predictor's own input check (nnU-Net's SimpleITK reader), as in ``nnUNetv2_predict_text``."""
from __future__ import annotations

import logging

import pytest
import torch

from tests.real_images.real_data import COLIN27, extract_pyradiomics, require

pytest.importorskip("SimpleITK")

LOGGER = "nnunet_causal.inference.modality_check"
DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "lesion": 1}, "numTraining": 1,
                "file_ending": ".nrrd"}
#: an abdominal CT training set's foreground window (what nnU-Net's fingerprint would record)
INTENSITY = {"0": {"max": 1500.0, "mean": 60.0, "median": 58.0, "min": -1000.0, "percentile_00_5": -57.0,
                   "percentile_99_5": 212.0, "std": 45.0}}


@pytest.fixture(scope="module")
def pyradiomics_data(tmp_path_factory):
    return extract_pyradiomics(tmp_path_factory.mktemp("pyradiomics"))


def predictor(scheme: str):
    """A text predictor initialised with one-channel 3D plans normalising the channel with ``scheme``."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_causal.benchmarking.plans_builder import plain_unet_arch, plain_unet_plans
    from nnunet_causal.inference.text_predictor import nnUNetTextPredictor

    arch = plain_unet_arch(3, [8, 16], [[1, 1, 1], [2, 2, 2]], conv_per_stage=1)
    plans = plain_unet_plans("Dataset871_Real", "3d_fullres", arch, [32, 32, 32], [64, 64, 64], INTENSITY,
                             "SimpleITKIO", "nnUNetPlans_3d_fullres", [1.0, 1.0, 1.0], [64, 64, 64])
    plans["configurations"]["3d_fullres"]["normalization_schemes"] = [scheme]
    pm = PlansManager(plans)
    p = nnUNetTextPredictor(perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    p.manual_initialization(torch.nn.Identity(), pm, pm.get_configuration("3d_fullres"), None, DATASET_JSON,
                            "nnUNetTrainerText", None)
    return p


def warnings_for(p, path, caplog) -> list:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        p.check_input_channels([[str(path)]])
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_real_mr_meets_ct_plans_and_is_named(pyradiomics_data, caplog):
    mr = pyradiomics_data / "brain1_image.nrrd"
    messages = warnings_for(predictor("CTNormalization"), mr, caplog)
    assert len(messages) == 1
    msg = messages[0]
    assert msg.startswith(f"case {mr} does not look like CT in Hounsfield units")
    assert "no air (no voxel below -500 HU)" in msg and "range 0..3057" in msg
    assert "CTNormalization" in msg and "-57..212 HU window" in msg and "docs/cross_modality.md" in msg
    assert warnings_for(predictor("ZScoreNormalization"), mr, caplog) == []      # a cross-modality model


def test_real_ct_meets_ct_plans_silently(pyradiomics_data, caplog):
    assert warnings_for(predictor("CTNormalization"), pyradiomics_data / "lung1_image.nrrd", caplog) == []


def test_colin27_t1_meets_ct_plans_and_is_named(caplog):
    require(COLIN27)
    messages = warnings_for(predictor("CTNormalization"), COLIN27, caplog)
    assert len(messages) == 1 and messages[0].startswith(f"case {COLIN27} does not look like CT")
