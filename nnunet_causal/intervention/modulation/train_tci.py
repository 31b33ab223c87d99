"""``nnunet_causal train-tci``: train the FiLM generator of test-time intervention on a frozen, trained model.

Post-hoc on purpose (not a trainer variant): it works on every text model already trained (stock
``nnUNetTrainerText`` and the causal variants), needs no retraining of the segmentation network, and leaves
the checkpoint untouched -- a prediction without a command is bit-identical to the model's normal one,
because the generator is only used when a command is given (and starts as the identity).

Data are nnU-Net's: the preprocessed cases of the model's dataset (``$nnUNet_preprocessed/DATASET/
DATA_IDENTIFIER``, or ``--preprocessed``), the fold's training cases from ``splits_final.json`` and patches
of the planned size from ``nnUNetDataLoader`` (foreground-oversampled, no augmentation: the simulated
corrections are the augmentation). Each step draws, per sample, a target structure present in the patch,
an action (expand / shrink / remove / add) and a strength, builds the corrected mask relative to the frozen
model's own prediction (:mod:`~nnunet_causal.intervention.modulation.corrections`) and minimises

    L = BCE(l_k', W) + Dice(sigmoid(l_k'), W) + lambda_keep * mean_{j != k} BCE(l_j', sigmoid(l_j))

where ``l'`` are the modulated logits, ``l`` the unmodulated ones and ``W`` the wanted mask of target ``k``:
the command moves the target the right way and other structures stay as the model had them.

``film_stages = n`` (``--film-stages``, default :data:`DEFAULT_FILM_STAGES`) lets the generator modulate the
last ``n`` decoder stages only (``0``: all, the behaviour of weights written before the option); the
modulated pass then resumes the decoder at the first of them from the unmodulated pass's output
(:func:`~nnunet_causal.intervention.modulation.decoder_tail.decode_tail`), as an edit does.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from nnunet_causal.errors import DatasetError
from nnunet_causal.intervention.modulation.cached_network import apply_bottleneck, decode, encode
from nnunet_causal.intervention.modulation.decoder_tail import decode_tail
from nnunet_causal.intervention.modulation.corrections import DEFAULT_RADII, axis_radii, fade_part, wanted_mask
from nnunet_causal.intervention.modulation.film import (FILM_ACTIONS, STRENGTH_VALUES, FiLMGenerator,
                                                        condition_vectors, decoder_stage_channels, last_stages,
                                                        target_queries)
from nnunet_causal.intervention.modulation.frozen_model import load_frozen_predictor, parse_fold
from nnunet_causal.intervention.modulation.weights import save_tci

logger = logging.getLogger(__name__)
STRENGTH_WORDS = tuple(STRENGTH_VALUES)
#: decoder stages a new generator modulates, counted from the last (0: all)
DEFAULT_FILM_STAGES = 2


def preprocessed_folder(predictor, override: Optional[str] = None) -> Path:
    """The model's preprocessed data folder (``--preprocessed`` or nnU-Net's default place)."""
    if override:
        folder = Path(override)
    else:
        root = os.environ.get("nnUNet_preprocessed")
        if not root:
            raise DatasetError("the environment variable nnUNet_preprocessed is not set: export it (eval "
                               "\"$(nnunet_causal env)\") or pass --preprocessed FOLDER")
        folder = Path(root) / predictor.plans_manager.dataset_name / predictor.configuration_manager.data_identifier
    if not folder.is_dir():
        raise DatasetError(f"{folder} does not exist: train-tci needs the model's preprocessed training data; run "
                           f"nnUNetv2_plan_and_preprocess for {predictor.plans_manager.dataset_name} (configuration "
                           f"of this model) or pass --preprocessed FOLDER")
    return folder


def training_identifiers(folder: Path, fold, dataset_class) -> List[str]:
    """The fold's training cases (``splits_final.json`` beside the data folder), all cases for fold 'all' or
    when no split file exists (logged)."""
    everything = list(dataset_class.get_identifiers(str(folder)))
    if not everything:
        raise DatasetError(f"{folder} holds no preprocessed cases")
    splits = folder.parent / "splits_final.json"
    if fold == "all" or not splits.is_file():
        if fold != "all":
            logger.warning("%s not found: training on all %d preprocessed cases", splits, len(everything))
        return everything
    table = json.loads(splits.read_text(encoding="utf-8"))
    if int(fold) >= len(table):
        raise DatasetError(f"{splits} has {len(table)} folds, fold {fold} is not among them")
    ids = [i for i in table[int(fold)]["train"] if i in set(everything)]
    if not ids:
        raise DatasetError(f"none of fold {fold}'s training cases in {splits} is in {folder}")
    return ids


def structure_masks(seg: torch.Tensor, label_manager) -> torch.Tensor:
    """(B, K, *spatial) bool masks of the trained structures from a label patch (B, 1, *spatial)."""
    if label_manager.has_regions:
        regions = label_manager.foreground_regions
    else:
        regions = label_manager.foreground_labels
    masks = []
    for r in regions:
        vals = torch.as_tensor(list(r) if isinstance(r, (list, tuple)) else [r], device=seg.device)
        masks.append(torch.isin(seg[:, 0], vals))
    return torch.stack(masks, 1)


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, prob.ndim))
    inter = (prob * target * valid).sum(dims)
    denom = ((prob + target) * valid).sum(dims)
    return (1 - (2 * inter + 1) / (denom + 1)).mean()


class TCITrainer:
    """One fold's generator training (the command calls :meth:`run`; tests call it with a few steps)."""

    def __init__(self, model_folder, fold="0", checkpoint: str = "checkpoint_final.pth", device: str = "cpu",
                 preprocessed: Optional[str] = None, batch_size: Optional[int] = None, lr: float = 1e-3,
                 keep_weight: float = 1.0, radii: Optional[dict] = None, seed: int = 0, hidden_dim: int = 128,
                 film_stages: int = DEFAULT_FILM_STAGES):
        from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        self.model_folder, self.fold, self.checkpoint = Path(model_folder), parse_fold(fold), checkpoint
        self.device = torch.device(device)
        self.predictor = load_frozen_predictor(self.model_folder, self.fold, checkpoint, self.device)
        self.net = self.predictor.network
        self.lm = self.predictor.label_manager
        cm = self.predictor.configuration_manager
        self.patch_size = list(cm.patch_size)
        self.spacing = list(cm.spacing)
        folder = preprocessed_folder(self.predictor, preprocessed)
        dataset_class = infer_dataset_class(str(folder))
        ids = training_identifiers(folder, self.fold, dataset_class)
        torch.manual_seed(seed)
        np.random.seed(seed)
        self.generator_rng = torch.Generator().manual_seed(seed)
        self.batch_size = int(batch_size or cm.batch_size)
        self.loader = nnUNetDataLoader(dataset_class(str(folder), ids), self.batch_size, self.patch_size,
                                       self.patch_size, self.lm, oversample_foreground_percent=1.0)
        self.radii = dict(radii or DEFAULT_RADII)
        self.keep_weight, self.lr, self.seed = keep_weight, lr, seed
        self.num_structures = self.net.num_prompts
        self.offset = int(self.net.add_background)
        with torch.no_grad():
            probe = torch.zeros((1, len(self.predictor.dataset_json["channel_names"]), *self.patch_size),
                                device=self.device)
            channels = decoder_stage_channels(self.net, apply_bottleneck(self.net, encode(self.net, probe)))
            self.queries = target_queries(self.net).detach()
        cond_dim = self.queries.shape[1] + len(FILM_ACTIONS) + 1
        if film_stages < 0:
            raise DatasetError(f"--film-stages must be 0 (all) or a positive number, got {film_stages}")
        self.film_stages = int(film_stages)
        stages = last_stages(len(channels), film_stages or None)
        self.generator = FiLMGenerator(cond_dim, channels, hidden_dim, stages).to(self.device)
        self.optimizer = torch.optim.AdamW(self.generator.parameters(), lr=lr, weight_decay=1e-4)
        self.num_cases = len(ids)

    # ---------------------------------------------------------------- one step
    def _draw(self, gt: torch.Tensor):
        """Per sample: target index, action index, strength word (targets present in the patch first)."""
        b = gt.shape[0]
        g = self.generator_rng
        present = gt.flatten(2).any(-1)  # (B, K)
        targets, actions, strengths = [], [], []
        for i in range(b):
            cand = torch.nonzero(present[i]).flatten()
            pool = cand if len(cand) else torch.arange(self.num_structures)
            targets.append(int(pool[torch.randint(len(pool), (1,), generator=g)]))
            actions.append(int(torch.randint(len(FILM_ACTIONS), (1,), generator=g)))
            strengths.append(STRENGTH_WORDS[int(torch.randint(len(STRENGTH_WORDS), (1,), generator=g))])
        return targets, actions, strengths

    def step(self) -> dict:
        batch = next(self.loader)
        x = batch["data"].to(self.device)
        seg = batch["target"].to(self.device).long()
        valid = ((seg[:, 0] >= 0) & (seg[:, 0] != (self.lm.ignore_label if self.lm.ignore_label is not None
                                                    else -1))).float()
        gt = structure_masks(seg.clamp_min(0), self.lm)
        targets, actions, strengths = self._draw(gt)
        x = x.clone()
        for i, (t, a) in enumerate(zip(targets, actions)):
            if FILM_ACTIONS[a] == "add":
                x[i], _ = fade_part(x[i], gt[i, t], self.generator_rng)
        start = self.generator.stages[0]
        kept = []
        handle = self.net.decoder.stages[start].register_forward_hook(lambda m, i, o: kept.append(o))
        try:
            with torch.no_grad():
                skips = apply_bottleneck(self.net, encode(self.net, x))
                base = decode(self.net, skips)[:, self.offset:].float()
        finally:
            handle.remove()
        nd = x.ndim - 2
        wanted = []
        for i, (t, a, s) in enumerate(zip(targets, actions, strengths)):
            r = axis_radii(self.radii[s], self.spacing, nd)
            wanted.append(wanted_mask(FILM_ACTIONS[a], (base[i:i + 1, t:t + 1] > 0), gt[i:i + 1, t:t + 1], r)[:, 0])
        wanted = torch.cat(wanted).float()
        t_idx = torch.as_tensor(targets, device=self.device)
        a_idx = torch.as_tensor(actions, device=self.device)
        s_val = torch.as_tensor([STRENGTH_VALUES[s] for s in strengths], device=self.device)
        params = self.generator(condition_vectors(self.queries, t_idx, a_idx, s_val))
        mod = decode_tail(self.net, start, kept[0], skips, params, self.generator.stages)[:, self.offset:].float()
        rows = torch.arange(x.shape[0], device=self.device)
        lt = mod[rows, t_idx]
        bce = (F.binary_cross_entropy_with_logits(lt, wanted, reduction="none") * valid).sum() / valid.sum().clamp_min(1)
        dice = soft_dice_loss(torch.sigmoid(lt), wanted, valid)
        keep = torch.zeros((), device=self.device)
        if self.num_structures > 1:
            others = torch.ones(mod.shape[:2], dtype=torch.bool, device=self.device)  # (B, K)
            others[rows, t_idx] = False
            per = F.binary_cross_entropy_with_logits(mod, torch.sigmoid(base), reduction="none") * valid[:, None]
            per = per.flatten(2).sum(-1) / valid.flatten(1).sum(-1, keepdim=True).clamp_min(1)
            keep = per[others].mean()
        loss = bce + dice + self.keep_weight * keep
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "target_bce": bce.item(), "target_dice": dice.item(), "keep": keep.item()}

    # ---------------------------------------------------------------- loop + save
    def run(self, steps: int, progress: bool = True) -> dict:
        if steps < 1:
            raise DatasetError(f"--steps must be at least 1, got {steps}")
        t0 = time.time()
        history = []
        bar = tqdm(range(steps), desc="train-tci", disable=not progress, unit="step")
        for _ in bar:
            history.append(self.step())
            if len(history) % 10 == 0:
                recent = history[-10:]
                bar.set_postfix(loss=f"{np.mean([h['loss'] for h in recent]):.3f}")
        tail = history[-min(50, len(history)):]
        ckpt = self.model_folder / f"fold_{self.fold}" / self.checkpoint
        settings = {
            "trained_against": self.checkpoint, "checkpoint_mtime": os.path.getmtime(ckpt),
            "steps": steps, "batch_size": self.batch_size, "lr": self.lr, "keep_weight": self.keep_weight,
            "radii": self.radii, "seed": self.seed, "patch_size": self.patch_size, "training_cases": self.num_cases,
            "actions": list(FILM_ACTIONS), "strengths": STRENGTH_VALUES, "film_stages": self.film_stages,
            "final_losses": {k: float(np.mean([h[k] for h in tail])) for k in tail[0]},
            "seconds": round(time.time() - t0, 1),
        }
        path = save_tci(self.model_folder, self.fold, self.generator.cpu(), settings)
        self.generator.to(self.device)
        logger.info("wrote %s (%d steps, final loss %.3f)", path, steps, settings["final_losses"]["loss"])
        return {"weights": str(path), **settings}


