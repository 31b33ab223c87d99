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


def _random_case(batch=3, k=3, size=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k + 1, (batch, 1, size, size), generator=g).float()
    logits = torch.randn(batch, k + 1, size, size, generator=g)
    return logits, target


def test_masked_path_equals_nnunet_loss_when_everything_is_annotated():
    for batch_dice in (False, True):
        logits, target = _random_case()
        loss = PromptDiceBCELoss(num_prompts=3, batch_dice=batch_dice)
        stock = loss(logits, target)
        labels = target[:, 0].long()
        onehot = labels.unsqueeze(1) == torch.arange(1, 4).view(1, -1, 1, 1)
        loss.prompt_mask = torch.ones(3, 3, dtype=torch.bool)
        torch.testing.assert_close(loss._masked(logits[:, 1:], onehot, labels), stock, rtol=1e-5, atol=1e-6)


def test_partial_labels_mask_unannotated_structures():
    logits, target = _random_case()
    logits.requires_grad_(True)
    loss = PromptDiceBCELoss(num_prompts=3)
    loss.prompt_mask = torch.tensor([[True, False, True], [True, True, True], [False, False, True]])
    loss(logits, target).backward()
    grad = logits.grad
    assert grad[0, 2].abs().sum() == 0 and grad[2, 1].abs().sum() == 0 and grad[2, 2].abs().sum() == 0
    assert grad[0, 1].abs().sum() > 0 and grad[1, 2].abs().sum() > 0 and grad[2, 3].abs().sum() > 0
    # a prediction for an unannotated structure costs nothing, whatever the label map says there
    before = loss(logits, target)
    changed = logits.detach().clone()
    changed[0, 2] = 50.0
    torch.testing.assert_close(loss(changed, target), before.detach())
