"""Presence training and calibration, part of every text trainer (``nnUNetTrainerText`` and its subclasses).

The network gets the presence head of :mod:`nnunet_causal.networks.presence_head` (plans entry
``"presence"``, written by :func:`presence_settings`), and the loss gets one term,

    L = L_seg + w * BCE(s_bk, 1[structure k has a voxel in patch b])      (w = ``loss_weight``),

over the dataset's prompts (the synonym drawn this step) plus ``negatives`` text embeddings of structures the
dataset never contains (knowledge-base terms sharing no word with the dataset's structures, apart from side
words), whose target is always 0 (the two parts are averaged separately and weigh alike, so 32
always-absent negatives do not teach the head to call everything absent) -- so an open-vocabulary prompt for
something not in the data ("brain" on abdominal CT) learns to score low. Partial labels (dataset.json
``"partial_labels"``) mask the term like the segmentation loss; ignore-label voxels never count as presence.

Calibration: after nnU-Net's validation (``perform_actual_validation``), every validation case is predicted
with the same sliding window as ``nnUNetv2_predict_text`` (mirroring on); positives are the (case, structure)
pairs whose structure has a voxel in the case, negatives the others plus every negative text. The threshold
is the highest that keeps ``min_kept`` (98 %) of the validation positives, with a log-odds margin (a
balanced-accuracy threshold drops present structures on held-out cases). The same pass records the
image-domain statistics of :mod:`nnunet_causal.inference.presence` (pooled per-voxel embeddings of the
validation cases), so that prediction can tell an image unlike every training image. ``fold_X/
presence_calibration.json`` holds the threshold, the rates it gives, the domain statistics and the model's
identity (:func:`nnunet_causal.inference.presence.model_identity`).
"""
from __future__ import annotations

import os
import re
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch import nn


SIDE_WORDS = {"left", "right", "upper", "lower", "middle", "inferior", "superior", "anterior", "posterior", "of",
              "the", "and", "gland", "lobe"}


def _words(text: str) -> set:
    return set(re.findall(r"[a-z]+", text.lower().replace("_", " "))) - SIDE_WORDS


def negative_prompts(dataset_prompts: dict, count: int) -> List[str]:
    """Up to ``count`` knowledge-base structures (as text) that share no word with any of the dataset's
    structure names or prompts; spread evenly over the vocabulary, deterministic."""
    from nnunet_causal.text.label_text import label_to_text
    from nnunet_causal.text.vocabulary import load_vocabulary

    taken = set()
    for name, texts in dataset_prompts.items():
        for t in [name, *texts]:
            taken |= _words(t)
    vocab = load_vocabulary("all")
    free = []
    for name, term in vocab.terms.items():
        words = set().union(*(_words(t) for t in [name, *term.synonyms, term.base or ""]))
        if not words & taken:
            free.append(label_to_text(name))
    free = list(dict.fromkeys(free))
    if len(free) <= count:
        return free
    pick = np.linspace(0, len(free) - 1, count).round().astype(int)
    return [free[i] for i in dict.fromkeys(pick.tolist())]


class PresenceLoss(nn.Module):
    """``seg_loss(output, target) + weight * BCE(presence logits, presence targets)`` in training mode (the
    network keeps its last presence logits); validation loss is the segmentation loss alone."""

    def __init__(self, seg_loss: nn.Module, network: Callable[[], nn.Module], weight: float,
                 prompt_mask: Callable[[], Optional[torch.Tensor]]):
        super().__init__()
        self.seg_loss, self.network, self.weight, self.prompt_mask = seg_loss, network, weight, prompt_mask

    def forward(self, output, target):
        loss = self.seg_loss(output, target)
        net = self.network()
        logits, net.last_presence = net.last_presence, None
        if not net.training or logits is None:
            return loss
        full = target[0] if isinstance(target, (list, tuple)) else target
        k = net.num_prompts
        if not net.add_background:  # region-based: one binary target channel per prompt
            present = (full[:, :k] > 0).flatten(2).any(2).float()
        else:
            labels = full[:, 0].long()
            values = torch.arange(1, k + 1, device=labels.device).view(1, k, *[1] * (labels.ndim - 1))
            present = (labels.unsqueeze(1) == values).flatten(2).any(2).float()
        targets = torch.cat((present, torch.zeros_like(logits[:, k:])), 1)
        weights = torch.ones_like(targets)
        mask = self.prompt_mask()
        if mask is not None:
            weights[:, :k] = mask.to(weights)
        bce = nn.functional.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none") * weights
        term = bce[:, :k].sum() / weights[:, :k].sum().clamp_min(1)
        if logits.shape[1] > k:  # the negatives (always 0) weigh as much as the dataset's prompts together
            term = (term + bce[:, k:].mean()) / 2
        return loss + self.weight * term


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def choose_threshold(scores: Sequence[float], present: Sequence[bool], min_kept: float = 0.98) -> dict:
    """The highest threshold that keeps at least ``min_kept`` of the validation positives ("a present
    structure must not be dropped"), placed half-way in log-odds between the lowest kept positive and the
    next lower score (a margin for unseen cases); with the rates it gives on the validation fold."""
    s, y = np.asarray(scores, float), np.asarray(present, bool)
    if not y.any() or y.all():
        return {"threshold": 0.5, "note": "validation has only one class; default 0.5", "positives": int(y.sum()),
                "negatives": int((~y).sum())}
    pos = np.sort(s[y])
    boundary = pos[int(np.floor((1 - min_kept) * len(pos)))]
    below = s[s < boundary]
    t = float(1 / (1 + np.exp(-(_logit(np.array([below.max() if below.size else boundary / 2]))[0]
                               + _logit(np.array([boundary]))[0]) / 2))) if below.size else float(boundary / 2)
    kept, masked = float((s[y] >= t).mean()), float((s[~y] < t).mean())
    return {"threshold": t, "rule": f"keep >= {min_kept:.0%} of validation positives", "kept_present": kept,
            "masked_absent": masked, "balanced_accuracy": (kept + masked) / 2, "positives": int(y.sum()),
            "negatives": int((~y).sum())}