def run_train_tci(model_folder, fold="0", steps: int = 1000, checkpoint: str = "checkpoint_final.pth",
                  device: str = "cpu", preprocessed: Optional[str] = None, batch_size: Optional[int] = None,
                  lr: float = 1e-3, keep_weight: float = 1.0, seed: int = 0, progress: bool = True,
                  film_stages: int = DEFAULT_FILM_STAGES) -> dict:
    """The whole command as a plain function."""
    trainer = TCITrainer(model_folder, fold, checkpoint, device, preprocessed, batch_size, lr, keep_weight,
                         seed=seed, film_stages=film_stages)
    return trainer.run(steps, progress)


def _run(args) -> int:
    result = run_train_tci(args.m, args.f, args.steps, args.chk, args.device, args.preprocessed, args.batch_size,
                           args.lr, args.keep_weight, args.seed, film_stages=args.film_stages)
    print(f"wrote {result['weights']} ({result['steps']} steps on {result['training_cases']} case(s), final loss "
          f"{result['final_losses']['loss']:.3f}, {result['seconds']} s)")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-tci", help="train the test-time intervention (FiLM) weights of a trained text model",
        description="Train the FiLM generator that lets `nnunet_causal intervene` expand / shrink / remove / add a "
                    "structure on command, on the frozen model (its checkpoint is not changed) with simulated "
                    "corrections of nnU-Net's preprocessed training patches. Writes fold_X/tci_weights.pth and "
                    "fold_X/tci_settings.json into the model folder.",
        epilog="Example: nnunet_causal train-tci -m $nnUNet_results/Dataset990_X/nnUNetTrainerText__nnUNetPlans__2d "
               "-f 0 --steps 1000")
    p.add_argument("-m", required=True, help="trained model folder (…/TRAINER__PLANS__CONFIG)")
    p.add_argument("-f", default="0", help="fold (default 0)")
    p.add_argument("--steps", type=int, default=1000, help="optimisation steps (default 1000)")
    p.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint name (default checkpoint_final.pth)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--preprocessed", default=None,
                   help="preprocessed data folder (default $nnUNet_preprocessed/DATASET/DATA_IDENTIFIER)")
    p.add_argument("--batch-size", type=int, default=None, help="patches per step (default: the plans' batch size)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--keep-weight", type=float, default=1.0,
                   help="weight of the loss that keeps other structures unchanged (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--film-stages", type=int, default=DEFAULT_FILM_STAGES,
                   help=f"modulate the last N decoder stages only: an edit then recomputes those alone (default "
                        f"{DEFAULT_FILM_STAGES}; 0: all stages)")
    p.set_defaults(func=_run)
