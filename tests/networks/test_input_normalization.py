"""The network's own input normalisation: rank (histogram equalisation) per sample and channel."""
import math

import pytest
import torch

from nnunet_causal.networks.input_normalization import InputNormalization, rank_normalize
from nnunet_causal.networks.text_network import TextPromptedSegmentationNetwork
from tests.networks.test_text_network import tiny_backbone


@pytest.mark.parametrize("dim", [2, 3])
def test_rank_is_uniform_and_blind_to_monotone_changes(dim):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *([12] * dim), generator=g, dtype=torch.float64)
    y = rank_normalize(x)
    assert y.shape == x.shape
    means = y.mean(dim=tuple(range(2, x.ndim)))
    torch.testing.assert_close(means, torch.zeros(2, 3, dtype=torch.float64), atol=1e-5, rtol=0)
    assert y.min() == pytest.approx(-math.sqrt(3), abs=1e-5) and y.max() == pytest.approx(math.sqrt(3), abs=1e-5)
    # a monotone remapping per sample (a CT window, an exponential, a scale) leaves the ranks as they were
    torch.testing.assert_close(rank_normalize(torch.exp(3 * x) * 500 - 1000), y)
    # the samples and channels are equalised apart: scaling one changes nothing in the others
    z = x.clone()
    z[0, 0] *= 100
    torch.testing.assert_close(rank_normalize(z), y)


def test_ties_share_their_mean_rank_and_a_constant_image_is_zero():
    x = torch.tensor([[[0.0, 0.0, 0.0, 1.0, 2.0]]])
    y = rank_normalize(x)[0, 0]
    assert torch.all(y[:3] == y[0]) and y[0] == pytest.approx((1 / 4 - 0.5) * 2 * math.sqrt(3))
    assert torch.all(rank_normalize(torch.full((1, 1, 4, 4), 7.0)) == 0)


def test_the_network_applies_it_before_the_backbone_and_refuses_unknown_modes():
    torch.manual_seed(0)
    net = TextPromptedSegmentationNetwork(tiny_backbone(ds=False), 2, 12, 8, input_normalization="rank").eval()
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(net(x), net(torch.exp(x) * 4 - 3))            # only the ranks reach the backbone
    plain = TextPromptedSegmentationNetwork(tiny_backbone(ds=False), 2, 12, 8).eval()
    plain.load_state_dict(net.state_dict())                                  # no weights: old checkpoints load
    assert not torch.allclose(plain(x), plain(torch.exp(x) * 4 - 3))
    with pytest.raises(ValueError, match="unknown input normalisation 'histogram'"):
        InputNormalization("histogram")
