"""``nnUNetPlans_STUNet{S,B,L,H}.json``: nnU-Net's plans with the architecture swapped for STU-Net.

Every configuration keeps its ``data_identifier``, spacing and batch size, so the existing preprocessed
data is reused and ``-p nnUNetPlans_STUNetB`` selects the architecture. The architecture is STU-Net's own
(Huang et al. 2023; its trainers' ``process_plans``), not the planned U-Net's: always 6 stages, 3x3x3
kernels (3x3 in 2D), the configuration's first 5 pooling strides padded with 1. Released checkpoints load
into it on any dataset, and the parameter count is the published one (S 14.6 M, B 58.26 M, L 440.30 M,
H 1457.33 M with 105 outputs). The patch size must be divisible, per axis, by the product of those
strides; nnU-Net's planner guarantees it for the strides it picked, a hand-edited plan may break it
(an error, or with ``fit_patch_size`` the patch is rounded down to the nearest multiple).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
from pathlib import Path
from typing import List

from nnunet_causal.files import write_json_atomic
from nnunet_causal.errors import DatasetError
from nnunet_causal.networks.stunet import STUNET_SIZES, stunet_arch_kwargs

logger = logging.getLogger(__name__)
STUNET_CLASS = "nnunet_causal.networks.stunet.STUNet"


def _resolved(configurations: dict, name: str, key: str):
    """``key`` of configuration ``name``, following nnU-Net's ``inherits_from`` chain (None when absent)."""
    seen = set()
    while name in configurations and name not in seen:
        seen.add(name)
        cfg = configurations[name]
        if key in cfg:
            return cfg[key]
        name = cfg.get("inherits_from")
    return None


def _plan_strides(cfg: dict) -> List[List[int]]:
    arch = cfg["architecture"]["arch_kwargs"]
    if "strides" in arch:
        return arch["strides"]
    return cfg["pool_op_kernel_sizes"]  # plans of nnU-Net versions before the "architecture" entry


def check_patch_size(patch_size, strides, where: str, fit: bool = False) -> List[int]:
    """The patch size (voxels per axis) if each axis is divisible by the product of ``strides`` along it
    (needed for the skip connections to line up); else an error naming ``where``, or with ``fit`` the
    patch rounded down to the nearest multiple (at least one multiple)."""
    need = [math.prod(int(s[a]) for s in strides) for a in range(len(patch_size))]
    if all(int(p) % n == 0 for p, n in zip(patch_size, need)):
        return [int(p) for p in patch_size]
    if not fit:
        raise DatasetError(f"{where}: patch size {list(patch_size)} is not divisible by {need}, the product of "
                           f"STU-Net's strides {strides} per axis; edit the patch size to a multiple, or pass "
                           f"--fit-patch-size to round it down")
    fitted = [max(n, int(p) // n * n) for p, n in zip(patch_size, need)]
    logger.warning("%s: patch size %s rounded down to %s (multiple of %s for STU-Net's strides)", where,
                   list(patch_size), fitted, need)
    return fitted


def stunet_plans(plans: dict, size: str, fit_patch_size: bool = False, source: str = "plans") -> dict:
    """A copy of ``plans`` whose configurations build STU-Net of ``size`` with STU-Net's topology
    (see the module docstring); ``source`` names the plans file in errors."""
    size = size.upper()
    if size not in STUNET_SIZES:
        raise DatasetError(f"unknown STU-Net size '{size}': choose one of {', '.join(STUNET_SIZES)}")
    out = copy.deepcopy(plans)
    out["plans_name"] = f"{plans.get('plans_name', 'nnUNetPlans')}_STUNet{size}"
    configurations = out.get("configurations")
    if not isinstance(configurations, dict) or not configurations:
        raise DatasetError(f"{source} has no 'configurations': is it an nnU-Net plans file?")
    for name, cfg in configurations.items():
        if not cfg.get("architecture"):  # cascade / inheriting configurations only reference others
            continue
        patch = _resolved(configurations, name, "patch_size")
        if patch is None:
            raise DatasetError(f"{source}: configuration '{name}' has no patch_size")
        try:
            new = stunet_arch_kwargs(size, len(patch), _plan_strides(cfg))
        except (KeyError, ValueError) as e:
            raise DatasetError(f"{source}: configuration '{name}' has unusable strides ({e})") from e
        cfg["architecture"] = {"network_class_name": STUNET_CLASS, "arch_kwargs": new,
                               "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    for name, cfg in configurations.items():  # also children that inherit an architecture
        arch = _resolved(configurations, name, "architecture")
        patch = _resolved(configurations, name, "patch_size")
        if not arch or arch.get("network_class_name") != STUNET_CLASS or patch is None:
            continue
        fitted = check_patch_size(patch, arch["arch_kwargs"]["strides"], f"{source}, configuration '{name}'",
                                  fit_patch_size)
        if fitted != list(patch):
            cfg["patch_size"] = fitted
    return out


def write_stunet_plans(dataset: str, size: str, source_plans: str = "nnUNetPlans",
                       fit_patch_size: bool = False) -> Path:
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
    try:
        source = json.loads(src.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{src} is not valid JSON: {e}") from e
    plans = stunet_plans(source, size, fit_patch_size, source=str(src))
    dst = src.with_name(f"{plans['plans_name']}.json")
    write_json_atomic(dst, plans)
    if size.upper() in ("L", "H"):
        logger.warning("STU-Net-%s is large (%s); the planned batch size is kept -- reduce it in %s if it does not "
                       "fit your GPU", size.upper(), "440 M parameters" if size.upper() == "L" else "1.46 G parameters",
                       dst)
    return dst
