"""The share of counterfactual views over training: constant by default, a linear curriculum from
``probability_start`` (first epoch) to ``probability`` (last epoch) when the recipe sets a start."""
import pytest

from nnunet_causal.confounders.recipe import CounterfactualRecipe, share_of_views


def test_share_is_constant_without_a_start():
    assert [share_of_views(0.5, None, e, 10) for e in (0, 5, 9)] == [0.5, 0.5, 0.5]


def test_share_moves_linearly_from_start_to_probability():
    shares = [share_of_views(0.5, 1.0, e, 11) for e in range(11)]
    assert shares[0] == 1.0 and shares[-1] == pytest.approx(0.5)
    assert shares[5] == pytest.approx(0.75)
    assert all(a > b for a, b in zip(shares, shares[1:]))   # strictly falling, one step per epoch
    assert share_of_views(0.8, 0.0, 2, 5) == pytest.approx(0.4)   # rising works the same way
    assert share_of_views(0.5, 1.0, 50, 11) == pytest.approx(0.5)  # past the last epoch: the end value
    assert share_of_views(0.5, 1.0, 0, 1) == 0.5                   # one epoch: no room for a curriculum


def test_describe_says_when_there_is_no_curriculum():
    assert "probability_start=as probability" in CounterfactualRecipe().describe()
    assert "probability_start=1.0*" in CounterfactualRecipe(probability_start=1.0,
                                                             where={"probability_start": "x"}).describe()
