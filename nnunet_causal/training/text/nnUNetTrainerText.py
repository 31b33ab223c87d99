"""nnUNetTrainerText: stock nnU-Net training of a text-prompted network (OpenVocabCT, seed 002).

What changes against ``nnUNetTrainer``: the network (plans backbone + text head, see
:mod:`nnunet_causal.networks.text_network`) and the loss (Dice + BCE per prompt). Planning,
preprocessing, patch sampling, augmentation, the training loop, checkpoints, ``--c``, validation and
prediction are nnU-Net's own. Prompt texts come from dataset.json ``"prompts"`` (or label names); they are
embedded once here and stored in the network, so a trained model predicts its structures without the
text encoder.

Presence ("is this structure in the image at all?") is part of the default: the network gets the presence
head, the loss its BCE term, and validation ends with the presence calibration written to
``fold_X/presence_calibration.json`` (:mod:`nnunet_causal.training.text.presence`). Every subclass inherits
it; ``presence_hidden_dim = None`` (the ``*_NoPresence`` variants) is the ablation. Whether a model has the
head is read from its plans (``"presence"``), so models trained without one resume and predict unchanged.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Dict, Optional

import torch
from torch._dynamo import OptimizedModule

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_causal.files import atomic_path
from nnunet_causal.errors import DatasetError
from nnunet_causal.inference.stock_prompts import applies_prompt_file, caller_sets_prompts
from nnunet_causal.networks.builder import build_text_network
from nnunet_causal.networks.text_plans import PLANS_KEY, foreground_label_names, get_text_settings
from nnunet_causal.training.cross_modality_check import check_plans_at_training_start
from nnunet_causal.training.text.mirroring import mirroring_note
from nnunet_causal.training.text.plan_settings import add_text_settings
from nnunet_causal.training.text.presence import (PresenceLoss, calibrate_presence, embed_presence_negatives,
                                                  presence_settings, write_calibration)
from nnunet_causal.training.text.saved_settings import model_folder, saved_text_settings
from nnunet_causal.training.losses import PromptDiceBCELoss


def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    if hasattr(network, "module") and isinstance(network, torch.nn.parallel.DistributedDataParallel):
        network = network.module
    if isinstance(network, OptimizedModule):
        network = network._orig_mod
    return network


class nnUNetTrainerText(nnUNetTrainer):
    #: per-voxel embedding width E (plans decide it once written; this is the default for new runs)
    text_embed_dim = 32
    #: "mlp" (seed 002's choice, generalises to synonyms) or "cross_attention"
    text_connector = "mlp"
    #: presence head width H; None trains without the head (the ``*_NoPresence`` ablation)
    presence_hidden_dim: Optional[int] = 64
    presence_loss_weight = 0.5
    #: knowledge-base structures the dataset never holds, used as always-absent presence prompts
    presence_negatives = 32
    #: the calibrated threshold keeps at least this fraction of the validation fold's present structures
    presence_min_kept = 0.98
    #: False: no mirroring when a label is named by its side (:mod:`nnunet_causal.training.text.mirroring`)
    mirror_lateral_labels = False
    #: the mirror axes of the checkpoint this run resumed from (``--c``); None for a new training
    checkpoint_mirroring_axes = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        from nnunetv2 import paths

        saved = saved_text_settings(model_folder(paths.nnUNet_results, plans, configuration, type(self).__name__),
                                    dataset_json)
        if saved is not None:  # --c or a later fold: the settings the model was trained with, not re-derived
            plans = {**plans, PLANS_KEY: saved}
        else:
            plans = self._plans_with_text_settings(plans, dataset_json)
            if self.presence_hidden_dim:
                plans[PLANS_KEY]["presence"] = presence_settings(
                    plans[PLANS_KEY]["prompts"], self.presence_hidden_dim, self.presence_loss_weight,
                    self.presence_negatives)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.text_settings_source = "model folder" if saved is not None else "derived"

    def __init_subclass__(cls, **kwargs):
        """A subclass's own static builder gets the stock-prediction prompt rewording too (see
        :mod:`nnunet_causal.inference.stock_prompts`)."""
        super().__init_subclass__(**kwargs)
        build = cls.__dict__.get("build_network_architecture")
        if isinstance(build, staticmethod):
            cls.build_network_architecture = staticmethod(applies_prompt_file(build.__func__))

    def _plans_with_text_settings(self, plans: dict, dataset_json: dict) -> dict:
        return add_text_settings(plans, dataset_json, embed_dim=self.text_embed_dim, connector=self.text_connector)

    @staticmethod
    @applies_prompt_file
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        """The plans' backbone with the text head. Called by stock prediction too, where
        ``nnUNet_causal_prompt_file`` may reword the trained prompts; never in training."""
        return build_text_network(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                                  enable_deep_supervision)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """nnU-Net's own, without mirroring (training and prediction) when a label is named by its side; a
        model resumed (``--c``) from a checkpoint that mirrored keeps mirroring."""
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        rotation, dummy_2d, patch_size, mirror_axes = configured
        note = "" if self.mirror_lateral_labels else mirroring_note(foreground_label_names(self.dataset_json))
        if note and mirror_axes is not None:
            if self.checkpoint_mirroring_axes is not None:
                self.print_to_log_file(f"resumed from a checkpoint trained with mirroring (axes "
                                       f"{tuple(self.checkpoint_mirroring_axes)}): it keeps mirroring; a new "
                                       f"training of this dataset would not ({note})")
                self.inference_allowed_mirroring_axes = tuple(self.checkpoint_mirroring_axes)
                return configured
            self.print_to_log_file(note)
            mirror_axes = self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, patch_size, mirror_axes

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        """nnU-Net's own; remembers the checkpoint's mirror axes so that a resumed model keeps its mirroring."""
        super().load_checkpoint(filename_or_checkpoint)
        self.checkpoint_mirroring_axes = self.inference_allowed_mirroring_axes

    def initialize(self):
        check_plans_at_training_start(self)  # a cross-modality dataset must not be planned with the CT window
        with caller_sets_prompts():  # training: the prompts are this trainer's, whatever the environment
            super().initialize()
        self._embed_prompts()

    def _embed_prompts(self) -> None:
        """Embed every prompt and synonym once; canonical (first) texts become the stored query source."""
        from nnunet_causal.text.embedding_cache import get_text_encoder

        settings = get_text_settings(self.plans_manager.plans)
        encoder = get_text_encoder(settings["text_encoder"])
        if encoder.id != settings["text_encoder_id"]:
            self.print_to_log_file(f"WARNING: plans were written with text encoder {settings['text_encoder_id']} "
                                   f"but {encoder.id} is loaded now")
        texts, owners, first = [], [], []
        for k, synonyms in enumerate(settings["prompts"].values()):
            first.append(len(texts))
            texts.extend(synonyms)
            owners.extend([k] * len(synonyms))
        embeddings = encoder.encode(texts)
        net = unwrap_network(self.network)
        net.set_prompt_embeddings(embeddings[first])
        net.set_training_synonyms(embeddings, owners)
        negatives = embed_presence_negatives(net, settings, encoder)
        if net.presence is not None:
            self.print_to_log_file(f"presence head: {len(negatives)} negative prompt(s): {'; '.join(negatives)}")
        self.print_to_log_file(f"text settings {getattr(self, 'text_settings_source', 'derived')}; "
                               f"text encoder {encoder.id} (dim {encoder.dim}); prompts: "
                               + "; ".join(f"{n}: {' | '.join(s)}" for n, s in settings["prompts"].items()))

    # ---- partial labels (dataset.json "partial_labels": {case: [annotated structure names]})
    def _partial_label_table(self) -> Dict[str, torch.Tensor]:
        """``{case: (K,) bool}`` for the cases that annotate only some structures (cached)."""
        table = getattr(self, "_partial_labels", None)
        if table is None:
            partial = self.dataset_json.get("partial_labels") or {}
            names = foreground_label_names(self.dataset_json)
            if partial and self.label_manager.has_regions:
                raise DatasetError("dataset.json 'partial_labels' is not supported for region-based labels")
            table = {}
            for case, annotated in partial.items():
                unknown = sorted(set(annotated) - set(names))
                if unknown:
                    raise DatasetError(f"dataset.json 'partial_labels' of case '{case}' names unknown label(s) "
                                       f"{unknown} (labels: {names})")
                table[str(case)] = torch.tensor([n in annotated for n in names], dtype=torch.bool)
            self._partial_labels = table
            if table:
                self.print_to_log_file(f"partial labels: {len(table)} case(s) annotate only some structures; "
                                       f"the loss of the others is masked for those cases")
        return table

    def partial_label_mask(self, keys) -> Optional[torch.Tensor]:
        """``(B, K)`` bool mask of annotated structures for the batch's case ids, or None if all are."""
        table = self._partial_label_table()
        if not table or keys is None:
            return None
        k = len(self.label_manager.foreground_labels)
        rows = [table.get(str(key), torch.ones(k, dtype=torch.bool)) for key in keys]
        mask = torch.stack(rows)
        return None if bool(mask.all()) else mask

    @contextmanager
    def masked_prompts(self, batch: dict):
        """Within the block, the prompt loss ignores structures the batch's cases do not annotate."""
        loss = getattr(self, "_prompt_loss", None)
        if loss is None:
            yield
            return
        loss.prompt_mask = self.partial_label_mask(batch.get("keys"))
        try:
            yield
        finally:
            loss.prompt_mask = None

    def train_step(self, batch: dict) -> dict:
        with self.masked_prompts(batch):
            return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        with self.masked_prompts(batch):
            return super().validation_step(batch)

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, written to a temporary file beside ``filename`` and renamed into place: a run
        killed while it writes (kill -9, a node's time limit) leaves the previous ``checkpoint_latest.pth``
        whole for ``--c`` instead of a truncated file that ``torch.load`` cannot read."""
        if self.local_rank != 0 or self.disable_checkpointing:
            return super().save_checkpoint(filename)
        with atomic_path(filename, suffix=".pth") as tmp:
            super().save_checkpoint(tmp)

    def has_presence_head(self) -> bool:
        """Whether this run's plans (derived, or the model folder's) give the network a presence head."""
        return bool(get_text_settings(self.plans_manager.plans).get("presence"))

    def perform_actual_validation(self, save_probabilities: bool = False):
        """nnU-Net's validation, then the presence calibration of the validation fold (models with the head)."""
        super().perform_actual_validation(save_probabilities)
        if self.local_rank == 0 and self.has_presence_head():
            net = unwrap_network(self.network)
            cal = calibrate_presence(self, net)
            path = write_calibration(self.output_folder, cal)
            self.print_to_log_file(f"presence calibration written to {path}: threshold {cal['threshold']:.4f}, "
                                   f"kept present {cal.get('kept_present')}, masked absent {cal.get('masked_absent')}")

    def _build_loss(self):
        loss = self._segmentation_loss()
        if not self.has_presence_head():
            return loss
        weight = float(get_text_settings(self.plans_manager.plans)["presence"].get("loss_weight", 0.5))
        prompt_mask = lambda: getattr(getattr(self, "_prompt_loss", None), "prompt_mask", None)  # noqa: E731
        return PresenceLoss(loss, lambda: unwrap_network(self.network), weight, prompt_mask)

    def _segmentation_loss(self):
        if self.label_manager.has_regions:
            return super()._build_loss()  # already Dice + BCE per (region) prompt
        loss = PromptDiceBCELoss(len(self.label_manager.foreground_labels), self.label_manager.ignore_label,
                                 self.configuration_manager.batch_dice, self.is_ddp)
        self._prompt_loss = loss
        if self.enable_deep_supervision:
            scales = self._get_deep_supervision_scales()
            weights = [1 / (2 ** i) for i in range(len(scales))]
            # as nnU-Net: the lowest output is not supervised (a tiny weight under DDP keeps every
            # parameter in the graph, so DDP needs no find_unused_parameters)
            weights[-1] = 1e-6 if (self.is_ddp and not self._do_i_compile()) else 0
            total = sum(weights)
            loss = DeepSupervisionWrapper(loss, [w / total for w in weights])
        return loss


class nnUNetTrainerTextPresence(nnUNetTrainerText):
    """Deprecated name of :class:`nnUNetTrainerText`, which trains the presence head by default; kept so that
    models trained under this name resume and predict (its model folders keep their name)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        message = "nnUNetTrainerTextPresence is deprecated: nnUNetTrainerText trains the presence head by default"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.print_to_log_file(message)
