"""STU-Net: published parameter counts, shapes, deep supervision, building through nnU-Net plans."""
import pydoc

import pytest
import torch

from nnunet_causal.networks.stunet import STUNet, stunet_arch_kwargs

PUBLISHED = {"S": 14.6e6, "B": 58.26e6, "L": 440.30e6, "H": 1457.33e6}


def build(size, dim=3, classes=105, device="cpu", **over):
    kw = stunet_arch_kwargs(size, dim, **over)
    for k in ("conv_op", "norm_op", "nonlin"):
        kw[k] = pydoc.locate(kw[k])
    with torch.device(device):
        return STUNet(1, classes, **kw)


@pytest.mark.parametrize("size", "SBLH")
def test_parameter_counts_match_published(size):
    n = sum(p.numel() for p in build(size, device="meta").parameters())  # meta: no memory, instant
    assert abs(n / PUBLISHED[size] - 1) < 1e-3, n


def test_forward_shapes_and_deep_supervision():
    net = build("S", dim=2, classes=3, plan_strides=[[1, 1], [2, 2], [2, 2], [2, 2]])
    net.apply(net.initialize)
    x = torch.randn(2, 1, 32, 32)
    assert net(x).shape == (2, 3, 32, 32)
    net.decoder.deep_supervision = True
    outs = net(x)
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 4]  # 6 stages, the plan's 3 strides padded with 1
    sum(o.square().mean() for o in outs).backward()
    assert not [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


def test_anisotropic_3d_strides():
    net = build("S", dim=3, classes=2, plan_strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2]])
    assert net.encoder.strides == [[1, 1, 1], [1, 2, 2], [2, 2, 2], [1, 1, 1], [1, 1, 1], [1, 1, 1]]
    assert {tuple(m.kernel_size) for m in net.modules() if isinstance(m, torch.nn.Conv3d)} == {(3, 3, 3), (1, 1, 1)}
    assert net(torch.randn(1, 1, 8, 16, 16)).shape == (1, 2, 8, 16, 16)


def test_text_network_wraps_stunet():
    from nnunet_causal.networks.text_network import TextPromptedSegmentationNetwork
    net = TextPromptedSegmentationNetwork(build("S", 2, 8, plan_strides=[[1, 1], [2, 2], [2, 2]]),
                                          2, 12, 8)
    assert net(torch.randn(1, 1, 16, 16)).shape == (1, 3, 16, 16)
