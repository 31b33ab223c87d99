"""The frozen image side of MGCL: a trained model's encoder and mask pooling of its features (seed 002, III.C).

OpenVocabCT freezes the segmentation-pretrained image encoder while the text encoder is aligned to it.
Here the encoder is rebuilt from a model folder's ``plans.json`` exactly as nnU-Net builds the network
(``get_network_from_plans``; PlainConvUNet, ResEnc, STU-Net, ...) and its weights are taken from the
fold's checkpoint: ``backbone.encoder.*`` for models of this package, ``encoder.*`` for stock nnU-Net
models. Every encoder weight must be there with its shape -- a checkpoint of another architecture is a
:class:`~nnunet_causal.errors.ModelError` that names the first keys that do not fit.

Features (choices, since the seed does not fix them): every encoder stage's feature map is pooled
(``stages`` = all by default) and the per-stage vectors, each L2-normalised so that wide deep stages do
not drown the shallow ones, are concatenated (``D_img = n_stages``-way concat of ``C_s``):

* organ feature of structure ``k`` = mask-weighted mean of each stage, the one-hot mask average-pooled to
  the stage's resolution (soft weights at coarse stages); a structure counts as present in a patch when
  it has at least ``min_voxels`` voxels;
* global feature = plain spatial mean of each stage.

The encoder sees what it saw in training: a model whose plans' ``"nnunet_causal"`` entry names an input
normalisation (``"rank"`` on a dataset declared for cross-modality training) gets it before the encoder
(:func:`frozen_input_normalization`); stock nnU-Net models and models without the key get nnU-Net's input.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_causal.errors import ModelError
from nnunet_causal.files import load_torch_file
from nnunet_causal.networks.input_normalization import INPUT_NORMALIZATIONS, InputNormalization
from nnunet_causal.networks.text_plans import PLANS_KEY

ENCODER_PREFIXES = ("backbone.encoder.", "encoder.")


def read_model_folder(model_folder, fold="0", checkpoint_name: str = "checkpoint_final.pth") -> dict:
    """``{"plans", "dataset_json", "configuration", "checkpoint", "weights", "trainer"}`` of a model folder."""
    from nnunet_causal.inference.model_folder import check_model_folder

    folder = Path(model_folder)
    check_model_folder(folder, [fold], checkpoint_name)
    path = folder / f"fold_{fold}" / checkpoint_name
    checkpoint = load_torch_file(path, "cpu", trusted_fallback=True)  # nnU-Net checkpoint
    plans = json.loads((folder / "plans.json").read_text(encoding="utf-8"))
    configuration = (checkpoint.get("init_args") or {}).get("configuration") or folder.name.split("__")[-1]
    if configuration not in plans.get("configurations", {}):
        raise ModelError(f"{path}: configuration '{configuration}' is not in {folder / 'plans.json'}")
    return {"plans": plans, "dataset_json": json.loads((folder / "dataset.json").read_text(encoding="utf-8")),
            "configuration": configuration, "checkpoint": str(path), "weights": checkpoint["network_weights"],
            "trainer": checkpoint.get("trainer_name", "")}


def encoder_weights(weights: Dict[str, torch.Tensor], source: str) -> Dict[str, torch.Tensor]:
    """The encoder's tensors of a network state dict, keys relative to the encoder."""
    for prefix in ENCODER_PREFIXES:
        found = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        if found:
            return found
    raise ModelError(f"{source}: no encoder weights (no key starts with {' or '.join(ENCODER_PREFIXES)}); MGCL "
                     f"needs an encoder/decoder network trained with nnU-Net or this package")


