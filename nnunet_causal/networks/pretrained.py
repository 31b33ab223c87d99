"""Loading pretrained weights: released STU-Net checkpoints and encoders of earlier nnU-Net runs.

STU-Net checkpoints come as ``.model`` files (``torch.load`` -> ``{"state_dict": ...}``, nnU-Net v1) or
``.pth`` files (``{"network_weights": ...}``, nnU-Net v2). Their module names map to
:class:`~nnunet_causal.networks.stunet.STUNet` by prefix (the blocks inside are named alike)::

    conv_blocks_context.{i}.{j}.*        -> encoder.stages.{i}.{j}.*
    upsample_layers.{u}.conv.*           -> decoder.upsamples.{u}.conv.*
    conv_blocks_localization.{u}.{j}.*   -> decoder.stages.{u}.{j}.*
    seg_outputs.{u}.*                    -> decoder.seg_layers.{u}.*   (skipped: task specific)

A first-layer weight with fewer input channels than the target is repeated along the channel axis and
divided by the repeat factor, so a constant image gives the same response as before.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict

import torch
from torch import nn

from nnunet_causal.errors import NnunetCausalError

logger = logging.getLogger(__name__)

STUNET_PREFIXES = (
    ("conv_blocks_context.", "encoder.stages."),
    ("upsample_layers.", "decoder.upsamples."),
    ("conv_blocks_localization.", "decoder.stages."),
    ("seg_outputs.", "decoder.seg_layers."),
)
HEAD_PREFIXES = ("decoder.seg_layers.",)


def read_checkpoint_state_dict(path) -> Dict[str, torch.Tensor]:
    """The state dict of a ``.model`` / ``.pth`` checkpoint (DDP ``module.`` and compile ``_orig_mod.``
    prefixes removed)."""
    path = Path(path)
    if not path.is_file():
        raise NnunetCausalError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt or foreign file
        raise NnunetCausalError(f"cannot read checkpoint {path}: {e}") from e
    for key in ("network_weights", "state_dict", "model"):
        if isinstance(ckpt, dict) and key in ckpt and isinstance(ckpt[key], dict):
            ckpt = ckpt[key]
            break
    if not isinstance(ckpt, dict) or not all(torch.is_tensor(v) for v in ckpt.values()):
        raise NnunetCausalError(f"{path} holds no state dict (expected 'network_weights' or 'state_dict')")
    out = {}
    for k, v in ckpt.items():
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def stunet_key(key: str) -> str:
    """Released STU-Net key -> our key (unchanged when it already is ours)."""
    for theirs, ours in STUNET_PREFIXES:
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return key


def _fit_first_layer(src: torch.Tensor, dst: torch.Tensor, key: str) -> torch.Tensor:
    if src.shape == dst.shape:
        return src
    if src.ndim == dst.ndim and src.shape[0] == dst.shape[0] and src.shape[2:] == dst.shape[2:] \
            and dst.shape[1] % src.shape[1] == 0:
        factor = dst.shape[1] // src.shape[1]
        return src.repeat(1, factor, *([1] * (src.ndim - 2))) / factor
    raise NnunetCausalError(f"pretrained weight '{key}' has shape {tuple(src.shape)}, the network expects "
                            f"{tuple(dst.shape)}: the checkpoint does not fit these plans")


def load_stunet_pretrained(network: nn.Module, path, skip_heads: bool = True, prefix: str = "",
                           only: str = "") -> Dict[str, list]:
    """Copy a released STU-Net checkpoint into ``network`` (a STUNet, or a module holding one under
    ``prefix``, e.g. ``"backbone."``). ``only`` restricts to keys starting with it (e.g. ``"encoder."``).

    Returns ``{"loaded": [...], "skipped": [...], "missing": [...]}``; shape mismatches other than the
    first layer's input channels raise an error naming the key."""
    raw = read_checkpoint_state_dict(path)
    target = network.state_dict()
    report = {"loaded": [], "skipped": [], "missing": []}
    first_conv = f"{prefix}encoder.stages.0.0.conv1.weight"
    first_skip = f"{prefix}encoder.stages.0.0.conv3.weight"
    new_state = dict(target)
    loaded = set()
    for theirs, v in raw.items():
        k = stunet_key(theirs)
        ours = prefix + k
        if (skip_heads and k.startswith(HEAD_PREFIXES)) or (only and not k.startswith(only)) or ours not in target:
            report["skipped"].append(theirs)
            continue
        if ours in (first_conv, first_skip):
            v = _fit_first_layer(v, target[ours], theirs)
        elif v.shape != target[ours].shape:
            raise NnunetCausalError(f"pretrained weight '{theirs}' in {path} has shape {tuple(v.shape)}, the "
                                    f"network expects {tuple(target[ours].shape)}")
        new_state[ours] = v.to(target[ours].dtype)
        report["loaded"].append(theirs)
        loaded.add(ours)
    wanted = [k for k in target if k.startswith(prefix + (only or "")) and
              not (skip_heads and k[len(prefix):].startswith(HEAD_PREFIXES))]
    report["missing"] = [k for k in wanted if k not in loaded]
    network.load_state_dict(new_state)
    logger.info("loaded %d tensors from %s (%d skipped, %d missing)", len(report["loaded"]), path,
                len(report["skipped"]), len(report["missing"]))
    return report


def load_encoder_weights(backbone: nn.Module, path) -> Dict[str, int]:
    """Load the encoder of ``backbone`` from an nnU-Net checkpoint of an earlier run (keys ``encoder.*`` or
    ``backbone.encoder.*``) or a released STU-Net checkpoint. Every encoder tensor must be found."""
    state = {stunet_key(k): v for k, v in read_checkpoint_state_dict(path).items()}
    state = {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in state.items()}
    target = backbone.state_dict()
    enc_keys = [k for k in target if k.startswith("encoder.")]
    missing = [k for k in enc_keys if k not in state]
    if missing:
        raise NnunetCausalError(f"{path} lacks {len(missing)} encoder weights of this network (e.g. {missing[0]}); "
                                f"was it trained with the same plans / architecture?")
    new_state = dict(target)
    for k in enc_keys:
        v = state[k]
        if v.shape != target[k].shape:
            v = _fit_first_layer(v, target[k], k) if k.startswith("encoder.stages.0.0.") else None
            if v is None:
                raise NnunetCausalError(f"encoder weight '{k}' in {path} has shape {tuple(state[k].shape)}, "
                                        f"expected {tuple(target[k].shape)}")
        new_state[k] = v
    backbone.load_state_dict(new_state)
    return {"loaded": len(enc_keys)}
