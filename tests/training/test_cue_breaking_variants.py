"""Cue-breaking trainer variants: the share of views that break the lesion's joint cue, and of factual views."""
import torch

from nnunet_causal.confounders.counterfactual import CounterfactualSampler
from nnunet_causal.confounders.dictionary import load_confounder_entries
from nnunet_causal.confounders.frames import ChannelFrame, IntensityFrame
from nnunet_causal.training.causal.variants import (nnUNetTrainerCausalText_CueBreaking,
                                                    nnUNetTrainerCausalText_CueBreakingFactual,
                                                    nnUNetTrainerCausalText_CueBreakingFactual40,
                                                    nnUNetTrainerCausalText_CueBreakingFactual50,
                                                    nnUNetTrainerCausalText_CueBreakingNoGIN)

JOINT = "a frame where the lesion has the mucosa's colour and reflections fall anywhere"


def _shares(trainer_class, n=4000):
    entries = load_confounder_entries("endoscopy")
    t = trainer_class
    s = CounterfactualSampler(entries, IntensityFrame([ChannelFrame("unit")] * 3), 2, 3,
                              t.counterfactual_probability, t.counterfactual_group_probability,
                              t.counterfactual_max_entries,
                              label_aware_probability=t.counterfactual_label_aware_probability,
                              weight_exponent=t.counterfactual_weight_exponent)
    drawn = s.draw(n, torch.Generator().manual_seed(0))
    joint = [i for i, e in enumerate(entries) if e.description == JOINT]
    assert len(joint) == 1
    return (sum(not d for d in drawn) / n, sum(joint[0] in d for d in drawn) / n)


def test_factual_fifth_keeps_the_share_of_cue_breaking_views():
    factual_base, joint_base = _shares(nnUNetTrainerCausalText_CueBreaking)
    factual, joint = _shares(nnUNetTrainerCausalText_CueBreakingFactual)
    assert factual_base < 0.01 and abs(factual - 0.2) < 0.03
    assert abs(joint_base - 0.6) < 0.04 and abs(joint - joint_base) < 0.04
    factual40, joint40 = _shares(nnUNetTrainerCausalText_CueBreakingFactual40)
    assert abs(factual40 - 0.4) < 0.03 and abs(joint40 - joint_base) < 0.04


def test_factual_half_leaves_half_cue_breaking():
    factual, joint = _shares(nnUNetTrainerCausalText_CueBreakingFactual50)
    assert abs(factual - 0.5) < 0.03 and abs(joint - 0.5) < 0.04


def test_no_gin_variant_changes_only_the_image_intervention():
    assert nnUNetTrainerCausalText_CueBreakingNoGIN.image_intervention == "none"
    assert nnUNetTrainerCausalText_CueBreaking.image_intervention == "gin_ipa"
    assert _shares(nnUNetTrainerCausalText_CueBreakingNoGIN) == _shares(nnUNetTrainerCausalText_CueBreaking)
