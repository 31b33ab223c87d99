"""The counterfactual recipe a trainer trains with: the dictionary's header by default, the former recipe classes
pinned to what they trained with, class attributes pinning one knob, dataset.json overriding the header."""
import pytest
import torch

from nnunet_causal.confounders.counterfactual import CounterfactualSampler
from nnunet_causal.confounders.dictionary import load_confounder_entries
from nnunet_causal.confounders.frames import ChannelFrame, IntensityFrame
from nnunet_causal.training.catalogue import TRAINERS
from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import resolve_recipe

JOINT = "a frame where the lesion has the mucosa's colour and reflections fall anywhere"
ENDOSCOPY = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "imaging_family": "endoscopy"}
CT = {"channel_names": {"0": "CT"}}


def _settings(name, dataset_json=ENDOSCOPY):
    recipe, pins = resolve_recipe(TRAINERS[name], dataset_json)
    return {**recipe.values(), **pins}


def _shares(name, n=4000):
    v = _settings(name)
    entries = load_confounder_entries("endoscopy")
    s = CounterfactualSampler(entries, IntensityFrame([ChannelFrame("unit")] * 3), 2, 3, v["probability"],
                              v["group_probability"], v["max_kinds"],
                              label_aware_probability=v["label_aware_probability"],
                              weight_exponent=v["weight_exponent"])
    drawn = s.draw(n, torch.Generator().manual_seed(0))
    joint = [i for i, e in enumerate(entries) if e.description == JOINT]
    assert len(joint) == 1
    return (sum(not d for d in drawn) / n, sum(joint[0] in d for d in drawn) / n)


def test_default_trainer_on_endoscopy_is_the_measured_half_factual_recipe():
    assert _settings("nnUNetTrainerCausalText") == _settings("nnUNetTrainerCausalText_CueBreakingFactual50")
    factual, joint = _shares("nnUNetTrainerCausalText_CPUDemo")
    assert abs(factual - 0.5) < 0.03 and abs(joint - 0.5) < 0.04


def test_former_recipe_classes_keep_the_shares_they_trained_with():
    factual_base, joint_base = _shares("nnUNetTrainerCausalText_CueBreaking")
    factual, joint = _shares("nnUNetTrainerCausalText_CueBreakingFactual_CPU5000steps")
    assert factual_base < 0.01 and abs(factual - 0.2) < 0.03
    assert abs(joint_base - 0.6) < 0.04 and abs(joint - joint_base) < 0.04
    factual40, joint40 = _shares("nnUNetTrainerCausalText_CueBreakingFactual40")
    assert abs(factual40 - 0.4) < 0.03 and abs(joint40 - joint_base) < 0.04


def test_no_gin_and_paired_aliases_change_only_their_knob():
    base = _settings("nnUNetTrainerCausalText_CueBreaking")
    assert _settings("nnUNetTrainerCausalText_CueBreakingNoGIN") == {**base, "image_intervention": "none"}
    assert _settings("nnUNetTrainerCausalText_CueBreakingPaired") == {**base, "consistency_weight": 1.0}
    # the former classes' recipe is theirs on every family, not the dictionary's
    assert _settings("nnUNetTrainerCausalText_CueBreaking", CT) == base


def test_generic_recipe_is_the_baseline_and_ct_trains_the_cue_breaking_shape_by_default():
    generic = _settings("nnUNetTrainerCausalText_GenericRecipe")
    assert (generic["probability"], generic["label_aware_probability"], generic["weight_exponent"]) == (0.7, None, 1.0)
    assert _settings("nnUNetTrainerCausalText_GenericRecipe", CT) == generic
    ct = _settings("nnUNetTrainerCausalText", CT)
    assert (ct["probability"], ct["label_aware_probability"]) == (0.5, 1.0)   # half factual, label-aware views always
    assert _shares("nnUNetTrainerCausalText_GenericRecipe")[1] < 0.3   # the joint cue broken in ~1/5 (0.5 above)


def test_class_attribute_pins_one_knob_and_dataset_json_overrides_the_header():
    class Pinned(nnUNetTrainerCausalText):
        counterfactual_probability = 1.0

    recipe, pins = resolve_recipe(Pinned, {**ENDOSCOPY, "counterfactual_recipe": {"probability": 0.2,
                                                                                   "weight_exponent": 2}})
    assert pins == {"probability": 1.0}
    assert recipe.probability == 0.2 and recipe.weight_exponent == 2.0 and recipe.label_aware_probability == 1.0
    assert _settings("nnUNetTrainerCausalText_AlwaysIntervene")["intervention_probability"] == 1.0
    assert _settings("nnUNetTrainerCausalText_NoImageIntervention")["image_intervention"] == "none"
    # a class with a recipe of its own ignores the dataset's override
    own, _ = resolve_recipe(TRAINERS["nnUNetTrainerCausalText_CueBreakingFactual50"],
                            {**ENDOSCOPY, "counterfactual_recipe": {"probability": 0.2}})
    assert own.probability == 0.5


def test_bad_dataset_override_fails_when_the_recipe_is_resolved():
    from nnunet_causal.errors import DatasetError

    with pytest.raises(DatasetError, match='dataset.json "counterfactual_recipe": recipe key \'probability\' = 2'):
        resolve_recipe(nnUNetTrainerCausalText, {**ENDOSCOPY, "counterfactual_recipe": {"probability": 2}})
