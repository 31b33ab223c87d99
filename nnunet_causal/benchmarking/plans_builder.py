"""Plans of a PlainConvUNet written by hand, for models that are built without ``nnUNetv2_plan_and_preprocess``
(the 3D prediction benchmark, the tests' tiny model folders). One function, every choice an argument; the
values not given are nnU-Net's defaults for a fresh plan (instance norm, LeakyReLU, 3x3(x3) kernels)."""
from __future__ import annotations

from typing import Dict, Optional, Sequence


def plain_unet_arch(ndim: int, features: Sequence[int], strides: Sequence[Sequence[int]],
                    conv_per_stage: int = 2) -> dict:
    """``arch_kwargs`` of ``dynamic_network_architectures``' PlainConvUNet (2D or 3D)."""
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    if len(strides) != len(features):
        raise ValueError(f"one stride per stage: {len(features)} stages, {len(strides)} strides")
    n = len(features)
    return {"n_stages": n, "features_per_stage": list(features), "conv_op": f"torch.nn.modules.conv.Conv{ndim}d",
            "kernel_sizes": [[3] * ndim] * n, "strides": [list(s) for s in strides],
            "n_conv_per_stage": [conv_per_stage] * n, "n_conv_per_stage_decoder": [conv_per_stage] * (n - 1),
            "conv_bias": True, "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{ndim}d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}


def plain_unet_plans(dataset_name: str, configuration: str, arch: dict, patch_size: Sequence[int],
                     image_size: Sequence[float], intensity: Dict[str, dict], reader_writer: str,
                     data_identifier: str, original_spacing: Sequence[float], original_shape: Sequence[int],
                     batch_size: int = 2, batch_dice: bool = False, extra: Optional[dict] = None) -> dict:
    """A whole plans dict with one configuration (z-score normalisation of every channel, nnU-Net's
    resampling functions, spacing 1). ``intensity``: foreground intensity properties per channel;
    ``extra``: further top-level entries (e.g. ``nnunet_causal``'s text settings)."""
    nd = len(patch_size)
    ch = len(intensity)
    cfg = {"data_identifier": data_identifier, "preprocessor_name": "DefaultPreprocessor", "batch_size": batch_size,
           "patch_size": list(patch_size), "median_image_size_in_voxels": [float(v) for v in image_size],
           "spacing": [1.0] * nd, "normalization_schemes": ["ZScoreNormalization"] * ch,
           "use_mask_for_norm": [False] * ch,
           "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
           "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
           "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
           "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
           "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
           "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                            "arch_kwargs": arch, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
           "batch_dice": batch_dice}
    plans = {"dataset_name": dataset_name, "plans_name": "nnUNetPlans",
             "original_median_spacing_after_transp": list(original_spacing),
             "original_median_shape_after_transp": list(original_shape),
             "image_reader_writer": reader_writer, "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
             "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
             "foreground_intensity_properties_per_channel": intensity, "configurations": {configuration: cfg}}
    plans.update(extra or {})
    return plans
