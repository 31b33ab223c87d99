"""Build the text-prompted network from nnU-Net plans (used by the trainers' static builder, hence by
nnU-Net's predictor too).

Pure: the result depends on the arguments only (no environment variable, no text encoder). Rewording the
trained prompts for stock prediction is inference's business (:mod:`nnunet_causal.inference.stock_prompts`).
"""
from __future__ import annotations

from typing import Callable, Optional

from torch import nn

from nnunet_causal.networks.text_network import TextPromptedSegmentationNetwork
from nnunet_causal.networks.text_plans import get_text_settings


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
        add_background=settings["add_background"], bottleneck=bottleneck,
        presence_hidden_dim=(settings.get("presence") or {}).get("hidden_dim"),
        input_normalization=settings.get("input_normalization", "none"))
    return network
