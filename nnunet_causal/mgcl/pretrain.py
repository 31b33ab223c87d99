"""MGCL text-encoder pretraining (OpenVocabCT, seed 002, second stage): :func:`pretrain_text`.

Per step: a batch of nnU-Net's planned patches (see :mod:`nnunet_causal.mgcl.data`) goes through the
frozen image encoder of a trained model (:mod:`nnunet_causal.mgcl.image_features`); every structure present
in a patch gives an organ feature, the patch a global feature; a trainable projection maps both to the text
space. The text encoder (:mod:`nnunet_causal.mgcl.text_model`) embeds the cases' reports and, per organ, K
captions sampled from that organ's captions (:mod:`nnunet_causal.mgcl.corpus`). ``L = L_CLIP + L_MGCL``
(:mod:`nnunet_causal.mgcl.losses`), AdamW on the text encoder's tuned weights, the projection and the two
temperatures.

Laterality (additions to the seed, both on by default): the organ feature's projection also sees where the
mask lies in its case (``position``; :mod:`nnunet_causal.mgcl.organ_position` -- patches are never mirrored,
positions are in the case's frame), and captions of lateral structures get their left/right-mirrored
sentence as a hard negative (``laterality_negatives``; :mod:`nnunet_causal.mgcl.laterality`). Without them
mirror-image organs give the text encoder nothing to learn "left" from. A third, text-side term, on by
default (``text_contrast_weight = 1``; :mod:`nnunet_causal.mgcl.caption_contrast`): supervised contrast among
the step's caption embeddings -- one structure's captions (side included) together, other structures' and the
mirrored captions apart -- so ``L = L_CLIP + L_MGCL + w L_text``. In three benchmark runs (
``benchmarks/RESULTS_mgcl.md``) only it puts cos("left kidney", "right kidney") below cos("left kidney",
"kidney on the left side"), and with a stage-1 model that segments the organs it raised the open-vocabulary
Dice of held-out synonyms (0.295 -> 0.380); image-side left/right retrieval with held-out side phrases was
lower with it in two of the three. Weight 0 (``--no-text-contrast``) is the seed's loss.

Resumable: after every epoch ``<OUT parent>/.<OUT name>.partial/checkpoint_latest.pth`` is written
atomically; ``continue_training`` (``--c``) resumes from it (a checkpoint written with other settings is an
error). At the end the encoder folder is assembled in a temporary folder and renamed to ``OUT``
(:mod:`nnunet_causal.mgcl.encoder_folder`), so a killed run never leaves a half-written encoder.
On CUDA the frozen encoder and the text encoder run under autocast (fp16, with a GradScaler) as nnU-Net does.
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from tqdm import tqdm

from nnunet_causal.files import atomic_path, load_torch_file
from nnunet_causal.errors import DatasetError, ModelError
from nnunet_causal.mgcl import data as mdata
from nnunet_causal.mgcl.caption_contrast import caption_contrast_loss, caption_groups
from nnunet_causal.mgcl.corpus import RuleExtractor, build_corpus
from nnunet_causal.mgcl.encoder_folder import write_encoder_folder
from nnunet_causal.mgcl.laterality import mirror_negatives
from nnunet_causal.mgcl.image_features import (ImageProjection, build_frozen_encoder, frozen_input_normalization,
                                               pool_features, read_model_folder)
from nnunet_causal.mgcl.losses import LogitScale, clip_loss, mgcl_loss
from nnunet_causal.mgcl.reports import load_reports
from nnunet_causal.mgcl.text_model import TrainableTextEncoder

logger = logging.getLogger(__name__)
DEFAULT_TEXT_LR = {"full": 2e-5, "last-k": 5e-5, "lora": 5e-4, "none": 0.0}


@dataclass
class PretrainSettings:
    """Everything :func:`pretrain_text` needs (the CLI's flags, one to one)."""
    dataset: str
    model_folder: str
    encoder: str = "minilm"
    output: Optional[str] = None
    epochs: int = 10
    tune: str = "full"
    last_k: int = 2
    lora_rank: int = 8
    fold: str = "0"
    checkpoint: str = "checkpoint_final.pth"
    reports: Optional[str] = None
    extractor: str = "rules"
    llm_url: Optional[str] = None
    llm_model: Optional[str] = None
    llm_folder: Optional[str] = None
    llm_timeout: float = 60.0
    iterations: Optional[int] = None
    batch_size: Optional[int] = None
    captions_per_organ: int = 3
    text_lr: Optional[float] = None
    head_lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    continue_training: bool = False
    overwrite: bool = False
    position: bool = True
    laterality_negatives: bool = True
    text_contrast_weight: float = 1.0

    def resume_key(self) -> dict:
        """Settings a resumed run must share with the checkpoint it continues."""
        keys = ("dataset", "model_folder", "encoder", "tune", "last_k", "lora_rank", "fold", "checkpoint",
                "captions_per_organ", "extractor",
                "position", "laterality_negatives", "text_contrast_weight")
        return {k: str(getattr(self, k)) for k in keys}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"-device {name}: no CUDA device is available")
    return torch.device(name)


