"""Presence decisions per prompt and case: the presence head's scores, the validation calibration, the image's
domain distance and what the model can support at all.

A prompt is decided for one case in this order (the first rule that applies gives ``present`` and
``presence_reason``):

1. **The prompt's structure is outside what the model supports** (:func:`prompt_support`): an
   open-vocabulary prompt whose structure the knowledge base places in a body region none of the model's
   trained structures belongs to ("brain" asked of an abdominal model) -> absent, whatever the image.
2. **No usable calibration** (:func:`load_calibrations`): the file is missing, unreadable or written for
   another model (other dataset, prompts or presence-head weights) -> ``present: null``, masks not
   filtered, the sidecar names the file and what is wrong (a warning is logged once per file).
3. **The image is unlike every training image** (:func:`domain_ratio`): the presence head's pooled
   per-voxel embeddings ``[mean F, max F]`` of the case's sliding-window patches lie far from those of the
   validation fold -- another body region or modality than the model was trained on -> every prompt
   absent (a model cannot vouch for a structure in an image it has never seen the like of).
4. **The presence score**: the case-level score (largest patch-level probability over tiles and mirrors,
   :mod:`nnunet_causal.networks.presence_head`) against the fold's calibrated threshold.

Domain distance: per patch ``d = sqrt(mean_j ((p_j - mu_j) / sigma_j)^2)`` (diagonal z-score of the pooled
vector ``p`` against the validation patches' mean ``mu`` and spread ``sigma``); per case the median over its
patches; the case is out of domain when ``d > margin * (largest validation case's d)``, ``margin`` =
:data:`DOMAIN_MARGIN` (no rule with fewer than :data:`MIN_DOMAIN_PATCHES` validation patches). Written by hand: a diagonal-Gaussian novelty score on 2E numbers needs no library.

``fold_X/presence_calibration.json`` is written after nnU-Net's validation by
:mod:`nnunet_causal.training.text.presence`: ``threshold``, the rates it gives, ``domain`` (``mean``,
``std``, ``case_distances``, ``threshold``) and ``model`` (:func:`model_identity`). With several folds the
scores, thresholds and domain ratios are the folds' means.

A model without a presence head (trained with a ``*_NoPresence`` trainer or before the head was the
default) gets ``present: null`` and a note, never a guess.
"""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import torch

logger = logging.getLogger(__name__)

CALIBRATION_FILE = "presence_calibration.json"
DEFAULT_THRESHOLD = 0.5
#: a case is out of domain when its distance exceeds this multiple of the largest validation case's
DOMAIN_MARGIN = 2.0
#: fewer validation patches than this give no domain spread: the domain rule is off for the model
MIN_DOMAIN_PATCHES = 4
#: the knowledge base's region of structures found anywhere (polyp, skin, lymph node): never a verdict
WHOLE_BODY = "whole_body"
NO_HEAD_NOTE = "unknown: this model has no presence head (trained without one); masks are not filtered"


@dataclass
class PresenceDecision:
    present: Optional[bool]
    score: Optional[float]
    threshold: Optional[float]
    calibration: str
    reason: Optional[str] = None
    #: the case's domain distance as a multiple of the calibrated limit (> 1: out of domain); None unchecked
    domain: Optional[float] = None

    def as_record(self) -> dict:
        return {"present": self.present, "presence_score": self.score, "presence_threshold": self.threshold,
                "presence_calibration": self.calibration, "presence_reason": self.reason,
                "presence_domain_ratio": self.domain}


