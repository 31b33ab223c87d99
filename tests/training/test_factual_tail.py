"""The recipe's factual tail: the last share of the epochs draws no counterfactual views and no GIN/IPA views,
so that the smallest learning rates fit the sources' own images; the tail is a checked recipe key."""
import pytest
import torch

from nnunet_causal.confounders.recipe import parse_value
from nnunet_causal.errors import DatasetError
from nnunet_causal.training.catalogue import TRAINERS
from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import RECIPE_ATTRIBUTES, resolve_recipe

CT = {"channel_names": {"0": "CT"}}


def _trainer(dataset_json, num_epochs=10, epoch=0, name="nnUNetTrainerCausalText"):
    """A trainer object with only what the tail reads (no plans, no network)."""
    cls = TRAINERS[name]
    t = object.__new__(cls)
    t.num_epochs, t.current_epoch, t.logged = num_epochs, epoch, []
    t.print_to_log_file = lambda *a, **k: t.logged.append(" ".join(map(str, a)))
    t.recipe, t.recipe_pins = resolve_recipe(cls, dataset_json)
    for key, attr in RECIPE_ATTRIBUTES.items():
        if hasattr(cls, attr):
            setattr(t, attr, t.recipe_pins.get(key, getattr(t.recipe, key)))
    return t


def test_tail_covers_the_last_share_of_the_epochs_and_is_announced_once():
    t = _trainer({**CT, "counterfactual_recipe": {"factual_tail": 0.2}})
    assert t.counterfactual_factual_tail == 0.2 and t.recipe_knobs()["factual_tail"] == 0.2
    assert t.factual_tail_start() == 8
    seen = []
    for epoch in range(10):
        t.current_epoch = epoch
        seen.append(t.in_factual_tail())
        t.announce_factual_tail()
    assert seen == [False] * 8 + [True] * 2
    assert len(t.logged) == 1 and "epochs 8-9" in t.logged[0] and "factual_tail = 0.2" in t.logged[0]


def test_without_a_tail_every_epoch_draws_views():
    t = _trainer(CT)
    assert t.counterfactual_factual_tail == 0.0 and t.factual_tail_start() == 10
    for epoch in range(10):
        t.current_epoch = epoch
        t.announce_factual_tail()
        assert not t.in_factual_tail() and t.views_this_epoch()
    assert t.logged == []


def test_in_the_tail_the_causal_trainer_trains_on_the_factual_batch():
    t = _trainer({**CT, "counterfactual_recipe": {"factual_tail": 0.5, "intervention_probability": 1.0,
                                                  "consistency_weight": 1.0}})
    data = torch.randn(4, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    t.current_epoch = 4
    assert t.views_this_epoch() and t.paired_views()
    assert not torch.equal(t._image_intervention(data), data)     # GIN/IPA on every sample
    t.current_epoch = 5
    assert not t.views_this_epoch() and not t.paired_views()
    assert torch.equal(t._image_intervention(data), data)


def test_counterfactual_trainer_skips_its_views_in_the_tail(monkeypatch):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    t = _trainer({**CT, "counterfactual_recipe": {"factual_tail": 0.5}}, name="nnUNetTrainerCounterfactual")
    monkeypatch.setattr(nnUNetTrainer, "train_step", lambda self, b: {"batch": b})
    views = {"data": torch.ones(2, 1, 8, 8)}
    monkeypatch.setattr(t, "counterfactual", lambda b: views)
    batch = {"data": torch.zeros(2, 1, 8, 8)}
    t.current_epoch = 4
    assert t.train_step(batch)["batch"] is views
    t.current_epoch = 5
    assert t.train_step(batch)["batch"] is batch


@pytest.mark.parametrize("value", [-0.1, 1.5, "half"])
def test_tail_out_of_range_names_where_it_was_set(value):
    with pytest.raises(DatasetError, match="dataset.json.*factual_tail"):
        parse_value("factual_tail", value, 'dataset.json "counterfactual_recipe"')
