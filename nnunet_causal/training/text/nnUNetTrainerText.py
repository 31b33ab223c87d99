"""nnUNetTrainerText: stock nnU-Net training of a text-prompted network (OpenVocabCT, seed 002).

What changes against ``nnUNetTrainer``: the network (plans backbone + text head, see
:mod:`nnunet_causal.networks.text_network`) and the loss (Dice + BCE per prompt). Planning,
preprocessing, patch sampling, augmentation, the training loop, checkpoints, ``--c``, validation and
prediction are nnU-Net's own. Prompt texts come from dataset.json ``"prompts"`` (or label names); they are
embedded once here and stored in the network, so a trained model predicts its structures without the
text encoder.
"""
from __future__ import annotations

import torch
from torch._dynamo import OptimizedModule

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_causal.networks.builder import build_text_network
from nnunet_causal.networks.text_plans import add_text_settings, get_text_settings
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

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        plans = self._plans_with_text_settings(plans, dataset_json)
        super().__init__(plans, configuration, fold, dataset_json, device)

    def _plans_with_text_settings(self, plans: dict, dataset_json: dict) -> dict:
        return add_text_settings(plans, dataset_json, embed_dim=self.text_embed_dim, connector=self.text_connector)

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        return build_text_network(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                                  enable_deep_supervision)

    def initialize(self):
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
        self.print_to_log_file(f"text encoder {encoder.id} (dim {encoder.dim}); prompts: "
                               + "; ".join(f"{n}: {' | '.join(s)}" for n, s in settings["prompts"].items()))

    def _build_loss(self):
        if self.label_manager.has_regions:
            return super()._build_loss()  # already Dice + BCE per (region) prompt
        loss = PromptDiceBCELoss(len(self.label_manager.foreground_labels), self.label_manager.ignore_label,
                                 self.configuration_manager.batch_dice, self.is_ddp)
        if self.enable_deep_supervision:
            scales = self._get_deep_supervision_scales()
            weights = [1 / (2 ** i) for i in range(len(scales))]
            # as nnU-Net: the lowest output is not supervised (a tiny weight under DDP keeps every
            # parameter in the graph, so DDP needs no find_unused_parameters)
            weights[-1] = 1e-6 if (self.is_ddp and not self._do_i_compile()) else 0
            total = sum(weights)
            loss = DeepSupervisionWrapper(loss, [w / total for w in weights])
        return loss
