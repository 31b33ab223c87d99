"""Feature-space sliding window: aggregate the per-voxel embeddings once, apply every prompt at the end.

With the MLP connector the head is linear in the voxel embeddings, ``l_k(x) = <q_k, F(x)> + b_k``
(OpenVocabCT, seed 002), and nnU-Net's aggregation is a weighted mean over tiles and mirrors: with Gaussian
weights ``w_t`` and mirrors ``m``,

    sum_t w_t mean_m l_k(F_tm) / sum_t w_t  =  <q_k, sum_t w_t mean_m F_tm / sum_t w_t> + b_k,

so aggregating ``E`` embedding channels gives the same logits as aggregating ``K + 1`` logit channels, and
the cost of the window no longer grows with the number of prompts. Several folds (each its own head) are one
linear head over their stacked embeddings: ``mean_f (q_k^f F^f + b_k^f) = [q^1 .. q^n]/n . [F^1; ..; F^n] +
mean_f b^f``.

What is nnU-Net's here: padding (``pad_nd_image``), tile positions (nnU-Net's slicers),
the Gaussian (``compute_gaussian``, sigma 1/8, value scale 10) and the mirror axes. Our choice: the
embeddings are accumulated in float32 (nnU-Net accumulates logits in float16); an E-channel float32 map costs
as much memory as E/2 float16 logit channels and keeps the head's dot product exact.

The cross-attention connector's queries attend to each image (``q_k <- q_k + Attn(q_k, pool(F))``): the
head is then not linear in the aggregated embeddings, so that connector keeps nnU-Net's logit aggregation.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import List, Optional

import torch

from nnunetv2.inference.sliding_window_prediction import compute_gaussian
from nnunetv2.utilities.helpers import dummy_context, empty_cache
from acvl_utils.cropping_and_padding.padding import pad_nd_image

from nnunet_causal.inference.model_folder import unwrap_network


@dataclass
class AggregatedFeatures:
    """A case's embeddings and the linear head to apply to them.

    ``features (C, *spatial)`` float32 on the results device (C = folds x E); ``queries (M, C)``, ``bias (M,)``;
    ``groups (G, P)`` / ``valid (G, P)``: output g is the maximum over rows ``groups[g][valid[g]]``;
    ``presence (folds, G)``: case-level presence probability per fold, or None without a presence head.
    """
    features: torch.Tensor
    queries: torch.Tensor
    bias: torch.Tensor
    groups: torch.Tensor
    valid: torch.Tensor
    presence: Optional[torch.Tensor] = None


def _mirrored_features(predictor, network, x: torch.Tensor) -> torch.Tensor:
    """Voxel embeddings of one tile averaged over nnU-Net's mirror combinations (as
    ``_internal_maybe_mirror_and_predict`` averages logits)."""
    out = network.voxel_features(x)
    axes = predictor.allowed_mirroring_axes if predictor.use_mirroring else None
    if axes:
        axes = [m + 2 for m in axes]
        combos = [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]
        for c in combos:
            out = out + torch.flip(network.voxel_features(torch.flip(x, c)), c)
        out = out / (len(combos) + 1)
    return out


@torch.inference_mode()
def sliding_window_features(predictor, data: torch.Tensor) -> torch.Tensor:
    """Gaussian-weighted, mirror-averaged voxel embeddings ``(E, *spatial)`` of ``data (C_in, *spatial)``
    for the network's current weights (float32, on the device when ``perform_everything_on_device``; as
    nnU-Net, a GPU that runs out of memory for the aggregated map gets it on the CPU instead)."""
    on_device = predictor.perform_everything_on_device and predictor.device.type != "cpu"
    if on_device:
        try:
            return _sliding_window_features(predictor, data, predictor.device)
        except torch.cuda.OutOfMemoryError:
            empty_cache(predictor.device)
    return _sliding_window_features(predictor, data, torch.device("cpu"))


def _sliding_window_features(predictor, data: torch.Tensor, results_device: torch.device) -> torch.Tensor:
    network = unwrap_network(predictor.network).to(predictor.device)
    network.eval()
    device = predictor.device
    patch = predictor.configuration_manager.patch_size
    autocast = torch.autocast(device.type, enabled=True) if device.type == "cuda" else dummy_context()
    with autocast:
        padded, revert = pad_nd_image(data, patch, "constant", {"value": 0}, True, None)
        slicers = predictor.sliding_window_slicers(padded.shape[1:])
        padded = padded.to(results_device)
        features = torch.zeros((network.embed_dim, *padded.shape[1:]), dtype=torch.float32, device=results_device)
        weights = torch.zeros(padded.shape[1:], dtype=torch.float32, device=results_device)
        gaussian = compute_gaussian(tuple(patch), sigma_scale=1. / 8, value_scaling_factor=10, device=results_device) \
            if predictor.use_gaussian else torch.ones(tuple(patch), device=results_device)
        gaussian = gaussian.float()
        from tqdm import tqdm
        for sl in tqdm(slicers, disable=not predictor.allow_tqdm, desc="tiles"):
            tile = torch.clone(padded[sl][None], memory_format=torch.contiguous_format).to(device)
            f = _mirrored_features(predictor, network, tile)[0].to(results_device).float()
            features[sl] += f * gaussian
            weights[sl[1:]] += gaussian
        features /= weights
    empty_cache(device)
    return features[(slice(None), *revert[1:])]


@torch.inference_mode()
def aggregate_case(predictor, data: torch.Tensor) -> AggregatedFeatures:
    """Every fold's embeddings of one case stacked, with the matching stacked head, and presence per fold."""
    network = unwrap_network(predictor.network)
    params = predictor.list_of_parameters
    n = len(params)
    feats: List[torch.Tensor] = []
    queries, biases, presence = [], [], []
    for p in params:
        network.load_state_dict(p)
        network.presence_recorder = [] if network.presence is not None else None
        try:
            feats.append(sliding_window_features(predictor, data))
            records = network.presence_recorder
        finally:
            network.presence_recorder = None
        q, b = network.head()
        queries.append(q.float().to(feats[-1].device) / n)
        biases.append(b.float().to(feats[-1].device) / n)
        if records is not None:
            presence.append(torch.sigmoid(torch.cat(records, 0)).amax(0).cpu())
    groups, valid = network.inference_groups, network.inference_valid
    if groups is None:
        raise ValueError("set_inference_prompts (or the predictor's set_prompts) must be called first")
    return AggregatedFeatures(torch.cat(feats, 0), torch.cat(queries, 1), torch.stack(biases).sum(0),
                              groups.to(feats[0].device), valid.to(feats[0].device),
                              torch.stack(presence) if presence else None)


def group_logits(agg: AggregatedFeatures, features: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Logits ``(stop - start, N)`` of outputs ``start..stop-1`` on ``features (C, N)`` (merged categories by
    the maximum over their members)."""
    idx, ok = agg.groups[start:stop], agg.valid[start:stop]
    rows = idx.reshape(-1)
    q, b = agg.queries[rows].to(features), agg.bias[rows].to(features)
    logits = torch.addmm(b[:, None], q, features).view(*idx.shape, -1)
    if idx.shape[1] == 1:
        return logits[:, 0]
    return logits.masked_fill(~ok[..., None], torch.finfo(logits.dtype).min).amax(1)