# ---------------------------------------------------------------------------- model identity
def presence_weights_digest(state_dict: dict) -> Optional[str]:
    """SHA-256 (first 16 hex digits) of the presence head's weights in ``state_dict``; None without a head."""
    keys = sorted(k for k in state_dict if k.startswith("presence."))
    if not keys:
        return None
    h = hashlib.sha256()
    for k in keys:
        h.update(k.encode())
        h.update(state_dict[k].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def model_identity(plans: dict, configuration: str, state_dict: dict) -> dict:
    """What a calibration file records of the model it calibrates: dataset, plans, configuration, trained
    prompts and the digest of the presence head's weights."""
    settings = plans.get("nnunet_causal") or {}
    return {"dataset": plans.get("dataset_name"), "plans": plans.get("plans_name"), "configuration": configuration,
            "prompts": list(settings.get("prompts") or []), "presence_weights": presence_weights_digest(state_dict)}


def _identity_problem(recorded: dict, plans: Optional[dict], state_dict: Optional[dict]) -> Optional[str]:
    if plans is not None:
        prompts = list(((plans.get("nnunet_causal") or {}).get("prompts")) or [])
        if recorded.get("dataset") not in (None, plans.get("dataset_name")):
            return f"it calibrates a model of dataset {recorded.get('dataset')}, not {plans.get('dataset_name')}"
        if recorded.get("prompts") is not None and list(recorded["prompts"]) != prompts:
            return f"it calibrates a model of prompts {recorded['prompts']}, not {prompts}"
    if state_dict is not None and recorded.get("presence_weights"):
        digest = presence_weights_digest(state_dict)
        if digest != recorded["presence_weights"]:
            return (f"it calibrates other presence-head weights ({recorded['presence_weights']}, this checkpoint "
                    f"has {digest}): another model, or validation run on another checkpoint")
    return None


# ---------------------------------------------------------------------------- calibration files
def load_calibrations(model_folder: Optional[str], folds: Sequence, parameters: Optional[Sequence[dict]] = None,
                      plans: Optional[dict] = None) -> List[Optional[dict]]:
    """Each fold's calibration. A file that is missing, unreadable, not a calibration, or written for another
    model (``plans``: the model's plans; ``parameters``: each fold's loaded state_dict, in ``folds`` order)
    becomes ``{"problem": "<file>: <what is wrong>"}`` with a logged warning naming the file; its decisions
    are then ``present: null`` and the masks are not filtered. None only without a model folder."""
    if model_folder and plans is None:
        try:
            plans = json.loads((Path(model_folder) / "plans.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            plans = None   # the predictor has read it already; identity is then checked on the weights only
    out: List[Optional[dict]] = []
    for i, f in enumerate(folds):
        if not model_folder:
            out.append(None)
            continue
        path = Path(model_folder) / f"fold_{f}" / CALIBRATION_FILE
        problem = None
        cal: dict = {}
        if not path.is_file():
            problem = "missing (validation did not finish, or the model was copied without it); re-run " \
                      "validation to write it: nnUNetv2_train DATASET CONFIGURATION FOLD -tr TRAINER --val"
        else:
            try:
                cal = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(cal, dict):
                    raise ValueError("not a JSON object")
                t = float(cal["threshold"])
                if not 0 <= t <= 1:
                    raise ValueError(f"threshold {t} outside [0, 1]")
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
                problem = f"not a readable presence calibration ({type(e).__name__}: {e}); re-run validation " \
                          f"(nnUNetv2_train ... --val) to rewrite it"
            else:
                state = parameters[i] if parameters is not None and i < len(parameters) else None
                problem = _identity_problem(cal.get("model") or {}, plans, state)
        if problem:
            message = f"{path}: {problem}"
            logger.warning("presence calibration %s; masks are not filtered by presence", message)
            out.append({"problem": message})
        else:
            out.append(cal)
    return out


def calibration_problems(calibrations: Sequence[Optional[dict]]) -> List[str]:
    return [c["problem"] for c in calibrations if c and c.get("problem")]


# ---------------------------------------------------------------------------- image domain
@contextmanager
def recording_pooled_features(network) -> Iterator[List[torch.Tensor]]:
    """Within the block, every presence-head evaluation of ``network`` appends its pooled per-voxel
    embeddings ``(B, 2E)`` (float32, CPU) to the yielded list (a forward hook; nothing is recorded for a
    network without a presence head)."""
    pooled: List[torch.Tensor] = []
    head = getattr(network, "presence", None)
    handle = None
    if head is not None:
        handle = head.image.register_forward_hook(lambda m, args, out: pooled.append(args[0].detach().float().cpu()))
    try:
        yield pooled
    finally:
        if handle is not None:
            handle.remove()


def _patch_distances(pooled: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (((pooled.float() - mean) / std) ** 2).mean(1).sqrt()


def domain_statistics(cases: Sequence[torch.Tensor], margin: float = DOMAIN_MARGIN) -> dict:
    """Domain statistics of the validation cases (each ``(patches, 2E)`` pooled embeddings): mean and spread
    per dimension, each case's median patch distance, and the out-of-domain threshold. With fewer than
    :data:`MIN_DOMAIN_PATCHES` validation patches no spread can be estimated (one patch is at distance 0 from
    itself, so any rounding would put the training image itself out of domain): the threshold is None and the
    domain rule is off for the model."""
    allp = torch.cat([c.float() for c in cases], 0)
    mean = allp.mean(0)
    std = allp.std(0, unbiased=False).clamp_min(1e-3 * float(allp.std()) + 1e-6)
    dist = [float(_patch_distances(c, mean, std).median()) for c in cases]
    enough = allp.shape[0] >= MIN_DOMAIN_PATCHES
    return {"mean": [round(float(x), 6) for x in mean], "std": [round(float(x), 6) for x in std],
            "case_distances": [round(d, 4) for d in dist], "margin": margin,
            "threshold": round(margin * max(dist), 4) if enough else None,
            "rule": ("out of domain when the median patch distance exceeds margin x the largest validation case's"
                     if enough else f"off: {allp.shape[0]} validation patch(es), fewer than {MIN_DOMAIN_PATCHES} "
                                    f"needed to estimate the training domain's spread")}


def domain_ratio(pooled: Sequence[torch.Tensor], calibrations: Sequence[Optional[dict]]) -> Optional[float]:
    """A case's domain distance over its threshold (> 1: unlike every training image), the folds' mean.
    ``pooled``: what :func:`recording_pooled_features` recorded for the case (all folds, in fold order, the
    same number of patches each). None when a fold has no domain statistics."""
    stats = [(c or {}).get("domain") for c in calibrations]
    if not pooled or not stats or any(s is None or s.get("threshold") is None for s in stats):
        return None
    allp = torch.cat(list(pooled), 0)
    per_fold = allp.view(len(stats), -1, allp.shape[-1]) if allp.shape[0] % len(stats) == 0 else None
    if per_fold is None:
        return None
    ratios = []
    for p, s in zip(per_fold, stats):
        mean, std = torch.tensor(s["mean"]), torch.tensor(s["std"])
        if mean.numel() != p.shape[-1]:
            return None
        ratios.append(float(_patch_distances(p, mean, std).median()) / max(float(s["threshold"]), 1e-6))
    return sum(ratios) / len(ratios)


# ---------------------------------------------------------------------------- what a model supports
def _regions(term) -> set:
    """Body regions the knowledge base (:mod:`nnunet_causal.text.knowledge`, ``region``) gives a term (empty
    when it records none)."""
    for attr in ("body_regions", "regions", "body_region", "region"):
        value = getattr(term, attr, None)
        if value:
            return {value} if isinstance(value, str) else set(value)
    return set()


def prompt_support(terms: Sequence[str], source: str, trained_structures: Sequence[str]) -> Optional[str]:
    """Why a prompt cannot be supported by the model at all, or None. Trained prompts are always supported;
    an open-vocabulary prompt is not when the knowledge base places its structures in body regions that none
    of the trained structures belongs to. Without region data for either side the presence score decides."""
    if source == "trained" or not terms:
        return None
    from nnunet_causal.text.vocabulary import load_vocabulary

    vocab = load_vocabulary("all")
    asked = set().union(*(_regions(vocab.terms[t]) for t in terms if t in vocab.terms))
    known = set().union(*(_regions(vocab.terms[t]) for t in trained_structures if t in vocab.terms)) \
        if trained_structures else set()
    if asked and known and not asked & known and WHOLE_BODY not in asked | known:
        return (f"'{', '.join(terms)}' belongs to the {', '.join(sorted(asked))}; this model's structures belong to "
                f"the {', '.join(sorted(known))}")
    return None


# ---------------------------------------------------------------------------- decisions
def decide(scores: Optional[torch.Tensor], calibrations: Sequence[Optional[dict]],
           domain: Optional[float] = None, unsupported: Optional[Sequence[Optional[str]]] = None
           ) -> List[PresenceDecision]:
    """``scores (folds, G)`` presence probabilities -> one decision per output (None scores: no head).
    ``domain``: the case's :func:`domain_ratio`; ``unsupported[g]``: :func:`prompt_support` of output g."""
    if scores is None:
        return []
    score = scores.float().mean(0)
    unsupported = list(unsupported) if unsupported is not None else [None] * len(score)
    problems = calibration_problems(calibrations)
    usable = [c for c in calibrations if c and not c.get("problem")]
    thresholds = [float(c["threshold"]) for c in usable] or [DEFAULT_THRESHOLD]
    threshold = sum(thresholds) / len(thresholds)
    how = "validation fold" if usable else "uncalibrated: default threshold 0.5"
    ratio = None if domain is None else round(float(domain), 4)
    out = []
    for s, why_not in zip(score, unsupported):
        s = round(float(s), 6)
        if why_not:
            out.append(PresenceDecision(False, s, None, how, f"not supported by this model: {why_not}", ratio))
        elif problems:
            out.append(PresenceDecision(None, s, None, "unknown: " + "; ".join(problems) + "; masks are not "
                                        "filtered", None, ratio))
        elif domain is not None and domain > 1:
            out.append(PresenceDecision(False, s, round(threshold, 6), how,
                                        f"the image is unlike this model's training images (domain distance "
                                        f"{domain:.2f} x the calibrated limit): another body region or modality",
                                        ratio))
        else:
            present = s >= threshold
            out.append(PresenceDecision(bool(present), s, round(threshold, 6), how,
                                        None if present else "presence score below the calibrated threshold", ratio))
    return out


def case_records(scores: Optional[torch.Tensor], calibrations: Sequence[Optional[dict]],
                 pooled: Optional[Sequence[torch.Tensor]] = None, assignments: Sequence = ()) -> Optional[List[dict]]:
    """The sidecar's presence records of one case (None without a presence head): ``scores (folds, G)``,
    ``pooled`` as recorded by :func:`recording_pooled_features` around the case's sliding window, and the
    predictor's prompt assignments (``terms``, ``source``, ``trained_structures``; may be empty)."""
    if scores is None:
        return None
    trained = sorted({t for a in assignments for t in a.trained_structures}) if assignments else []
    model_terms = [t for c in calibrations if c and not c.get("problem") for t in (c.get("model") or {}).get(
        "prompts", [])] or trained
    unsupported = [prompt_support(a.terms, a.source, model_terms) for a in assignments] if assignments else None
    if unsupported is not None and len(unsupported) != scores.shape[-1]:
        unsupported = None
    ratio = domain_ratio(pooled, calibrations) if pooled else None
    return [d.as_record() for d in decide(scores, calibrations, ratio, unsupported)]


def unknown_record() -> dict:
    return {"present": None, "presence_score": None, "presence_threshold": None, "presence_calibration": NO_HEAD_NOTE,
            "presence_reason": None, "presence_domain_ratio": None}
