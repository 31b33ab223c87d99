"""Hand-written PlainConvUNet plans load in nnU-Net's PlansManager and build the network they describe."""
import pytest
import torch

from nnunet_causal.benchmarking.plans_builder import plain_unet_arch, plain_unet_plans


def test_plans_build_a_3d_unet_of_the_given_widths():
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    arch = plain_unet_arch(3, [4, 8], [[1, 1, 1], [2, 2, 2]], conv_per_stage=1)
    plans = plain_unet_plans("Dataset999_T", "3d_fullres", arch, [8, 8, 8], [16, 16, 16], {"0": {"mean": 0.0}},
                             "SimpleITKIO", "t_3d", [1.0] * 3, [16, 16, 16], extra={"note": 1})
    cm = PlansManager(plans).get_configuration("3d_fullres")
    assert cm.patch_size == [8, 8, 8] and plans["note"] == 1
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, 3, deep_supervision=False)
    assert net(torch.zeros(1, 1, 8, 8, 8)).shape == (1, 3, 8, 8, 8)
    assert [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv3d)][:2] == [4, 8]


def test_bad_arch_arguments_are_refused():
    with pytest.raises(ValueError, match="ndim"):
        plain_unet_arch(4, [4], [[1]])
    with pytest.raises(ValueError, match="one stride per stage"):
        plain_unet_arch(2, [4, 8], [[1, 1]])
