"""Reworded prompts for stock ``nnUNetv2_predict`` (environment variable ``nnUNet_causal_prompt_file``).

Stock prediction builds the network through the trainer's static ``build_network_architecture`` and
offers no other hook, so the text trainers' builder is decorated with :func:`applies_prompt_file`: after
the (pure) builder has built the network, :func:`apply_prompt_file` rewords its trained prompts when the
variable is set. It acts in prediction only: never with deep supervision on, and never inside
:func:`caller_sets_prompts` -- entered by the trainers' ``initialize`` (training, also without deep
supervision) and by :class:`~nnunet_causal.inference.text_predictor.nnUNetTextPredictor` (which sets
prompts itself).
"""
from __future__ import annotations

import functools
import logging
import os
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

import torch

from nnunet_causal.errors import PromptError
from nnunet_causal.networks.text_plans import get_text_settings

logger = logging.getLogger(__name__)

#: environment variable read by stock ``nnUNetv2_predict`` runs (see :func:`reword_trained_prompts`)
PROMPT_FILE_VARIABLE = "nnUNet_causal_prompt_file"

_CALLER_SETS_PROMPTS: ContextVar[bool] = ContextVar("nnunet_causal_caller_sets_prompts", default=False)


@contextmanager
def caller_sets_prompts() -> Iterator[None]:
    """Within the block, networks built by the text trainers ignore ``nnUNet_causal_prompt_file``."""
    token = _CALLER_SETS_PROMPTS.set(True)
    try:
        yield
    finally:
        _CALLER_SETS_PROMPTS.reset(token)


def apply_prompt_file(network, plans_manager, enable_deep_supervision: bool) -> None:
    """Reword ``network``'s trained prompts from ``$nnUNet_causal_prompt_file`` when this is a stock
    prediction build (see the module docstring); otherwise do nothing."""
    prompt_file = os.environ.get(PROMPT_FILE_VARIABLE)
    if not prompt_file or enable_deep_supervision or _CALLER_SETS_PROMPTS.get():
        return
    reword_trained_prompts(network, get_text_settings(plans_manager.plans, "the model's plans.json"), prompt_file)


def applies_prompt_file(build: Callable) -> Callable:
    """Decorate a text trainer's ``build_network_architecture(plans_manager, configuration_manager,
    num_input_channels, num_output_channels, enable_deep_supervision)`` with :func:`apply_prompt_file`."""
    if getattr(build, "applies_prompt_file", False):
        return build

    @functools.wraps(build)
    def wrapper(plans_manager, configuration_manager, num_input_channels: int, num_output_channels: int,
                enable_deep_supervision: bool = True):
        network = build(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                        enable_deep_supervision)
        apply_prompt_file(network, plans_manager, enable_deep_supervision)
        return network

    wrapper.applies_prompt_file = True
    return wrapper


def reword_trained_prompts(network, settings: dict, prompt_file: str) -> None:
    """Let stock ``nnUNetv2_predict`` segment the trained structures by other names.

    With ``nnUNet_causal_prompt_file=FILE`` set, FILE must list exactly one line per trained structure, in
    label order; line k's prompt (and synonyms, averaged) is embedded with the model's text encoder and
    replaces structure k's query source. Outputs and label values stay those of the trained model, so
    nnU-Net's export is unchanged.
    """
    from nnunet_causal.text.embedding_cache import get_text_encoder
    from nnunet_causal.text.prompt_file import read_prompt_file

    if not settings["add_background"]:
        raise PromptError(f"{PROMPT_FILE_VARIABLE} is not supported for region-based models; use "
                          f"nnUNetv2_predict_text")
    specs = read_prompt_file(prompt_file)
    names = list(settings["prompts"])
    if len(specs) != len(names):
        raise PromptError(f"{prompt_file} ({PROMPT_FILE_VARIABLE}): {len(specs)} prompt(s), but the model has "
                          f"{len(names)} trained structures ({', '.join(names)}); give one line per structure in "
                          f"this order")
    encoder = get_text_encoder(settings["text_encoder"])
    rows = []
    for spec in specs:
        e = encoder.encode([spec.text, *spec.synonyms]).mean(0)
        rows.append(e / e.norm().clamp_min(1e-8))
    network.set_inference_prompts(torch.stack(rows))
    logger.info("%s: stock prediction uses reworded prompts %s", prompt_file, [s.text for s in specs])
