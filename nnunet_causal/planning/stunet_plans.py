"""``nnUNetPlans_STUNet{S,B,L,H}.json``: nnU-Net's plans with the architecture swapped for STU-Net.

Every configuration keeps its ``data_identifier``, patch size, spacing and batch size, so the existing
preprocessed data is reused and ``-p nnUNetPlans_STUNetB`` selects the architecture. The number of stages
and the strides / kernel sizes come from the configuration's planned U-Net (they fit its patch size); the
widths are STU-Net's (``base * [1, 2, 4, 8, 16, 16]``, the last width repeated if the plan has more
stages) and so are the residual blocks per stage.
"""
from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

from nnunet_causal.data.raw_dataset import write_json_atomic
from nnunet_causal.errors import DatasetError
from nnunet_causal.networks.stunet import STUNET_SIZES, stunet_arch_kwargs

logger = logging.getLogger(__name__)
STUNET_CLASS = "nnunet_causal.networks.stunet.STUNet"


def stunet_plans(plans: dict, size: str) -> dict:
    """A copy of ``plans`` whose configurations build STU-Net of ``size``."""
    size = size.upper()
    if size not in STUNET_SIZES:
        raise DatasetError(f"unknown STU-Net size '{size}': choose one of {', '.join(STUNET_SIZES)}")
    out = copy.deepcopy(plans)
    out["plans_name"] = f"{plans.get('plans_name', 'nnUNetPlans')}_STUNet{size}"
    for name, cfg in out["configurations"].items():
        arch = cfg.get("architecture")
        if not arch:  # cascade / inheriting configurations only reference others
            continue
        kw = arch["arch_kwargs"]
        dim = len(cfg["patch_size"])
        new = stunet_arch_kwargs(size, dim, kw["strides"], kw["kernel_sizes"])
        arch["network_class_name"] = STUNET_CLASS
        arch["arch_kwargs"] = new
        arch["_kw_requires_import"] = ["conv_op", "norm_op", "dropout_op", "nonlin"]
    return out


def write_stunet_plans(dataset: str, size: str, source_plans: str = "nnUNetPlans") -> Path:
    """Write ``nnUNetPlans_STUNet<size>.json`` beside ``<source_plans>.json`` of a preprocessed dataset."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    pre = os.environ.get("nnUNet_preprocessed")
    if not pre:
        raise DatasetError("nnUNet_preprocessed is not set")
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError as e:
        raise DatasetError(str(e)) from e
    src = Path(pre) / name / f"{source_plans}.json"
    if not src.exists():
        raise DatasetError(f"{src} does not exist: run nnUNetv2_plan_and_preprocess -d {dataset} first")
    plans = stunet_plans(json.loads(src.read_text()), size)
    dst = src.with_name(f"{plans['plans_name']}.json")
    write_json_atomic(dst, plans)
    if size.upper() in ("L", "H"):
        logger.warning("STU-Net-%s is large (%s); the planned batch size is kept -- reduce it in %s if it does not "
                       "fit your GPU", size.upper(), "440 M parameters" if size.upper() == "L" else "1.46 G parameters",
                       dst)
    return dst