def build_frozen_encoder(info: dict) -> Tuple[nn.Module, List[int]]:
    """The plans' encoder with the checkpoint's weights, frozen and in eval mode; and its stage widths."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    cm = PlansManager(info["plans"]).get_configuration(info["configuration"])
    channels = len(info["dataset_json"]["channel_names"])
    try:
        network = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                         cm.network_arch_init_kwargs_req_import, channels, 2, allow_init=True,
                                         deep_supervision=False)
    except (ImportError, TypeError, ValueError, KeyError) as e:
        raise ModelError(f"{info['checkpoint']}: cannot build the plans' network {cm.network_arch_class_name} "
                         f"({e})") from e
    encoder = getattr(network, "encoder", None)
    if encoder is None:
        raise ModelError(f"{info['checkpoint']}: the plans' network {cm.network_arch_class_name} has no encoder")
    found = encoder_weights(info["weights"], info["checkpoint"])
    own = encoder.state_dict()
    missing = sorted(set(own) - set(found))
    unused = sorted(set(found) - set(own))
    shapes = sorted(k for k in set(own) & set(found) if tuple(own[k].shape) != tuple(found[k].shape))
    if missing or unused or shapes:
        raise ModelError(f"{info['checkpoint']} holds another architecture than its plans' "
                         f"{cm.network_arch_class_name} encoder: missing {missing[:3]}, unexpected {unused[:3]}, "
                         f"shape mismatch {shapes[:3]}")
    encoder.load_state_dict(found)
    encoder.requires_grad_(False).eval()
    widths = cm.network_arch_init_kwargs.get("features_per_stage")
    n_stages = int(cm.network_arch_init_kwargs.get("n_stages", 1))
    widths = [int(w) for w in widths] if isinstance(widths, (list, tuple)) else [int(widths or 0)] * n_stages
    return encoder, widths


def frozen_input_normalization(info: dict) -> InputNormalization:
    """The input normalisation the model of ``info`` (:func:`read_model_folder`) applies before its encoder:
    its plans' ``"nnunet_causal"`` ``input_normalization`` (``"none"`` when absent, as for stock models)."""
    mode = str((info["plans"].get(PLANS_KEY) or {}).get("input_normalization", "none"))
    if mode not in INPUT_NORMALIZATIONS:
        raise ModelError(f"{info['checkpoint']}: its plans.json names input normalisation {mode!r}; expected one "
                         f"of {', '.join(INPUT_NORMALIZATIONS)}")
    return InputNormalization(mode)


def pool_features(skips: List[torch.Tensor], seg: torch.Tensor, values: List[int], min_voxels: int = 4
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Organ and global features of a batch.

    ``skips``: the encoder's stage outputs ``(B, C_s, *spatial_s)``; ``seg``: ``(B, 1, *spatial)`` label map
    at input resolution; ``values``: the label value of each of the K structures. Returns ``organ (B, K,
    D_img)``, ``present (B, K)`` bool and ``global (B, D_img)``, float32.
    """
    seg = seg[:, 0].long()
    masks = torch.stack([(seg == v) for v in values], 1).float()  # (B, K, *spatial)
    present = masks.flatten(2).sum(-1) >= min_voxels
    organ, glob = [], []
    for f in skips:
        f = f.float()
        size = f.shape[2:]
        pool = F.adaptive_avg_pool3d if f.ndim == 5 else F.adaptive_avg_pool2d
        w = pool(masks, size).flatten(2)                               # (B, K, N)
        flat = f.flatten(2)                                            # (B, C, N)
        pooled = torch.einsum("bkn,bcn->bkc", w, flat) / w.sum(-1, keepdim=True).clamp_min(1e-6)
        organ.append(F.normalize(pooled, dim=-1))
        glob.append(F.normalize(flat.mean(-1), dim=-1))
    return torch.cat(organ, -1), present, torch.cat(glob, -1)


class ImageProjection(nn.Module):
    """Trainable map from pooled image features ``(..., D_img)`` to the text space ``(..., D_text)``
    (two layers, GELU), unit-norm output. The image encoder stays frozen; this head is what CLIP models call
    the image projection.

    With ``position_dims > 0`` the organ feature also says where the organ lies: ``forward(x, position)``
    adds a learnable linear map of the mask centroid (``(..., position_dims)`` in ``[-1, 1]``, the case frame
    of :func:`~nnunet_causal.mgcl.organ_position.organ_positions`) to the first layer's pre-activation --
    the same as concatenating the position to the pooled feature, kept as its own weight so that old heads
    (``position_dims = 0``) load unchanged. It is what lets MGCL tell mirror-image organs (left / right
    kidney) apart; see :mod:`nnunet_causal.mgcl.organ_position`. Global features are projected without it.
    """

    def __init__(self, image_dim: int, text_dim: int, hidden: int = 256, position_dims: int = 0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(image_dim, hidden), nn.GELU(), nn.Linear(hidden, text_dim))
        self.position_dims = int(position_dims)
        self.position = nn.Linear(self.position_dims, hidden, bias=False) if self.position_dims else None

    def forward(self, x: torch.Tensor, position: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.net[0](x)
        if position is not None:
            if self.position is None:
                raise ModelError("this image projection was built without a position term (position_dims = 0)")
            h = h + self.position(position.to(h.dtype))
        return F.normalize(self.net[2](self.net[1](h)), dim=-1)
