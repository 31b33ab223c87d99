"""The ``"nnunet_causal"`` entry of an nnU-Net plans file: everything the text network needs to be rebuilt.

nnU-Net copies the trainer's plans into the model folder (``plans.json``) and its predictor rebuilds the
network through the trainer's static ``build_network_architecture(plans_manager, ...)``; so the settings
below, written into the plans when the trainer is created, travel with every trained model::

    "nnunet_causal": {
      "text_encoder": "minilm",          # spec, see nnunet_causal.text.encoders
      "text_encoder_id": "minilm",       # id of the weights actually used
      "text_dim": 384,                   # D_text
      "embed_dim": 32,                   # E, per-voxel embedding width
      "connector": "mlp",                # or "cross_attention"
      "add_background": true,            # false for region-based datasets (sigmoid per region)
      "prompts": {"liver": ["liver", "hepatic parenchyma"], ...},   # output-channel order
      "causal": {...},                   # only for the causal trainers
      "presence": {"hidden_dim": 64, "loss_weight": 0.5, "negatives": [...]}   # only with a presence head
    }
"""
from __future__ import annotations

import copy
from typing import Dict, List, Optional

from nnunet_causal.errors import DatasetError

PLANS_KEY = "nnunet_causal"
DEFAULT_EMBED_DIM = 32


def foreground_label_names(dataset_json: dict) -> List[str]:
    """Names of the structures in output-channel order (label value order; dataset order for regions)."""
    labels = dataset_json["labels"]
    names = [n for n in labels if n not in ("background", "ignore")]
    if any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values()):
        return names
    return sorted(names, key=lambda n: int(labels[n][0] if isinstance(labels[n], (list, tuple)) else labels[n]))


def is_region_based(dataset_json: dict) -> bool:
    return any(isinstance(v, (list, tuple)) and len(v) > 1 for v in dataset_json["labels"].values())


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
    plans[PLANS_KEY] = settings
    return plans


def get_text_settings(plans: dict, source: str = "plans") -> Dict:
    """The ``"nnunet_causal"`` entry of ``plans``; a clear error when the plans were not written by a text
    trainer (e.g. predicting with ``-tr nnUNetTrainerText`` on a model trained with another trainer)."""
    settings = plans.get(PLANS_KEY)
    if not settings:
        raise DatasetError(f"{source} has no '{PLANS_KEY}' entry: this model was not trained with an "
                           f"nnunet_causal text trainer (train with -tr nnUNetTrainerText)")
    return settings
