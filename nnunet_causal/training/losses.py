"""Segmentation losses for prompt outputs.

Each prompt is an independent binary problem (OpenVocabCT, seed 002): ``L = BCE(l_k, y_k) + Dice(sigmoid
(l_k), y_k)`` summed over prompts, with nnU-Net's deep supervision weights applied by its
``DeepSupervisionWrapper``. nnU-Net's ``DC_and_BCE_loss`` does the work; this module only turns the label
map that nnU-Net's dataloader delivers into one binary target per prompt (plus the ignore mask).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss


class PromptDiceBCELoss(nn.Module):
    """Dice + BCE per prompt for outputs ``(B, 1 + K, *spatial)`` whose channel 0 is the constant
    background logit, against a label map ``(B, 1, *spatial)`` where prompt k has label value k.

    Voxels labelled ``ignore_label`` contribute to neither term (nnU-Net's ignore-label semantics).

    Partial labels: while :attr:`prompt_mask` holds a ``(B, K)`` boolean tensor (set by the trainer for one
    step from dataset.json ``"partial_labels"``), prompt k of sample b enters neither term when
    ``prompt_mask[b, k]`` is False -- its zeros mean "not annotated", not "absent". The masked path averages
    BCE over the remaining (sample, prompt, voxel) entries and soft Dice over the remaining (sample,
    prompt) pairs (over prompts, with the batch pooled, when ``batch_dice``); it does not all-gather Dice
    terms across DDP ranks.
    """

    def __init__(self, num_prompts: int, ignore_label: Optional[int] = None, batch_dice: bool = False,
                 ddp: bool = False):
        super().__init__()
        self.ignore_label = ignore_label
        self.batch_dice = batch_dice
        self.smooth = 1e-5
        self.prompt_mask: Optional[torch.Tensor] = None
        self.register_buffer("label_values", torch.arange(1, num_prompts + 1), persistent=False)
        self.loss = DC_and_BCE_loss({}, {"batch_dice": batch_dice, "do_bg": True, "smooth": 1e-5, "ddp": ddp},
                                    use_ignore_label=ignore_label is not None,
                                    dice_class=MemoryEfficientSoftDiceLoss)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = target[:, 0].long()
        shape = (1, -1) + (1,) * (labels.ndim - 1)
        onehot = labels.unsqueeze(1) == self.label_values.to(labels.device).view(shape)
        if self.prompt_mask is not None and not bool(self.prompt_mask.all()):
            return self._masked(output[:, 1:], onehot, labels)
        if self.ignore_label is not None:
            onehot = torch.cat((onehot, (labels == self.ignore_label).unsqueeze(1)), 1)
        return self.loss(output[:, 1:], onehot)

    def _masked(self, logits: torch.Tensor, onehot: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Dice + BCE restricted to the annotated (sample, prompt) pairs of :attr:`prompt_mask`."""
        valid = self.prompt_mask.to(logits.device).bool()
        if valid.shape != logits.shape[:2]:
            raise ValueError(f"prompt_mask has shape {tuple(valid.shape)}, expected {tuple(logits.shape[:2])}")
        target = onehot.float()
        spatial = (1,) * (logits.ndim - 2)
        weight = valid.float().view(*valid.shape, *spatial).expand_as(logits)
        if self.ignore_label is not None:
            weight = weight * (labels != self.ignore_label).unsqueeze(1).float()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        ce = (bce * weight).sum() / torch.clip(weight.sum(), min=1e-8)
        probs = torch.sigmoid(logits) * weight
        axes = tuple(range(2, logits.ndim))
        inter, psum, gsum = (probs * target).sum(axes), probs.sum(axes), (target * weight).sum(axes)
        if self.batch_dice:
            inter, psum, gsum, valid = inter.sum(0), psum.sum(0), gsum.sum(0), valid.any(0)
        dc = (2 * inter + self.smooth) / torch.clip(gsum + psum + self.smooth, min=1e-8)
        dice_loss = -dc[valid].mean() if bool(valid.any()) else logits.sum() * 0
        return ce + dice_loss
