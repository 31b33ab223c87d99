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
    assert cfg["architecture"]["arch_kwargs"]["features_per_stage"] == [32, 64, 128]
    arch = cfg["architecture"]
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"], 3, 2,
                                 deep_supervision=True)
    out = net(torch.randn(1, 3, 32, 32))
    assert [o.shape[-1] for o in out] == [32, 16]

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