def _extractor(settings: PretrainSettings, vocabulary):
    if settings.extractor == "rules":
        return RuleExtractor(vocabulary)
    if settings.extractor == "llm":
        from nnunet_causal.mgcl.llm import LLMExtractor
        return LLMExtractor(vocabulary, settings.llm_url, settings.llm_model, settings.llm_folder, settings.llm_timeout)
    raise DatasetError(f"unknown extractor '{settings.extractor}' (use rules or llm)")


def default_output(model_folder: str) -> Path:
    return Path(model_folder) / "mgcl_text_encoder"


class _Run:
    """The state of one pretraining run (built once, then :meth:`train`)."""

    def __init__(self, s: PretrainSettings):
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
        from nnunet_causal.mgcl.organ_position import POSITION_DIMS, CaseFramePatchLoader
        from nnunet_causal.text.label_text import prompts_for_labels
        from nnunet_causal.text.vocabulary import vocabulary_from_labels

        self.s = s
        if s.epochs < 1:
            raise DatasetError(f"--epochs must be at least 1, got {s.epochs}")
        if not s.text_contrast_weight >= 0:
            raise DatasetError(f"--text-contrast-weight must be >= 0, got {s.text_contrast_weight}")
        if s.captions_per_organ < 1:
            raise DatasetError(f"captions per organ must be at least 1, got {s.captions_per_organ}")
        self.out = Path(s.output) if s.output else default_output(s.model_folder)
        if self.out.exists() and not s.overwrite:
            raise DatasetError(f"{self.out} already exists; pass --overwrite to replace it (or -o another folder)")
        self.work = self.out.parent / f".{self.out.name}.partial"
        self.device = _device(s.device)
        # -------- image side
        self.info = read_model_folder(s.model_folder, s.fold, s.checkpoint)
        folders = mdata.locate_dataset(s.dataset)
        self.folders = folders
        n_channels = len(folders.dataset_json["channel_names"])
        if n_channels != len(self.info["dataset_json"]["channel_names"]):
            raise ModelError(f"{s.model_folder} was trained on {len(self.info['dataset_json']['channel_names'])} "
                             f"input channel(s), dataset {folders.name} has {n_channels}")
        self.encoder, _ = build_frozen_encoder(self.info)
        self.encoder.to(self.device)
        self.input_normalization = frozen_input_normalization(self.info)
        pm = PlansManager(self.info["plans"])
        cm = pm.get_configuration(self.info["configuration"])
        data_folder = folders.preprocessed / cm.data_identifier
        if not data_folder.is_dir():
            raise DatasetError(f"{data_folder} does not exist: preprocess {folders.name} for configuration "
                               f"'{self.info['configuration']}' of plans {pm.plans_name} (nnUNetv2_plan_and_preprocess"
                               f" -d {s.dataset} -c {self.info['configuration']})")
        self.cases = mdata.training_cases(data_folder)
        if not self.cases:
            raise DatasetError(f"{data_folder} holds no preprocessed case")
        self.structures = mdata.structures_of(folders.dataset_json, str(folders.preprocessed / "dataset.json"))
        prompts = prompts_for_labels(folders.dataset_json)
        names = {n: prompts[n][0] for n in self.structures}
        # -------- text side
        vocabulary = vocabulary_from_labels(folders.dataset_json["labels"], prompts)
        extractor = _extractor(s, vocabulary)
        path = mdata.report_file(folders, s.reports)
        reports = None
        if path is not None:
            raw = mdata.raw_cases(folders.raw, folders.dataset_json.get("file_ending", ""))
            reports = mdata.check_report_cases(load_reports(path, set(self.cases) | set(raw)), self.cases, raw, path)
        self.corpus, self.counts = build_corpus(data_folder, self.cases, self.structures, names, reports, extractor,
                                                pm.transpose_backward)
        if not any(t.captions for t in self.corpus.values()):
            raise DatasetError(f"no caption of a present structure in {folders.name}"
                               f"{' (reports ' + str(path) + ')' if path else ''}: nothing to align")
        self.report_path = path
        self.text = TrainableTextEncoder(s.encoder, s.tune, s.last_k, s.lora_rank, str(self.device)).to(self.device)
        # -------- data loader (nnU-Net's, on the model's planned patch)
        batch = int(s.batch_size or max(2, cm.batch_size))
        self.batch_size = max(2, min(batch, len(self.cases)))
        dataset = infer_dataset_class(str(data_folder))(str(data_folder), self.cases)
        self.loader = CaseFramePatchLoader(dataset, self.batch_size, cm.patch_size, cm.patch_size,
                                       pm.get_label_manager(folders.dataset_json), oversample_foreground_percent=0.5)
        self.iterations = int(s.iterations or max(1, math.ceil(len(self.cases) / self.batch_size)))
        # -------- heads
        with torch.no_grad():
            probe = torch.zeros(1, n_channels, *cm.patch_size, device=self.device)
            image_dim = pool_features(self.encoder(probe), torch.zeros(1, 1, *cm.patch_size, device=self.device),
                                      list(self.structures.values()))[0].shape[-1]
        self.image_dim = int(image_dim)
        self.position_dims = POSITION_DIMS if s.position else 0
        self.projection = ImageProjection(self.image_dim, self.text.dim, position_dims=self.position_dims).to(self.device)
        self.clip_scale, self.mgcl_scale = LogitScale().to(self.device), LogitScale().to(self.device)
        text_lr = DEFAULT_TEXT_LR[s.tune] if s.text_lr is None else s.text_lr
        groups = [{"params": [*self.projection.parameters(), *self.clip_scale.parameters(),
                              *self.mgcl_scale.parameters()], "lr": s.head_lr}]
        if s.tune != "none":
            groups.append({"params": self.text.trainable_parameters(), "lr": text_lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
        self.scaler = torch.amp.GradScaler("cuda") if self.device.type == "cuda" else None
        self.history: List[dict] = []
        self.start_epoch = 0
        self.rng = np.random.default_rng(s.seed)
        torch.manual_seed(s.seed)
        np.random.seed(s.seed)  # nnU-Net's loader draws cases and patches with numpy's global generator

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.work / "checkpoint_latest.pth"

    def save_checkpoint(self, epoch: int) -> None:
        state = {"epoch": epoch, "settings": self.s.resume_key(), "history": self.history,
                 "text": self.text.model.state_dict(), "projection": self.projection.state_dict(),
                 "clip_scale": self.clip_scale.state_dict(), "mgcl_scale": self.mgcl_scale.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "numpy_global": np.random.get_state(),
                 "rng": self.rng.bit_generator.state, "torch": torch.get_rng_state()}
        self.work.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self) -> None:
        if not self.checkpoint_path.is_file():
            logger.info("--c: no checkpoint in %s, starting from epoch 0", self.work)
            return
        try:
            state = load_torch_file(self.checkpoint_path, self.device)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a damaged file
            raise ModelError(f"{self.checkpoint_path}: cannot read the checkpoint ({type(e).__name__}: {e}); delete "
                             f"it to start again") from e
        if state.get("settings") != self.s.resume_key():
            diff = {k: (v, self.s.resume_key().get(k)) for k, v in (state.get("settings") or {}).items()
                    if self.s.resume_key().get(k) != v}
            raise DatasetError(f"{self.checkpoint_path} was written with other settings (checkpoint, now): {diff}; "
                               f"continue with the same flags or delete {self.work}")
        self.text.model.load_state_dict(state["text"])
        self.projection.load_state_dict(state["projection"])
        self.clip_scale.load_state_dict(state["clip_scale"])
        self.mgcl_scale.load_state_dict(state["mgcl_scale"])
        self.optimizer.load_state_dict(state["optimizer"])
        np.random.set_state(state["numpy_global"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch"])
        self.history, self.start_epoch = list(state["history"]), int(state["epoch"]) + 1
        logger.info("resumed from %s after epoch %d", self.checkpoint_path, state["epoch"])

    # ------------------------------------------------------------------ one step
    def _batch(self):
        batch = self.loader.generate_train_batch()
        keys = list(batch["keys"])
        first = sorted({k: i for i, k in reversed(list(enumerate(keys)))}.values())  # one patch per case
        return (batch["data"][first], batch["target"][first], [keys[i] for i in first], batch["bbox_lbs"][first],
                batch["case_shapes"][first])

    def step(self) -> Optional[Dict[str, float]]:
        from nnunet_causal.mgcl.organ_position import organ_positions

        data, seg, keys, bbox_lbs, case_shapes = self._batch()
        data, seg = data.to(self.device, non_blocking=True), seg.to(self.device, non_blocking=True)
        autocast = torch.autocast(self.device.type, enabled=self.device.type == "cuda")
        labels, values = list(self.structures), list(self.structures.values())
        with torch.no_grad(), autocast:
            organ, present, glob = pool_features(self.encoder(self.input_normalization(data)), seg, values)
            positions = organ_positions(seg, values, bbox_lbs, case_shapes) if self.position_dims else None
        k = self.s.captions_per_organ
        rows, caption_texts = [], []
        for b, case in enumerate(keys):
            pool = self.corpus[case].captions
            for j, label in enumerate(labels):
                if bool(present[b, j]) and pool.get(label):
                    rows.append((b, j))
                    caption_texts.append([str(t) for t in self.rng.choice(pool[label], k, replace=len(pool[label]) < k)])
        hard_texts, hard_owner = [], []
        if self.s.laterality_negatives:
            for m, ((b, j), texts) in enumerate(zip(rows, caption_texts)):
                mirrored = mirror_negatives(labels[j], texts)
                hard_texts += mirrored
                hard_owner += [m] * len(mirrored)
        reports = [self.corpus[c].report for c in keys]
        hard_labels = [labels[rows[m][1]] for m in hard_owner]
        unique = list(dict.fromkeys(reports + [t for row in caption_texts for t in row] + hard_texts))
        index = {t: i for i, t in enumerate(unique)}
        with autocast:
            emb = self.text(unique).float()
            glob_p = self.projection(glob.float())
            losses = {}
            if len(keys) >= 2:
                losses["clip"] = clip_loss(glob_p, emb[[index[t] for t in reports]], self.clip_scale(), reports)
            if len(rows) >= 2:
                pos = torch.stack([positions[b, j] for b, j in rows]) if positions is not None else None
                organ_p = self.projection(torch.stack([organ[b, j] for b, j in rows]).float(), pos)
                caps = emb[[index[t] for row in caption_texts for t in row]].view(len(rows), k, -1)
                hard = emb[[index[t] for t in hard_texts]] if hard_texts else None
                losses["mgcl"] = mgcl_loss(organ_p, caps, caption_texts, self.mgcl_scale(), hard, hard_owner,
                                           hard_texts)
            if self.s.text_contrast_weight > 0 and self.s.tune != "none":
                texts, groups, mirrored_of = caption_groups(caption_texts, [labels[j] for _, j in rows], hard_texts,
                                                            hard_labels)
                text_loss = caption_contrast_loss(emb[[index[t] for t in texts]], groups, mirrored_of)
                if text_loss is not None:
                    losses["text"] = self.s.text_contrast_weight * text_loss
        if not losses:
            return None
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return {"loss": float(loss.detach()), **{n: float(v.detach()) for n, v in losses.items()}, "organs": len(rows),
                "hard_negatives": len(hard_texts)}

    # ------------------------------------------------------------------ loop
    def train(self) -> Path:
        if self.s.continue_training:
            self.load_checkpoint()
        elif self.checkpoint_path.is_file():
            logger.info("ignoring the checkpoint in %s (no --c): starting from epoch 0", self.work)
        self.text.train()
        for epoch in range(self.start_epoch, self.s.epochs):
            t0 = time.perf_counter()
            steps = []
            bar = tqdm(range(self.iterations), desc=f"pretrain-text epoch {epoch + 1}/{self.s.epochs}",
                       leave=False, disable=None)
            for _ in bar:
                result = self.step()
                if result is not None:
                    steps.append(result)
                    bar.set_postfix(loss=f"{result['loss']:.3f}")
            record = {"epoch": epoch, "seconds": time.perf_counter() - t0, "steps": len(steps)}
            for name in ("loss", "clip", "mgcl", "text"):
                vals = [r[name] for r in steps if name in r]
                if vals or name != "text":  # "text" only where the caption-contrast term ran
                    record[name] = float(np.mean(vals)) if vals else float("nan")
            record["hard_negatives_per_step"] = float(np.mean([r["hard_negatives"] for r in steps])) if steps else 0.0
            self.history.append(record)
            logger.info("epoch %d: loss %.4f (clip %.4f, mgcl %.4f, text %.4f), %.1f s", epoch, record["loss"],
                        record["clip"], record["mgcl"], record.get("text", float("nan")), record["seconds"])
            self.save_checkpoint(epoch)
        path = write_encoder_folder(self)
        shutil.rmtree(self.work, ignore_errors=True)
        return path


def pretrain_text(settings: PretrainSettings) -> Path:
    """Run MGCL pretraining; returns the written encoder folder (load it with the spec ``mgcl:FOLDER``)."""
    return _Run(settings).train()


def settings_dict(settings: PretrainSettings) -> dict:
    return asdict(settings)
