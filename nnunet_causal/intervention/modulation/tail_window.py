"""nnU-Net's sliding-window aggregation of decoder-tail outputs, for the edits of one cached case.

An edit needs, per tile and mirror of the base prediction, only the decoder from its first modulated stage
on (:func:`~nnunet_causal.intervention.modulation.decoder_tail.decode_tail`). Going through
``nnUNetPredictor.predict_sliding_window_return_logits`` again would also pad and copy the image, start its
tile thread, and call the network once per tile and mirror. :class:`TailWindow` instead keeps what does not
depend on the command -- tile slicers, padding, the Gaussian, the summed Gaussian weights, the stacked cached
features -- once per case, runs the tail on all tiles and mirrors in batches of ``batch`` calls (one FiLM
parameter set broadcast over the batch), and aggregates as nnU-Net does (mirror average, Gaussian weighting,
half-precision accumulators, division, padding removed), for the requested channels only. With an identity
modulation it reproduces the base logits (tested against nnU-Net's loop).
"""
from __future__ import annotations

import itertools
from typing import List, Optional, Sequence

import torch

from nnunet_causal.intervention.modulation.cached_network import CachingNetwork
from nnunet_causal.intervention.modulation.decoder_tail import decode_tail


class TailWindow:
    """One case's sliding-window geometry and stacked cached features (built on the first edit)."""

    def __init__(self, predictor, data: torch.Tensor, cached: CachingNetwork, start: int, batch: int = 16):
        from acvl_utils.cropping_and_padding.padding import pad_nd_image
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian

        p = predictor
        patch = tuple(p.configuration_manager.patch_size)
        padded_shape, self.revert = self._padding(pad_nd_image, data, patch)
        self.slicers = p.sliding_window_slicers(padded_shape)
        axes = [m + 2 for m in p.allowed_mirroring_axes] if p.use_mirroring and p.allowed_mirroring_axes else []
        #: flip axes of every recorded call of a tile, in nnU-Net's order (unmirrored first)
        self.flips = [()] + [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]
        calls = len(self.slicers) * len(self.flips)
        if len(cached.cache) != calls or len(cached.stage_cache) != calls:
            raise RuntimeError(f"{len(cached.cache)} recorded calls ({len(cached.stage_cache)} with the decoder "
                               f"stage) but the sliding window makes {calls}: predict the case again")
        self.gaussian = (compute_gaussian(patch, sigma_scale=1. / 8, value_scaling_factor=10,
                                          device=torch.device("cpu")) if p.use_gaussian else None)
        self.weights = torch.zeros(padded_shape, dtype=torch.half)
        for sl in self.slicers:
            self.weights[sl[1:]] += self.gaussian if self.gaussian is not None else 1
        self.start, self.batch, self.cached = start, max(1, int(batch)), cached
        self.padded_shape = padded_shape
        n_skips = len(cached.cache[0][0])
        # skips the tail reads: skips[-(s + 2)] for the stages after ``start``
        self.skip_indices = sorted({n_skips - (s + 2) for s in range(start + 1, n_skips - 1)})
        self._stacks = {}

    @staticmethod
    def _padding(pad_nd_image, data, patch):
        probe = torch.zeros((1, *data.shape[1:]))
        padded, revert = pad_nd_image(probe, patch, "constant", {"value": 0}, True, None)
        return tuple(padded.shape[1:]), revert

    def _stacked(self, mirrored: bool):
        """(stage outputs, {skip index: skips}) of the calls used, stacked along the batch axis."""
        if mirrored not in self._stacks:
            step = 1 if mirrored else len(self.flips)
            idx = range(0, len(self.cached.cache), step)
            outs = torch.cat([self.cached.stage_cache[i] for i in idx])
            skips = {j: torch.cat([self.cached.cache[i][0][j] for i in idx]) for j in self.skip_indices}
            self._stacks[mirrored] = (outs, skips)
        return self._stacks[mirrored]

    @torch.inference_mode()
    def logits(self, network, channels: Sequence[int], params=None, stages: Optional[List[int]] = None,
               mirrored: bool = True) -> torch.Tensor:
        """Aggregated logits (len(channels), *spatial) in half precision, as nnU-Net's sliding window makes them
        (mirror average over every recorded flip when ``mirrored``, else the unmirrored call of each tile)."""
        outs, skips = self._stacked(mirrored)
        n_skips = len(self.cached.cache[0][0])
        channels = list(channels)
        results = []
        for b in range(0, outs.shape[0], self.batch):
            chunk = [None] * n_skips
            for j, t in skips.items():
                chunk[j] = t[b:b + self.batch]
            y = decode_tail(network, self.start, outs[b:b + self.batch], chunk, params, stages)
            results.append(y[:, channels])
        self.cached.decoder_calls += outs.shape[0]
        calls = torch.cat(results)
        flips = self.flips if mirrored else [()]
        acc = torch.zeros((len(channels), *self.padded_shape), dtype=torch.half)
        for t, sl in enumerate(self.slicers):
            pred = calls[t * len(flips):t * len(flips) + 1].clone()
            for j, axes in enumerate(flips[1:], start=1):
                pred += torch.flip(calls[t * len(flips) + j:t * len(flips) + j + 1], axes)
            if len(flips) > 1:
                pred /= len(flips)
            pred = pred[0]
            if self.gaussian is not None:
                pred *= self.gaussian
            acc[sl] += pred
        torch.div(acc, self.weights, out=acc)
        return acc[(slice(None), *self.revert[1:])]
