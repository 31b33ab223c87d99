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
    """

    def __init__(self, num_prompts: int, ignore_label: Optional[int] = None, batch_dice: bool = False,
                 ddp: bool = False):
        super().__init__()
        self.ignore_label = ignore_label
        self.register_buffer("label_values", torch.arange(1, num_prompts + 1), persistent=False)
        self.loss = DC_and_BCE_loss({}, {"batch_dice": batch_dice, "do_bg": True, "smooth": 1e-5, "ddp": ddp},
                                    use_ignore_label=ignore_label is not None,
                                    dice_class=MemoryEfficientSoftDiceLoss)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = target[:, 0].long()
        shape = (1, -1) + (1,) * (labels.ndim - 1)
        onehot = labels.unsqueeze(1) == self.label_values.to(labels.device).view(shape)
        if self.ignore_label is not None:
            onehot = torch.cat((onehot, (labels == self.ignore_label).unsqueeze(1)), 1)
        return self.loss(output[:, 1:], onehot)
