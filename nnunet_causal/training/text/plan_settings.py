"""Plan-time text settings: the ``"nnunet_causal"`` entry a text trainer writes into its plans.

The format is :mod:`nnunet_causal.networks.text_plans` (which only reads it). Writing it chooses and loads the
text encoder (to record its id and width), so it lives here, with the trainers, and not in ``networks/``.
"""
from __future__ import annotations

import copy
from typing import Optional

from nnunet_causal.data.cross_modality import input_normalization_for
from nnunet_causal.errors import DatasetError
from nnunet_causal.networks.input_normalization import INPUT_NORMALIZATIONS
from nnunet_causal.networks.text_plans import DEFAULT_EMBED_DIM, PLANS_KEY, foreground_label_names, is_region_based


def add_text_settings(plans: dict, dataset_json: dict, *, embed_dim: int = DEFAULT_EMBED_DIM,
                      connector: str = "mlp", causal: Optional[dict] = None) -> dict:
    """Return a copy of ``plans`` with the ``"nnunet_causal"`` entry filled in for ``dataset_json``.

    The text encoder is chosen by :func:`nnunet_causal.text.encoders.resolve_text_encoder_spec`
    (environment variable ``nnUNet_causal_text_encoder``, then dataset.json ``"text_encoder"``, then the
    offline default). When the plans already hold settings (a model folder's plans, or ``--c``) their
    encoder is kept so that a resumed run embeds with the same weights.
    """
    from nnunet_causal.text.embedding_cache import get_text_encoder
    from nnunet_causal.text.encoders import resolve_text_encoder_spec
    from nnunet_causal.text.label_text import prompts_for_labels

    plans = copy.deepcopy(plans)
    previous = plans.get(PLANS_KEY) or {}
    prompts = prompts_for_labels(dataset_json)  # checked first: a bad prompt fails before weights load
    spec = previous.get("text_encoder") or resolve_text_encoder_spec(dataset_json)
    encoder = get_text_encoder(spec)
    names = foreground_label_names(dataset_json)
    settings = {
        "text_encoder": spec,
        "text_encoder_id": encoder.id,
        "text_dim": int(encoder.dim),
        "embed_dim": int(previous.get("embed_dim", embed_dim)),
        "connector": previous.get("connector", connector),
        "add_background": not is_region_based(dataset_json),
        "prompts": {n: list(prompts[n]) for n in names},
    }
    if causal is not None:
        settings["causal"] = causal
    # settings already there (a model trained without the key) keep the network they were trained with
    normalization = previous.get("input_normalization", "none") if previous else input_normalization_for(dataset_json)
    if normalization not in INPUT_NORMALIZATIONS:
        raise DatasetError(f"dataset.json 'cross_modality.input_normalization' is {normalization!r}; expected "
                           f"one of {', '.join(INPUT_NORMALIZATIONS)}")
    if normalization != "none":
        settings["input_normalization"] = normalization
    plans[PLANS_KEY] = settings
    return plans
