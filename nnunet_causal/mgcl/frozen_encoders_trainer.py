"""nnUNetTrainerText_FrozenEncoders: OpenVocabCT's third stage (seed 002, III.D) -- both encoders frozen.

The text encoder is an MGCL folder (``nnUNet_causal_text_encoder=mgcl:FOLDER`` or dataset.json
``"text_encoder": "mgcl:FOLDER"``); any other encoder is an error, because this stage only makes sense on a
text space aligned with *this* image encoder. The image encoder gets the weights MGCL was aligned to
(``FOLDER/image_encoder.pth``) and is frozen; the decoder, the backbone's output layers and the text
connector train. Text embeddings are computed once (as in every text trainer), so the text encoder is frozen
by construction.

The trainer lives in :mod:`nnunet_causal.mgcl` (not ``training/``) because it reads the MGCL folder format:
imports point down, from ``mgcl`` to ``training``, never back.
"""
from __future__ import annotations

import torch

from nnunet_causal.errors import ModelError, TextEncoderError
from nnunet_causal.mgcl.encoder_folder import load_image_encoder_weights, read_metadata
from nnunet_causal.networks.text_plans import PLANS_KEY, get_text_settings
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText, unwrap_network


def mgcl_folder_of(spec: str) -> str:
    """The folder of an ``mgcl:`` spec; any other spec raises."""
    from nnunet_causal.text.encoders import parse_spec

    parsed = parse_spec(spec)
    if parsed.backend != "mgcl":
        raise TextEncoderError(f"nnUNetTrainerText_FrozenEncoders needs an MGCL text encoder (export "
                               f"nnUNet_causal_text_encoder=mgcl:FOLDER, written by nnunet_causal pretrain-text); "
                               f"this run uses '{spec}'")
    return parsed.source


class nnUNetTrainerText_FrozenEncoders(nnUNetTrainerText):
    """Decoder + connector trained; image encoder (from the MGCL folder) and text encoder frozen."""

    def _plans_with_text_settings(self, plans: dict, dataset_json: dict) -> dict:
        plans = super()._plans_with_text_settings(plans, dataset_json)
        folder = mgcl_folder_of(plans[PLANS_KEY]["text_encoder"])
        meta = read_metadata(folder)
        plans[PLANS_KEY]["mgcl"] = {"folder": folder, "fingerprint": meta.get("fingerprint"),
                                    "image_checkpoint": meta.get("checkpoint")}
        return plans

    def configure_optimizers(self):
        settings = get_text_settings(self.plans_manager.plans)
        folder = mgcl_folder_of(settings["text_encoder"])
        saved = load_image_encoder_weights(folder)
        net = unwrap_network(self.network)
        encoder = net.backbone.encoder
        own = encoder.state_dict()
        weights = saved["encoder_weights"]
        bad = sorted(set(own) ^ set(weights)) + sorted(k for k in set(own) & set(weights)
                                                       if tuple(own[k].shape) != tuple(weights[k].shape))
        if bad:
            raise ModelError(f"{folder}/image_encoder.pth does not fit this run's encoder (plans "
                             f"{self.plans_manager.plans_name}, configuration {self.configuration_name}); MGCL was "
                             f"aligned to {saved.get('source_checkpoint')} ({saved.get('plans_name')}, "
                             f"{saved.get('configuration')}); first keys that differ: {bad[:3]}")
        encoder.load_state_dict(weights)
        encoder.requires_grad_(False)
        trainable = [p for p in net.parameters() if p.requires_grad]
        n_train, n_all = sum(p.numel() for p in trainable), sum(p.numel() for p in net.parameters())
        self.trainable_fraction = n_train / n_all
        self.print_to_log_file(f"frozen image encoder from {folder}/image_encoder.pth (aligned by MGCL to "
                               f"{saved.get('source_checkpoint')}); frozen text encoder {settings['text_encoder']}; "
                               f"trainable parameters {n_train:,} of {n_all:,} ({100 * self.trainable_fraction:.1f}%)"
                               f": decoder, output layers, text connector")
        self.optimizer = torch.optim.SGD(trainable, self.initial_lr, weight_decay=self.weight_decay, momentum=0.99,
                                         nesterov=True)
        from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
        return self.optimizer, PolyLRScheduler(self.optimizer, self.initial_lr, self.num_epochs)
