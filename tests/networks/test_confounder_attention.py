"""Confounder cross-attention bottleneck and MTRS."""
import math

import pytest
import torch

from nnunet_causal.networks.confounder_attention import ConfounderCrossAttention


@pytest.mark.parametrize("spatial", [(4, 4), (2, 3, 4)])
def test_shapes_identity_at_init_and_gate(spatial):
    m = ConfounderCrossAttention(channels=16, num_confounders=5, text_dim=12, d_model=8, num_layers=3)
    m.set_confounder_embeddings(torch.randn(5, 12))
    x = torch.randn(2, 16, *spatial)
    out, aux = m(x, torch.randn(3, 12))
    assert out.shape == x.shape and aux["bottleneck_text"].shape == (2, math.prod(spatial), 12)
    torch.testing.assert_close(out, x)  # zero-initialised output projection: identity before training
    torch.nn.init.normal_(m.out.weight)
    assert not torch.allclose(m(x, torch.randn(3, 12))[0], x)
    m.gate.fill_(0)
    torch.testing.assert_close(m(x, torch.randn(3, 12))[0], x)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 1.0])
def test_mtrs_selects_ceil_alpha_n(alpha):
    m = ConfounderCrossAttention(8, 4, 6, d_model=8, alpha=alpha)
    mask = m.mtrs_mask(torch.randn(3, 10, 6), torch.randn(2, 6))
    assert torch.all(mask.sum(1) == math.ceil(alpha * 10))


def test_mtrs_keeps_unselected_positions_unchanged():
    m = ConfounderCrossAttention(8, 4, 6, d_model=8, alpha=0.25)
    torch.nn.init.normal_(m.out.weight)
    x = torch.randn(1, 8, 4, 4)
    out, aux = m(x, torch.randn(2, 6))
    changed = (out - x).abs().flatten(2).sum(1)[0] > 1e-6
    assert torch.equal(changed, aux["mtrs_mask"][0].bool())


@pytest.mark.parametrize("gate", [0.0, 1.0])
def test_every_parameter_gets_a_gradient(gate):
    m = ConfounderCrossAttention(8, 4, 6, d_model=8, alpha=0.5)
    torch.nn.init.normal_(m.out.weight)           # a trained output projection (zero at init blocks gradients)
    m.set_confounder_embeddings(torch.randn(4, 6))  # distinct keys (all-zero ones make attention constant)
    m.gate.fill_(gate)
    out, aux = m(torch.randn(2, 8, 4, 4), torch.randn(2, 6))
    (out.square().mean() + aux["bottleneck_text"].square().mean()).backward()
    assert all(p.grad is not None for p in m.parameters())   # in the graph every step (DDP)
    moving = {n for n, p in m.named_parameters() if p.grad.abs().sum() > 0}
    if gate:
        assert moving == {n for n, _ in m.named_parameters()}
    else:                                          # gate 0 (warm-up): only the text projection learns
        assert moving == {"to_text.weight", "to_text.bias"}


def test_state_dict_round_trip_keeps_dictionary():
    m = ConfounderCrossAttention(8, 4, 6, d_model=8)
    z = torch.randn(4, 6)
    m.set_confounder_embeddings(z)
    m2 = ConfounderCrossAttention(8, 4, 6, d_model=8)
    m2.load_state_dict(m.state_dict())
    torch.testing.assert_close(m2.confounder_embeddings, z)
    with pytest.raises(ValueError):
        ConfounderCrossAttention(8, 4, 6, alpha=0)
