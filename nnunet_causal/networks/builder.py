"""Build the text-prompted network from nnU-Net plans (used by the trainers' static builder, hence by
nnU-Net's predictor too)."""
from __future__ import annotations

import logging
import os
from typing import Callable, Optional

import torch
from torch import nn

from nnunet_causal.networks.text_network import TextPromptedSegmentationNetwork
from nnunet_causal.networks.text_plans import get_text_settings

logger = logging.getLogger(__name__)

#: environment variable read by stock ``nnUNetv2_predict`` runs (see :func:`reword_trained_prompts`)
PROMPT_FILE_VARIABLE = "nnUNet_causal_prompt_file"


def build_text_network(plans_manager, configuration_manager, num_input_channels: int, num_output_channels: int,
                       enable_deep_supervision: bool = True,
                       bottleneck_factory: Optional[Callable[[object, dict], nn.Module]] = None
                       ) -> TextPromptedSegmentationNetwork:
    """Backbone named by the plans (any nnU-Net architecture with ``encoder``/``decoder``) emitting
    ``embed_dim`` channels per voxel, wrapped with the text head.

    ``num_output_channels`` is nnU-Net's ``label_manager.num_segmentation_heads`` (K + 1 for label-based
    datasets, K for region-based ones). ``bottleneck_factory(configuration_manager, settings)`` may return a module
    applied to the deepest encoder features (see the causal trainers).
    """
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    settings = get_text_settings(plans_manager.plans)
    backbone = get_network_from_plans(
        configuration_manager.network_arch_class_name,
        configuration_manager.network_arch_init_kwargs,
        configuration_manager.network_arch_init_kwargs_req_import,
        num_input_channels,
        settings["embed_dim"],
        allow_init=True,
        deep_supervision=enable_deep_supervision,
    )
    num_prompts = num_output_channels - int(settings["add_background"])
    if num_prompts != len(settings["prompts"]):
        raise ValueError(f"plans list {len(settings['prompts'])} prompts but the dataset has {num_prompts} "
                         f"structures; were the plans written for another dataset?")
    bottleneck = bottleneck_factory(configuration_manager, settings) if bottleneck_factory is not None else None
    network = TextPromptedSegmentationNetwork(
        backbone, num_prompts, settings["text_dim"], settings["embed_dim"], connector=settings["connector"],
        add_background=settings["add_background"], bottleneck=bottleneck)
    prompt_file = os.environ.get(PROMPT_FILE_VARIABLE)
    if prompt_file and not enable_deep_supervision:
        reword_trained_prompts(network, settings, prompt_file)
    return network


def reword_trained_prompts(network: TextPromptedSegmentationNetwork, settings: dict, prompt_file: str) -> None:
    """Let stock ``nnUNetv2_predict`` segment the trained structures by other names.

    With ``nnUNet_causal_prompt_file=FILE`` set, FILE must list exactly one line per trained structure, in
    label order; line k's prompt (and synonyms, averaged) is embedded with the model's text encoder and
    replaces structure k's query source. Outputs and label values stay those of the trained model, so
    nnU-Net's export is unchanged. Only prediction (deep supervision off) is affected.
    """
    from nnunet_causal.errors import PromptError
    from nnunet_causal.text.embedding_cache import get_text_encoder
    from nnunet_causal.text.prompt_file import read_prompt_file

    if not settings["add_background"]:
        raise PromptError(f"{PROMPT_FILE_VARIABLE} is not supported for region-based models; use "
                          f"nnUNetv2_predict_text")
    specs = read_prompt_file(prompt_file)
    names = list(settings["prompts"])
    if len(specs) != len(names):
        raise PromptError(f"{prompt_file}: {len(specs)} prompt(s), but the model has {len(names)} trained "
                          f"structures ({', '.join(names)}); give one line per structure in this order")
    encoder = get_text_encoder(settings["text_encoder"])
    rows = []
    for spec in specs:
        e = encoder.encode([spec.text, *spec.synonyms]).mean(0)
        rows.append(e / e.norm().clamp_min(1e-8))
    network.set_inference_prompts(torch.stack(rows))
    logger.info("%s: stock prediction uses reworded prompts %s", prompt_file, [s.text for s in specs])
