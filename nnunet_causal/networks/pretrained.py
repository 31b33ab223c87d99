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

A load is all or nothing: released weights assume STU-Net's fixed topology (see
:mod:`nnunet_causal.networks.stunet`), and a checkpoint that fits only in part means the plans are not
STU-Net's. ``allow_partial=True`` loads what fits and reports the rest.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Tuple, Union

import torch
from torch import nn

from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.files import load_torch_file
from nnunet_causal.networks.adapters import is_adapter_key

logger = logging.getLogger(__name__)

STUNET_PREFIXES = (
    ("conv_blocks_context.", "encoder.stages."),
    ("upsample_layers.", "decoder.upsamples."),
    ("conv_blocks_localization.", "decoder.stages."),
    ("seg_outputs.", "decoder.seg_layers."),
)
HEAD_PREFIXES = ("decoder.seg_layers.",)
BACKBONE_PARTS = ("encoder.", "decoder.")


def read_checkpoint_state_dict(path) -> Dict[str, torch.Tensor]:
    """The state dict of a ``.model`` / ``.pth`` checkpoint (DDP ``module.`` and compile ``_orig_mod.``
    prefixes removed)."""
    path = Path(path)
    if not path.is_file():
        raise NnunetCausalError(f"checkpoint {path} does not exist")
    try:
        ckpt = load_torch_file(path, "cpu", trusted_fallback=True)  # downloaded weights: warns if not plain
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


def _problems(report: Dict[str, list]) -> str:
    parts = []
    for what, label in (("missing", "network weights not in the checkpoint"),
                        ("unused", "checkpoint weights with no place in the network"),
                        ("mismatched", "weights of another shape")):
        keys = report[what]
        if keys:
            parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
    return "; ".join(parts)


def load_stunet_pretrained(network: nn.Module, path, skip_heads: bool = True, prefix: str = "",
                           only: Union[str, Tuple[str, ...]] = "", allow_partial: bool = False) -> Dict[str, list]:
    """Copy a released STU-Net checkpoint, or the backbone of an earlier nnU-Net run (keys ``encoder.*``,
    ``decoder.*``, optionally under ``backbone.``), into ``network`` (a STUNet / nnU-Net U-Net, or a module
    holding one under ``prefix``, e.g. ``"backbone."``). ``only`` restricts to keys starting with it (e.g.
    ``"encoder."`` or ``("encoder.", "decoder.")``).

    The load is all or nothing unless ``allow_partial``: a network weight the checkpoint lacks, a checkpoint
    weight of the restricted part that the network has no place for (another topology) or a shape that does
    not fit (other than the first layer's input channels) is an error naming the keys. With
    ``allow_partial=True`` whatever fits is loaded and the rest is listed in the returned report (and a
    warning). Output layers (``seg_outputs`` / ``decoder.seg_layers``, task specific) are skipped when
    ``skip_heads``, and adapter weights (:mod:`nnunet_causal.networks.adapters`) are never expected.

    Returns ``{"loaded", "skipped", "missing", "unused", "mismatched"}`` lists of keys (checkpoint keys,
    except ``missing``: network keys)."""
    only = (only,) if isinstance(only, str) else tuple(only)
    only = tuple(o for o in only if o)
    raw = read_checkpoint_state_dict(path)
    target = network.state_dict()
    report = {"loaded": [], "skipped": [], "missing": [], "unused": [], "mismatched": []}
    first_layer = (f"{prefix}encoder.stages.0.0.conv1.weight", f"{prefix}encoder.stages.0.0.conv3.weight")
    new_state = dict(target)
    found = set()  # network keys the checkpoint has (loaded or mismatched)
    for theirs, v in raw.items():
        k = stunet_key(theirs)
        k = k[len("backbone."):] if k.startswith("backbone.") and prefix + k not in target else k
        ours = prefix + k
        in_scope = k.startswith(only) if only else k.startswith(BACKBONE_PARTS) or ours in target
        if (skip_heads and k.startswith(HEAD_PREFIXES)) or not in_scope:
            report["skipped"].append(theirs)
            continue
        if ours not in target:
            report["unused"].append(theirs)
            continue
        if ours in first_layer:
            try:
                v = _fit_first_layer(v, target[ours], theirs)
            except NnunetCausalError:
                report["mismatched"].append(f"{theirs} {tuple(v.shape)} vs {tuple(target[ours].shape)}")
                found.add(ours)
                continue
        elif v.shape != target[ours].shape:
            report["mismatched"].append(f"{theirs} {tuple(v.shape)} vs {tuple(target[ours].shape)}")
            found.add(ours)
            continue
        new_state[ours] = v.to(target[ours].dtype)
        report["loaded"].append(theirs)
        found.add(ours)
    wanted = [key for key in target if not is_adapter_key(key) and key.startswith(prefix)
              and (key[len(prefix):].startswith(only) if only else True)
              and not (skip_heads and key[len(prefix):].startswith(HEAD_PREFIXES))]
    report["missing"] = [key for key in wanted if key not in found]
    problems = _problems(report)
    if problems and not allow_partial:
        raise NnunetCausalError(f"{path} does not fit this network: {problems}. Was it trained with another "
                                f"architecture or plans (for STU-Net: write the plans with nnunet_causal "
                                f"plan-stunet)? Pass allow_partial=True to load only what fits.")
    network.load_state_dict(new_state)
    if problems:
        logger.warning("partial load of %s: %s", path, problems)
    logger.info("loaded %d tensors from %s (%d skipped, %d missing, %d unused, %d mismatched)",
                len(report["loaded"]), path, len(report["skipped"]), len(report["missing"]),
                len(report["unused"]), len(report["mismatched"]))
    return report


def load_encoder_weights(backbone: nn.Module, path, allow_partial: bool = False) -> Dict[str, int]:
    """Load the encoder of ``backbone`` from an nnU-Net checkpoint of an earlier run (keys ``encoder.*`` or
    ``backbone.encoder.*``) or a released STU-Net checkpoint; all or nothing unless ``allow_partial``."""
    report = load_stunet_pretrained(backbone, path, only="encoder.", allow_partial=allow_partial)
    return {"loaded": len(report["loaded"])}
