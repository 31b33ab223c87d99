"""Dice + BCE per prompt: background channel unused, ignore label honoured, deep supervision via nnU-Net."""
import torch

from nnunet_causal.training.losses import PromptDiceBCELoss


def test_perfect_prediction_beats_wrong_one_and_background_channel_is_unused():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, :4] = 1
    target[:, :, 6:] = 2
    loss = PromptDiceBCELoss(num_prompts=2)
    good = torch.full((2, 3, 8, 8), -10.0)
    good[:, 1][target[:, 0] == 1] = 10
    good[:, 2][target[:, 0] == 2] = 10
    bad = -good
    assert loss(good, target) < loss(bad, target)
    shifted = good.clone()
    shifted[:, 0] = 123.0  # channel 0 is the constant background logit: ignored by the loss
    torch.testing.assert_close(loss(shifted, target), loss(good, target))


def test_ignore_label_voxels_do_not_count():
    target = torch.zeros(1, 1, 8, 8)
    target[:, :, :4] = 1
    target[:, :, 4:] = 3  # ignore label
    loss = PromptDiceBCELoss(num_prompts=2, ignore_label=3)
    out = torch.full((1, 3, 8, 8), -10.0)
    out[:, 1, :4] = 10
    base = loss(out, target)
    out2 = out.clone()
    out2[:, 1:, 4:] = torch.randn(1, 2, 4, 8) * 10  # anything inside the ignored region
    torch.testing.assert_close(loss(out2, target), base)
