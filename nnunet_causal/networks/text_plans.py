"""The ``"nnunet_causal"`` entry of an nnU-Net plans file: everything the text network needs to be rebuilt.

nnU-Net copies the trainer's plans into the model folder (``plans.json``) and its predictor rebuilds the
network through the trainer's static ``build_network_architecture(plans_manager, ...)``; so the settings
below, written into the plans when the trainer is created
(:func:`nnunet_causal.training.text.plan_settings.add_text_settings`), travel with every trained model. This
module only reads them: no environment variable, no text encoder::

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

from typing import Dict, List

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


def get_text_settings(plans: dict, source: str = "plans") -> Dict:
    """The ``"nnunet_causal"`` entry of ``plans``; a clear error when the plans were not written by a text
    trainer (e.g. predicting with ``-tr nnUNetTrainerText`` on a model trained with another trainer)."""
    settings = plans.get(PLANS_KEY)
    if not settings:
        raise DatasetError(f"{source} has no '{PLANS_KEY}' entry: this model was not trained with an "
                           f"nnunet_causal text trainer (train with -tr nnUNetTrainerText)")
    return settings
