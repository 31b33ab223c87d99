"""A tiny 3D CT model folder (PlainConvUNet, random weights, one channel, .nii.gz), built like the 2D one of
``tests/inference/tiny_model.py``, for prediction from DICOM series."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from tests.inference.tiny_model import tiny_plans

DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "lesion": 1, "marker": 2},
                "numTraining": 2, "file_ending": ".nii.gz", "imaging_family": "ct",
                "prompts": {"lesion": ["lesion", "red spot"], "marker": ["marker", "blue square"]}}


def plans_3d() -> dict:
    plans = tiny_plans()
    cfg = plans["configurations"].pop("2d")
    arch = cfg["architecture"]["arch_kwargs"]
    arch.update(conv_op="torch.nn.modules.conv.Conv3d", norm_op="torch.nn.modules.instancenorm.InstanceNorm3d",
                kernel_sizes=[[3, 3, 3]] * 3, strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]])
    cfg.update(patch_size=[16, 16, 16], spacing=[2.0, 1.0, 1.0], median_image_size_in_voxels=[16.0, 24.0, 24.0],
               normalization_schemes=["ZScoreNormalization"], use_mask_for_norm=[False],
               data_identifier="nnUNetPlans_3d_fullres")
    plans["configurations"]["3d_fullres"] = cfg
    plans["image_reader_writer"] = "SimpleITKIO"
    plans["original_median_spacing_after_transp"] = [2.0, 1.0, 1.0]
    plans["foreground_intensity_properties_per_channel"] = {"0": copy.deepcopy(
        plans["foreground_intensity_properties_per_channel"]["0"])}
    return plans


def make_model_folder_3d(root: Path) -> Path:
    """``root/model`` with dataset.json, plans.json and ``fold_0/checkpoint_final.pth``."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunet_causal.inference.stock_prompts import caller_sets_prompts
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText

    model = Path(root) / "model"
    (model / "fold_0").mkdir(parents=True)
    plans = plans_3d()
    (model / "dataset.json").write_text(json.dumps(DATASET_JSON))
    (model / "plans.json").write_text(json.dumps(plans))
    pm = PlansManager(plans)
    torch.manual_seed(0)
    with caller_sets_prompts():
        net = nnUNetTrainerText.build_network_architecture(pm, pm.get_configuration("3d_fullres"), 1, 3,
                                                           enable_deep_supervision=False)
    torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainerText",
                "init_args": {"configuration": "3d_fullres", "fold": 0}, "inference_allowed_mirroring_axes": (0, 1, 2)},
               model / "fold_0" / "checkpoint_final.pth")
    return model
