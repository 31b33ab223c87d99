"""STU-Net plans written beside nnU-Net's, built through nnU-Net's own network factory."""
import json

import pytest
import torch

from nnunet_causal.errors import DatasetError
from nnunet_causal.planning.stunet_plans import stunet_plans, write_stunet_plans

PLANS = {
    "dataset_name": "Dataset001_X", "plans_name": "nnUNetPlans",
    "configurations": {"2d": {"data_identifier": "nnUNetPlans_2d", "patch_size": [32, 32], "batch_size": 4,
                              "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                                               "arch_kwargs": {"n_stages": 3, "strides": [[1, 1], [2, 2], [2, 2]],
                                                               "kernel_sizes": [[3, 3]] * 3},
                                               "_kw_requires_import": ["conv_op"]}},
                       "3d_lowres": {"inherits_from": "3d_fullres"}},
}


def test_plans_keep_data_and_build_stunet(tmp_path, monkeypatch):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    new = stunet_plans(PLANS, "B")
    cfg = new["configurations"]["2d"]
    assert new["plans_name"] == "nnUNetPlans_STUNetB" and cfg["data_identifier"] == "nnUNetPlans_2d"
    assert cfg["architecture"]["arch_kwargs"]["features_per_stage"] == [32, 64, 128, 256, 512, 512]
    arch = cfg["architecture"]
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"], 3, 2,
                                 deep_supervision=True)
    out = net(torch.randn(1, 3, 32, 32))
    assert [o.shape[-1] for o in out] == [32, 16, 8, 8, 8]

    pre = tmp_path / "Dataset001_X"
    pre.mkdir()
    (pre / "nnUNetPlans.json").write_text(json.dumps(PLANS))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    path = write_stunet_plans("Dataset001_X", "S")
    assert path.name == "nnUNetPlans_STUNetS.json" and json.loads(path.read_text())["plans_name"] == path.stem
    with pytest.raises(DatasetError, match="unknown STU-Net size"):
        stunet_plans(PLANS, "XL")
    with pytest.raises(DatasetError, match="nnUNetPlans_foo.json does not exist"):
        write_stunet_plans("Dataset001_X", "S", "nnUNetPlans_foo")


# ---------------------------------------------------------------- STU-Net's own topology on any dataset
PUBLISHED = {"S": 14.6e6, "B": 58.26e6, "L": 440.30e6, "H": 1457.33e6}
ISO = {"patch_size": [64, 64, 64], "strides": [[1, 1, 1]] + [[2, 2, 2]] * 4, "kernel_sizes": [[3, 3, 3]] * 5}
# 4 mm slices, 0.8 mm in plane: nnU-Net plans in-plane-only pooling and 1x3x3 kernels first, and few stages
ANISO = {"patch_size": [16, 160, 128], "strides": [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 2, 2]],
         "kernel_sizes": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]}


def plans_3d(case):
    n = len(case["strides"])
    return {"dataset_name": "Dataset002_Y", "plans_name": "nnUNetPlans", "configurations": {"3d_fullres": {
        "data_identifier": "nnUNetPlans_3d_fullres", "patch_size": list(case["patch_size"]), "batch_size": 2,
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": {"n_stages": n, "features_per_stage": [32 * 2 ** i for i in range(n)],
                                         "conv_op": "torch.nn.modules.conv.Conv3d", "strides": case["strides"],
                                         "kernel_sizes": case["kernel_sizes"]},
                         "_kw_requires_import": ["conv_op"]}}}}


def build_from_plans(plans, name="3d_fullres", outputs=105, device="meta"):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    arch = plans["configurations"][name]["architecture"]
    with torch.device(device):
        return get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                      1, outputs, allow_init=False, deep_supervision=True)


@pytest.mark.parametrize("case", [ISO, ANISO], ids=["isotropic", "4mm-slices"])
@pytest.mark.parametrize("size", "SBLH")
def test_plans_give_published_parameter_counts(size, case):
    plans = stunet_plans(plans_3d(case), size)
    kw = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert kw["n_stages"] == 6 and kw["kernel_sizes"] == [[3, 3, 3]] * 6
    n = sum(p.numel() for p in build_from_plans(plans).parameters())  # meta device: H needs no 5.8 GB
    assert abs(n / PUBLISHED[size] - 1) < 1e-3, (size, n)


def test_strides_are_the_plans_first_five_padded_with_one():
    kw = stunet_plans(plans_3d(ANISO), "B")["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert kw["strides"] == [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 2, 2], [1, 1, 1]]
    deep = dict(ISO, patch_size=[128, 128, 128], strides=[[1, 1, 1]] + [[2, 2, 2]] * 6,
                kernel_sizes=[[3, 3, 3]] * 7)
    kw = stunet_plans(plans_3d(deep), "S")["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert kw["strides"] == [[1, 1, 1]] + [[2, 2, 2]] * 5
    two_d = stunet_plans(PLANS, "S")["configurations"]["2d"]["architecture"]["arch_kwargs"]
    assert two_d["strides"] == [[1, 1], [2, 2], [2, 2], [1, 1], [1, 1], [1, 1]]
    assert two_d["kernel_sizes"] == [[3, 3]] * 6 and two_d["conv_op"].endswith("Conv2d")


def test_anisotropic_plans_run_and_deep_supervision_matches_nnunet():
    import numpy as np
    plans = stunet_plans(plans_3d(dict(ANISO, patch_size=[4, 32, 32])), "S")
    net = build_from_plans(plans, outputs=3, device="cpu")
    outs = net(torch.randn(1, 1, 4, 32, 32))
    strides = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["strides"]
    scales = (1 / np.cumprod(np.vstack(strides), axis=0))[:-1]  # nnU-Net's _get_deep_supervision_scales
    assert len(outs) == len(scales) == 5
    for o, s in zip(outs, scales):
        assert list(o.shape[2:]) == [round(a * b) for a, b in zip([4, 32, 32], s)]


def test_patch_size_not_divisible_is_an_error_or_fitted():
    bad = plans_3d(dict(ANISO, patch_size=[17, 160, 120]))  # needs multiples of [2, 16, 16]
    with pytest.raises(DatasetError, match=r"my_plans.json, configuration '3d_fullres': patch size \[17, 160, 120\] "
                                           r"is not divisible by \[2, 16, 16\]"):
        stunet_plans(bad, "B", source="my_plans.json")
    fitted = stunet_plans(bad, "B", fit_patch_size=True)["configurations"]["3d_fullres"]
    assert fitted["patch_size"] == [16, 160, 112] and fitted["data_identifier"] == "nnUNetPlans_3d_fullres"


def test_cli_passes_fit_patch_size(tmp_path, monkeypatch, capsys):
    from nnunet_causal.cli import main
    pre = tmp_path / "Dataset002_Y"
    pre.mkdir()
    (pre / "nnUNetPlans.json").write_text(json.dumps(plans_3d(dict(ANISO, patch_size=[17, 160, 128]))))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    assert main(["plan-stunet", "-d", "Dataset002_Y", "-s", "S"]) != 0
    assert "not divisible" in capsys.readouterr().err
    assert main(["plan-stunet", "-d", "Dataset002_Y", "-s", "S", "--fit-patch-size"]) == 0
    written = json.loads((pre / "nnUNetPlans_STUNetS.json").read_text())
    assert written["configurations"]["3d_fullres"]["patch_size"] == [16, 160, 128]
