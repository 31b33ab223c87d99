"""No mirroring for datasets whose structures are named by their side.

nnU-Net mirrors each training patch along every spatial axis with probability 0.5 and averages the
predictions of mirrored inputs at test time. A patch mirrored across the body's left-right axis shows the
right kidney where the left one was; a label named by its side ("kidney_left") is then learnable only from
the context of other organs, never from where it lies. A stock network learns that context from the images
alone; a text-prompted network must in addition tell apart two prompts whose embeddings differ in one word,
and under the cross-modality recipe the context itself is what the views change. There it gave up one side:
on the CT -> MR benchmark (seed 0, 4000 steps, ``benchmarks/RESULTS_cross_modality.md``) the right kidney was
labelled left (CT Dice 0.28); trained without mirroring it was found (0.92). Over 3 seeds the mean Dice rose
from 0.789 to 0.857 on CT and from 0.770 to 0.836 on MR (views on 80 % of the samples, the recipe then).

The rule, as TotalSegmentator's models (trained with ``nnUNetTrainerNoMirroring``): when any foreground label
name names a side (``kidney_left``, ``Left-Kidney``, ``Lt_Kidney``, ``Parotid_L``; not ``vertebrae_L5``), the
text trainers train and predict without mirroring, and say so once in the training log. Nothing else in
nnU-Net's augmentation changes. A trainer subclass with ``mirror_lateral_labels = True`` keeps mirroring. A
training resumed with ``--c`` from a checkpoint that mirrored (a model trained before this rule, or by such a
subclass) keeps mirroring to its end, and says so in the log: a model's augmentation does not change half-way.
"""
from __future__ import annotations

from typing import Iterable, List

from nnunet_causal.text.words import side_of_label


def lateral_labels(label_names: Iterable[str]) -> List[str]:
    """The names among ``label_names`` that name a side (:func:`~nnunet_causal.text.words.side_of_label`)."""
    return [n for n in label_names if side_of_label(n)]


def mirroring_note(label_names: Iterable[str]) -> str:
    """The log line of a dataset trained without mirroring because of ``lateral_labels``; '' when none."""
    lateral = lateral_labels(label_names)
    if not lateral:
        return ""
    shown = ", ".join(lateral[:6]) + (f" and {len(lateral) - 6} more" if len(lateral) > 6 else "")
    return (f"labels named by their side ({shown}): training and prediction without mirroring (a mirrored patch "
            f"shows the left structure where the right one is; nnunet_causal/training/text/mirroring.py)")
