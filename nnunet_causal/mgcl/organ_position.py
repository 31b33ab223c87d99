"""Where an organ lies in its case: the position term of the MGCL organ feature (an addition to seed 002).

Why: paired organs (left / right kidney) can look alike -- in the synthetic phantoms they are identical
ellipsoids -- so their mask-pooled features differ only by context that a briefly trained, nearly
translation-equivariant encoder does not carry. Captions then say "left" and "right" about two
indistinguishable features and MGCL cannot teach the text encoder laterality. The one thing that does tell
them apart is *where* the mask lies. OpenVocabCT's STU-Net sees whole CT volumes, where position is implicit
in the features; nnU-Net's patches are not, so the position is given explicitly: the organ feature's
projection gets a learnable linear term of the mask centroid (see
:class:`~nnunet_causal.mgcl.image_features.ImageProjection`).

Choices:

* **Case frame, not patch frame.** nnU-Net draws patches at random offsets (and 2D patches from a random
  slice), so a centroid inside the patch says little. :class:`CaseFramePatchLoader` records each patch's
  bounding box in its case; :func:`organ_positions` adds the box's lower corner to the in-patch centroid and
  divides by the case's shape - 1, mapped to ``[-1, 1]`` per axis of the preprocessed array (3 axes, also for
  2D configurations: the slice index is the first). Padding (negative box corners) is handled by the same sum.
* **No mirroring.** nnU-Net's training augmentation mirrors axes, which swaps left and right while keeping
  the label "left"; the loader refuses transforms, so MGCL sees unmirrored data (it never augmented anyway).
* **Array axes, not patient axes.** The position is that of nnU-Net's preprocessed array (after
  ``transpose_forward``); nnU-Net does not reorient images, so laterality is learnable when the dataset's
  images share an orientation (as the synthetic phantoms and most curated datasets do). Mixed orientations
  would need a reorientation before planning; not done here.
* Global (whole-patch) features get no position term: the CLIP term pairs them with whole reports.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
import torch

from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

from nnunet_causal.errors import DatasetError

#: spatial axes of a position: nnU-Net's preprocessed arrays are always (C, Z, Y, X), also for 2D plans
POSITION_DIMS = 3


class CaseFramePatchLoader(nnUNetDataLoader):
    """``nnUNetDataLoader`` whose batches also carry ``"bbox_lbs"`` ``(B, 3)`` (each patch's lower corner in
    its case's preprocessed array, 2D patches with their slice index first) and ``"case_shapes"`` ``(B, 3)``.
    Transforms are refused (mirroring would destroy laterality; see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.transforms is not None:
            raise DatasetError("MGCL patches must not be augmented: mirroring swaps left and right while the "
                               "captions keep their side (CaseFramePatchLoader takes no transforms)")
        self._boxes: List[tuple] = []

    def get_bbox(self, data_shape, force_fg, class_locations, overwrite_class=None, verbose=False):
        lbs, ubs = super().get_bbox(data_shape, force_fg, class_locations, overwrite_class, verbose)
        self._boxes.append((tuple(int(v) for v in lbs), tuple(int(v) for v in data_shape)))
        return lbs, ubs

    def generate_train_batch(self):
        self._boxes = []
        batch = super().generate_train_batch()
        if len(self._boxes) != len(batch["keys"]):
            raise DatasetError(f"nnUNetDataLoader drew {len(batch['keys'])} patches but reported "
                               f"{len(self._boxes)} boxes (an nnU-Net version whose loader does not call get_bbox "
                               f"once per patch)")
        batch["bbox_lbs"] = torch.tensor([b[0] for b in self._boxes], dtype=torch.float32)
        batch["case_shapes"] = torch.tensor([b[1] for b in self._boxes], dtype=torch.float32)
        return batch


def organ_positions(seg: torch.Tensor, values: Sequence[int], bbox_lbs: torch.Tensor, case_shapes: torch.Tensor
                    ) -> torch.Tensor:
    """Mask centroids in the case frame, ``(B, K, 3)`` in ``[-1, 1]`` (0 for a structure absent from a patch).

    ``seg``: ``(B, 1, *patch)`` label map of the patches (2D or 3D); ``bbox_lbs`` / ``case_shapes``: ``(B, 3)``
    patch corners and case shapes (:class:`CaseFramePatchLoader`). A 2D patch's centroid is its slice in the
    first axis and the in-plane centroid in the other two.
    """
    seg = seg[:, 0].long()
    b, spatial = seg.shape[0], seg.shape[1:]
    n_case = case_shapes.shape[1]
    if len(spatial) > n_case:
        raise DatasetError(f"patches with {len(spatial)} spatial axes in cases with {n_case}")
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32, device=seg.device) for n in spatial],
                           indexing="ij")
    masks = torch.stack([(seg == v) for v in values], 1).float()                 # (B, K, *patch)
    count = masks.flatten(2).sum(-1)                                              # (B, K)
    in_patch = [(masks * g).flatten(2).sum(-1) / count.clamp_min(1.0) for g in grids]
    lead = n_case - len(spatial)                                                  # 1 for 2D patches of 3D arrays
    zeros = torch.zeros_like(count)
    centroid = torch.stack([zeros] * lead + in_patch, -1)                         # (B, K, 3), patch frame
    lbs = bbox_lbs.to(seg.device, torch.float32)[:, None]
    extent = (case_shapes.to(seg.device, torch.float32)[:, None] - 1.0).clamp_min(1.0)
    pos = 2.0 * (centroid + lbs) / extent - 1.0
    pos = torch.where(case_shapes.to(seg.device)[:, None] > 1, pos, torch.zeros_like(pos))  # a flat axis says 0
    return torch.where((count > 0)[..., None], pos.clamp(-1.0, 1.0), torch.zeros_like(pos))


def slice_positions(z: Sequence[int], case_shapes: Sequence[Sequence[int]]) -> tuple:
    """``(bbox_lbs, case_shapes)`` tensors for whole 2D slices cut from cases at slice ``z`` (corner (z, 0, 0));
    the form :func:`organ_positions` takes, for evaluation code that slices cases itself."""
    lbs = np.zeros((len(z), POSITION_DIMS), np.float32)
    lbs[:, 0] = np.asarray(z, np.float32)
    return torch.from_numpy(lbs), torch.tensor(np.asarray(case_shapes, np.float32))