def presence_settings(dataset_prompts: dict, hidden_dim: int, loss_weight: float, negatives: int) -> dict:
    """The plans' ``"presence"`` entry: head width, loss weight and the negative texts (fixed at plan time so
    that a resumed run and prediction rebuild the same head)."""
    return {"hidden_dim": int(hidden_dim), "loss_weight": float(loss_weight),
            "negatives": negative_prompts(dataset_prompts, int(negatives))}


def embed_presence_negatives(network: nn.Module, settings: dict, encoder) -> List[str]:
    """Give a network with a presence head the text embeddings of the plans' negative texts (training only,
    not saved); returns the texts (empty without a head)."""
    texts = (settings.get("presence") or {}).get("negatives") or []
    if network.presence is None or not texts:
        return []
    network.presence_negatives = encoder.encode(texts).to(device=network.prompt_embeddings.device,
                                                          dtype=network.prompt_embeddings.dtype)
    return list(texts)


def write_calibration(output_folder: str, calibration: dict) -> str:
    """``output_folder/presence_calibration.json`` written atomically; returns its path."""
    from nnunet_causal.files import write_json_atomic
    from nnunet_causal.inference.presence import CALIBRATION_FILE

    path = os.path.join(output_folder, CALIBRATION_FILE)
    write_json_atomic(path, calibration)
    return path


@torch.inference_mode()
def calibrate_presence(trainer, net: nn.Module) -> dict:
    """Case-level presence scores of the validation fold -> threshold, and the domain statistics of the
    validation images (see the module docstring). ``net`` is the trainer's network, unwrapped."""
    from nnunet_causal.inference.feature_window import aggregate_case
    from nnunet_causal.inference.presence import domain_statistics, model_identity, recording_pooled_features
    from nnunet_causal.inference.text_predictor import nnUNetTextPredictor

    net.eval()
    predictor = nnUNetTextPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                    perform_everything_on_device=True, device=trainer.device, allow_tqdm=False)
    predictor.manual_initialization(net, trainer.plans_manager, trainer.configuration_manager, [net.state_dict()],
                                    trainer.dataset_json, type(trainer).__name__,
                                    trainer.inference_allowed_mirroring_axes)
    k = net.num_prompts
    rows = net.prompt_embeddings if net.presence_negatives is None else \
        torch.cat((net.prompt_embeddings, net.presence_negatives), 0)
    _, val_keys = trainer.do_split()
    dataset = trainer.dataset_class(trainer.preprocessed_dataset_folder, val_keys,
                                    folder_with_segs_from_previous_stage=trainer.folder_with_segs_from_previous_stage)
    scores, present, pooled = [], [], []
    net.set_inference_prompts(rows.detach().clone())
    try:
        for key in val_keys:
            data, seg, _, _ = dataset.load_case(key)
            with recording_pooled_features(net) as case_pooled:
                agg = aggregate_case(predictor, torch.from_numpy(np.asarray(data[:], dtype=np.float32)))
            pooled.append(torch.cat(case_pooled, 0))
            seg = np.asarray(seg[:])
            s = agg.presence[0].tolist()
            scores += s
            present += [bool((seg == v).any()) for v in range(1, k + 1)] + [False] * (len(s) - k)
    finally:
        net.set_inference_prompts(None)
    cal = choose_threshold(scores, present, getattr(trainer, "presence_min_kept", 0.98))
    cal.update(cases=len(val_keys), prompts=k, negative_texts=len(rows) - k)
    if pooled:
        cal["domain"] = domain_statistics(pooled)
    cal["model"] = model_identity(trainer.plans_manager.plans, trainer.configuration_name, net.state_dict())
    return cal
