"""Causal, contrastive and LAD losses: finite with empty classes, decreasing under optimisation."""
import pytest
import torch

from nnunet_causal.training.causal_losses import (CausalLossWeights, causal_loss, class_fractions, contrast_loss,
                                                  label_map_to_onehot, lad_loss, pooled_class_features,
                                                  progressive_gate, total_causal_loss)


def test_fractions_and_pooling():
    target = torch.zeros(1, 1, 8, 8)
    target[0, 0, :4, :4] = 1
    target[0, 0, 4:, 4:] = 3  # ignore label: not a class
    frac = class_fractions(label_map_to_onehot(target, 2), (2, 2))
    assert frac.shape == (1, 2, 4) and frac[0, 0].tolist() == [1, 0, 0, 0] and frac[0, 1].sum() == 0
    feats = torch.randn(1, 4, 5)
    pooled, present = pooled_class_features(feats, frac)
    assert present.tolist() == [[True, False]]
    torch.testing.assert_close(pooled[0, 0], torch.nn.functional.normalize(feats[0, 0], dim=0))


def test_losses_finite_without_present_classes():
    t = torch.randn(2, 4, 6)
    present = torch.zeros(2, 3, dtype=torch.bool)
    pooled = torch.randn(2, 3, 6)
    for v in (causal_loss(pooled, present, torch.randn(3, 6)),
              contrast_loss(t, present, torch.randn(3, 6), torch.randn(5, 6), 0.5),
              lad_loss(pooled, present, torch.randn(3, 6), torch.randn(2, 6), 0.5)):
        assert torch.isfinite(v) and v == 0


def test_optimising_features_lowers_every_term():
    torch.manual_seed(0)
    feats = torch.randn(2, 4, 8, requires_grad=True)
    onehot = torch.zeros(2, 2, 4, 4)
    onehot[:, 0, :2] = 1
    onehot[1, 1, 2:] = 1
    prompts, anchors, conf, styles = torch.randn(2, 8), torch.randn(2, 8), torch.randn(6, 8), torch.randn(2, 8)
    opt = torch.optim.Adam([feats], lr=0.05)
    first = None
    for _ in range(60):
        parts = total_causal_loss({"bottleneck_text": feats}, onehot, prompts, anchors, conf, styles,
                                  CausalLossWeights(), 1.0, (2, 2))
        first = first or {k: float(v.detach()) for k, v in parts.items()}
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
    for k in ("causal", "contrast", "lad"):
        assert float(parts[k].detach()) < first[k], k


def test_progressive_gate():
    assert [progressive_gate(e, 50) for e in (0, 9, 10, 49)] == [0.0, 0.0, 1.0, 1.0]


def test_label_fractions_equal_the_one_hot_path_without_building_it():
    from nnunet_causal.training.causal_losses import label_fractions

    g = torch.Generator().manual_seed(0)
    for shape, grid in (((2, 1, 16, 16), (4, 4)), ((2, 1, 8, 16, 16), (2, 4, 4))):
        target = torch.randint(0, 6, shape, generator=g)
        target[0, 0, :2] = -1                                    # ignore-like values are no class
        fast = label_fractions(target, 5, grid)
        torch.testing.assert_close(fast, class_fractions(label_map_to_onehot(target, 5), grid))
        assert fast.shape == (2, 5, int(torch.tensor(grid).prod()))


def test_the_loss_composition_on_a_hand_computed_case():
    """Two bottleneck cells (text features e1 and e2), one class in cell 0, prompt e1, confounder e2, style -e1,
    tau 0.5: L_causal = 1 - cos(e1, A), L_contrast = ln 2 (g = (e1 + e2)/sqrt 2 scores 1/(sqrt 2 tau) against
    both texts), L_LAD = ln(1 + e^-4) + 0 (f = e1: 2 against its prompt, -2 against the style; hinge at
    cos = -1), total = gate (0.5 L_causal + 0.1 L_contrast) + 0.1 L_LAD -- the LAD term is not gated."""
    import math

    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    aux = {"bottleneck_text": torch.stack([e1, e2])[None]}            # (B=1, N=2, D=2)
    onehot = torch.tensor([[[[1.0, 0.0]]]])                           # (B=1, K=1, 1, 2): class 1 in cell 0
    prompts, confounders, styles = e1[None], e2[None], -e1[None]
    lad = math.log(1 + math.exp(-4))
    for anchor, l_causal in ((e1, 0.0), (e2, 1.0), (-e1, 2.0)):
        for gate in (0.0, 1.0):
            parts = total_causal_loss(aux, onehot, prompts, anchor[None], confounders, styles, CausalLossWeights(),
                                      gate, (1, 2))
            assert float(parts["causal"]) == pytest.approx(l_causal, abs=1e-6)
            assert float(parts["contrast"]) == pytest.approx(math.log(2), abs=1e-6)
            assert float(parts["lad"]) == pytest.approx(lad, abs=1e-6)
            want = gate * (0.5 * l_causal + 0.1 * math.log(2)) + 0.1 * lad
            assert float(parts["total"]) == pytest.approx(want, abs=1e-6)
    # each image's own known style is one more negative: e2 scores as the confounder, so ln 3
    parts = total_causal_loss(aux, onehot, prompts, e1[None], confounders, None, CausalLossWeights(), 1.0, (1, 2),
                              known_styles=e2[None])
    assert float(parts["contrast"]) == pytest.approx(math.log(3), abs=1e-6) and "lad" not in parts
    assert float(parts["total"]) == pytest.approx(0.1 * math.log(3), abs=1e-6)
    # other weights scale each term
    w = CausalLossWeights(causal=2.0, contrast=3.0, lad=5.0)
    parts = total_causal_loss(aux, onehot, prompts, e2[None], confounders, styles, w, 1.0, (1, 2))
    assert float(parts["total"]) == pytest.approx(2.0 * 1.0 + 3.0 * math.log(2) + 5.0 * lad, abs=1e-5)
