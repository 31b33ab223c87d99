"""The recipe a training started with is recorded in its fold folder and kept by a continued training (--c),
even when the dictionary header or dataset.json changed in between; a broken record is an error naming it."""
import json

import pytest

from nnunet_causal.errors import DatasetError
from nnunet_causal.training.catalogue import TRAINERS
from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import resolve_recipe
from nnunet_causal.training.counterfactual.recipe_record import RECIPE_RECORD, read_recipe_record

ENDOSCOPY = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "imaging_family": "endoscopy"}


def _trainer(name, folder, epoch, dataset_json=ENDOSCOPY):
    """A trainer object with only what settle_recipe reads (no plans, no network)."""
    cls = TRAINERS[name]
    t = object.__new__(cls)
    t.output_folder, t.current_epoch, t.local_rank, t.logged = str(folder), epoch, 0, []
    t.print_to_log_file = lambda *a, **k: t.logged.append(" ".join(map(str, a)))
    t.recipe, t.recipe_pins = resolve_recipe(cls, dataset_json)
    from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import RECIPE_ATTRIBUTES
    for key, attr in RECIPE_ATTRIBUTES.items():
        if hasattr(cls, attr):
            setattr(t, attr, t.recipe_pins.get(key, getattr(t.recipe, key)))
    return t


def test_fresh_training_records_its_recipe_with_where_each_value_came_from(tmp_path):
    t = _trainer("nnUNetTrainerCausalText", tmp_path, 0)
    t.settle_recipe()
    record = json.loads((tmp_path / RECIPE_RECORD).read_text())
    assert record["schema"] == 1 and record["trainer"] == "nnUNetTrainerCausalText"
    assert record["knobs"] == t.recipe_knobs()
    assert record["knobs"]["probability"] == t.recipe.probability
    assert all("endoscopy" in w for k, w in record["set_by"].items())  # set by the endoscopy header
    assert set(record["set_by"]) == set(t.recipe.where)


def test_pinned_ablation_records_its_pin(tmp_path):
    t = _trainer("nnUNetTrainerCausalText_GenericRecipe", tmp_path, 0)
    t.settle_recipe()
    record = json.loads((tmp_path / RECIPE_RECORD).read_text())
    assert record["knobs"]["probability"] == 0.7  # the generic recipe, not the endoscopy header


def test_continued_training_keeps_the_recorded_recipe_and_logs_the_change(tmp_path):
    _trainer("nnUNetTrainerCausalText", tmp_path, 0).settle_recipe()
    started = json.loads((tmp_path / RECIPE_RECORD).read_text())["knobs"]
    # dataset.json now overrides the share of views: a continued training keeps the recorded one
    changed = dict(ENDOSCOPY, counterfactual_recipe={"probability": 0.9})
    t = _trainer("nnUNetTrainerCausalText", tmp_path, 7, changed)
    assert t.counterfactual_probability == 0.9
    t.settle_recipe()
    assert t.counterfactual_probability == started["probability"] != 0.9
    assert t.recipe_knobs() == started
    assert len(t.logged) == 1 and "probability=0.9 (kept " in t.logged[0] and RECIPE_RECORD in t.logged[0]
    assert json.loads((tmp_path / RECIPE_RECORD).read_text())["knobs"] == started  # not rewritten


def test_continued_training_without_change_logs_nothing(tmp_path):
    _trainer("nnUNetTrainerCausalText", tmp_path, 0).settle_recipe()
    t = _trainer("nnUNetTrainerCausalText", tmp_path, 3)
    t.settle_recipe()
    assert t.logged == []


@pytest.mark.parametrize("content, words", [
    ("{not json", "cannot read the recipe"),
    (json.dumps({"schema": 2, "knobs": {}}), "not a schema-1 recipe record"),
    (json.dumps({"schema": 1, "knobs": {"colour": 1}}), "unknown recipe key 'colour'"),
    (json.dumps({"schema": 1, "knobs": {"probability": 3}}), "'probability' = 3"),
])
def test_broken_record_is_an_error_naming_the_file(tmp_path, content, words):
    (tmp_path / RECIPE_RECORD).write_text(content)
    with pytest.raises(DatasetError) as e:
        read_recipe_record(tmp_path)
    assert str(tmp_path / RECIPE_RECORD) in str(e.value) and words in str(e.value)
    with pytest.raises(DatasetError):
        _trainer("nnUNetTrainerCausalText", tmp_path, 2).settle_recipe()


def test_curriculum_sets_the_samplers_share_each_epoch(tmp_path):
    """probability_start: the share of views moves from the start value to probability over the epochs."""
    dj = {**ENDOSCOPY, "counterfactual_recipe": {"probability_start": 1.0, "probability": 0.5}}
    t = _trainer("nnUNetTrainerCausalText", tmp_path, 0, dj)

    class Sampler:
        probability = None

    t._cf_sampler, t.num_epochs = Sampler(), 5
    seen = []
    for epoch in range(5):
        t.current_epoch = epoch
        t.update_share_of_views()
        seen.append(t._cf_sampler.probability)
    assert seen == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5])
    t.settle_recipe()   # the start value is recorded like every other knob
    assert json.loads((tmp_path / RECIPE_RECORD).read_text())["knobs"]["probability_start"] == 1.0
