"""Presence decisions per prompt and case, from the presence head's scores and the validation calibration.

A case-level score is the largest patch-level presence probability over the sliding window (tiles and
mirrors) -- see :mod:`nnunet_causal.networks.presence_head`. Each fold's threshold comes from
``fold_X/presence_calibration.json`` (written after nnU-Net's validation by
:mod:`nnunet_causal.training.text.presence`); a fold without that file uses 0.5, the decision BCE trains
for, and the sidecar says so. With several folds, the score and the threshold are the folds' means.

A model without a presence head (trained before it existed, or with another trainer) gets ``present: null``
and a note, never a guess.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from nnunet_causal.errors import ModelError

CALIBRATION_FILE = "presence_calibration.json"
DEFAULT_THRESHOLD = 0.5
NO_HEAD_NOTE = "unknown: this model has no presence head (trained without one); masks are not filtered"


@dataclass
class PresenceDecision:
    present: Optional[bool]
    score: Optional[float]
    threshold: Optional[float]
    calibration: str

    def as_record(self) -> dict:
        return {"present": self.present, "presence_score": self.score, "presence_threshold": self.threshold,
                "presence_calibration": self.calibration}


def load_calibrations(model_folder: Optional[str], folds: Sequence) -> List[Optional[dict]]:
    """Each fold's calibration (None where the fold has no calibration file)."""
    out = []
    for f in folds:
        path = Path(model_folder) / f"fold_{f}" / CALIBRATION_FILE if model_folder else None
        if path is None or not path.is_file():
            out.append(None)
            continue
        try:
            cal = json.loads(path.read_text(encoding="utf-8"))
            float(cal["threshold"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelError(f"{path}: not a presence calibration ({e}); delete it to use the 0.5 default or "
                             f"re-run validation (nnUNetv2_train ... --val)") from e
        out.append(cal)
    return out


def decide(scores: Optional[torch.Tensor], calibrations: Sequence[Optional[dict]]) -> List[PresenceDecision]:
    """``scores (folds, G)`` presence probabilities -> one decision per output (None scores: no head)."""
    if scores is None:
        return []
    thresholds = [float(c["threshold"]) if c else DEFAULT_THRESHOLD for c in calibrations] or [DEFAULT_THRESHOLD]
    if len(thresholds) != scores.shape[0]:
        thresholds = [thresholds[0]] * scores.shape[0]
    calibrated = sum(c is not None for c in calibrations)
    how = ("validation fold" if calibrated == len(calibrations) and calibrated else
           "uncalibrated: default threshold 0.5" if not calibrated else
           f"validation fold for {calibrated} of {len(calibrations)} folds, 0.5 for the others")
    score = scores.float().mean(0)
    threshold = sum(thresholds) / len(thresholds)
    return [PresenceDecision(bool(s >= threshold), round(float(s), 6), round(threshold, 6), how) for s in score]


def unknown_record() -> dict:
    return {"present": None, "presence_score": None, "presence_threshold": None, "presence_calibration": NO_HEAD_NOTE}
