"""Label map (and, when asked, probabilities and binary masks) from aggregated embeddings, prompts in chunks.

nnU-Net's export (``convert_predicted_logits_to_segmentation_with_correct_shape``) resamples all ``K + 1``
logit channels to the original spacing with ``resampling_fn_probabilities``, takes the argmax, puts the
result back into the cropping box and reverts the transpose. Here the same steps run on chunks of prompts
so that ``(K + 1) x volume`` logits are never held:

* label map: a running argmax over prompt chunks -- a voxel keeps the best logit seen so far (the background
  logit is the constant 0), exactly ``argmax([0, l_1, .., l_K])``;
* resampling, two exact ways, chosen per case (``mode="auto"``):
  ``"features"`` resamples the C embedding channels once and applies the prompts at the original spacing --
  exact when the resampling is linear in the data, which nnU-Net's default for probabilities is
  (``resample_data_or_seg_to_shape``, order 1, order_z 0 or 1: interpolation weights do not depend on the
  values, and skimage's clipping to the input range is a no-op for linear interpolation); it resamples C
  channels whatever K. ``"logits"`` computes each chunk's logits at the network's spacing and resamples the
  chunk -- exact for any resampling function (it is applied per channel); it resamples K channels.
  ``auto`` takes ``features`` when the resampling is linear and K + 1 > C, else ``logits``.
* probabilities (``--save_probabilities``): softmax over ``[0, l_1, .., l_K]`` needs every chunk's
  log-sum-exp first (one pass), then each chunk's probabilities are written straight into the ``.npz``
  (channel is the first axis of a C-order array, so chunks are contiguous bytes): same file as nnU-Net's
  (``probabilities``, float32, background 1 outside the cropping box, original axis order).

Prompts decided absent (``suppressed``) take no voxel of the label map (their logits count as -inf there)
and get an empty binary mask; their probabilities are written as computed.
"""
from __future__ import annotations

import os
import zipfile
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image
from batchgenerators.utilities.file_and_folder_operations import save_pickle

from nnunet_causal.data.raw_dataset import atomic_path
from nnunet_causal.errors import ModelError
from nnunet_causal.inference.feature_window import AggregatedFeatures, group_logits

RESAMPLE_MODES = ("auto", "features", "logits")


def resampling_is_linear(configuration_manager) -> bool:
    """Whether ``resampling_fn_probabilities`` is linear in the data (see the module docstring)."""
    cfg = configuration_manager.configuration
    kwargs = cfg.get("resampling_fn_probabilities_kwargs") or {}
    return (cfg.get("resampling_fn_probabilities") == "resample_data_or_seg_to_shape" and not kwargs.get("is_seg")
            and int(kwargs.get("order", 3)) <= 1 and int(kwargs.get("order_z", 0)) <= 1)


def _spacings(properties: dict, plans_manager, configuration_manager):
    target = [properties["spacing"][i] for i in plans_manager.transpose_forward]
    current = configuration_manager.spacing if len(configuration_manager.spacing) == \
        len(properties["shape_after_cropping_and_before_resampling"]) else [target[0], *configuration_manager.spacing]
    return current, target


class _Resampler:
    def __init__(self, properties, plans_manager, configuration_manager):
        self.shape = tuple(int(s) for s in properties["shape_after_cropping_and_before_resampling"])
        self.current, self.target = _spacings(properties, plans_manager, configuration_manager)
        self.fn = configuration_manager.resampling_fn_probabilities

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) == self.shape:
            return x
        out = self.fn(x.cpu().numpy(), self.shape, self.current, self.target)
        return torch.as_tensor(np.asarray(out, dtype=np.float32))


def choose_mode(mode: str, agg: AggregatedFeatures, configuration_manager, needs_resampling: bool) -> str:
    if mode not in RESAMPLE_MODES:
        raise ValueError(f"unknown resampling mode '{mode}' (choose one of {', '.join(RESAMPLE_MODES)})")
    if not needs_resampling:
        return "none"
    linear = resampling_is_linear(configuration_manager)
    if mode == "features" and not linear:
        raise ModelError(f"resampling_fn_probabilities {configuration_manager.configuration.get('resampling_fn_probabilities')}"
                         f" with {configuration_manager.configuration.get('resampling_fn_probabilities_kwargs')} is not "
                         f"linear in the data: resample logits (mode 'logits') instead of embeddings")
    if mode == "auto":
        return "features" if linear and agg.groups.shape[0] + 1 > agg.features.shape[0] else "logits"
    return mode


def iter_chunk_logits(agg: AggregatedFeatures, resample: _Resampler, mode: str, chunk: int):
    """Yield ``(start, logits (g, *cropped original shape) float32)`` for consecutive output chunks."""
    feats = agg.features
    if mode == "features":
        feats = resample(feats)
    flat = feats.reshape(feats.shape[0], -1).float()
    spatial = feats.shape[1:]
    for start in range(0, agg.groups.shape[0], chunk):
        stop = min(start + chunk, agg.groups.shape[0])
        logits = group_logits(agg, flat, start, stop).view(stop - start, *spatial)
        if mode == "logits":
            logits = resample(logits)
        yield start, logits.cpu()


def _to_original(array: np.ndarray, properties: dict, plans_manager, fill_first: Optional[float] = None) -> np.ndarray:
    """Cropped ``(c, *shape)`` -> ``(c, *shape_before_cropping)`` in the original axis order."""
    full = np.zeros((array.shape[0], *properties["shape_before_cropping"]), dtype=array.dtype)
    if fill_first is not None:
        full[0] = fill_first
    full = insert_crop_into_image(full, array, properties["bbox_used_for_cropping"])
    return full.transpose([0] + [i + 1 for i in plans_manager.transpose_backward])


def _write_npz_chunks(path: str, shape: Sequence[int], chunks) -> None:
    """An ``.npz`` holding ``probabilities`` of ``shape`` (float32) written chunk by chunk along axis 0."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": tuple(int(s) for s in shape)}
    with atomic_path(path, suffix=".npz") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            with zf.open("probabilities.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, header)
                for part in chunks:
                    f.write(np.ascontiguousarray(part, dtype=np.float32).tobytes())


def export_case(agg: AggregatedFeatures, properties: dict, plans_manager, configuration_manager, dataset_json: dict,
                output_truncated: Optional[str], *, suppressed: Optional[torch.Tensor] = None,
                save_probabilities: bool = False, binary_masks: Optional[Dict[int, str]] = None,
                mode: str = "auto", chunk: int = 8) -> dict:
    """The label map of one case; with ``output_truncated``, write the files streamed chunk by chunk beside it
    (``.npz``/``.pkl`` probabilities, binary masks ``{output index: file-name part}``, named and written by
    :mod:`~nnunet_causal.inference.case_outputs`). Returns ``{"segmentation": label map (original geometry),
    "peaks": max logit per output, "mode": resampling mode, "binary": {output index: (file, voxel count)}}``
    (plus ``"probabilities"`` when asked without ``output_truncated``)."""
    from nnunet_causal.inference import case_outputs

    resample = _Resampler(properties, plans_manager, configuration_manager)
    needs = tuple(agg.features.shape[1:]) != resample.shape
    mode = choose_mode(mode, agg, configuration_manager, needs)
    n_out = agg.groups.shape[0]
    chunk = max(1, int(chunk))
    rw = plans_manager.image_reader_writer_class()
    ending = dataset_json["file_ending"]
    best = label = None
    peaks, binary = [], {}
    for start, logits in iter_chunk_logits(agg, resample, mode, chunk):
        if best is None:
            best = torch.zeros(logits.shape[1:], dtype=torch.float32)
            label = torch.zeros(logits.shape[1:], dtype=torch.int32)
        peaks.extend(float(v) for v in logits.reshape(logits.shape[0], -1).amax(1))
        ranked = logits
        if suppressed is not None and bool(suppressed[start:start + logits.shape[0]].any()):
            ranked = logits.masked_fill(suppressed[start:start + logits.shape[0]].view(-1, *[1] * best.ndim),
                                        float("-inf"))
        value, index = ranked.max(0)
        better = value > best
        best = torch.maximum(best, value)
        label = torch.where(better, index.int() + start + 1, label)
        for i in range(logits.shape[0]) if binary_masks and output_truncated else ():
            if start + i in binary_masks:   # the prompt's mask; empty when its structure is suppressed
                off = suppressed is not None and bool(suppressed[start + i])
                mask = (logits[i] > 0).numpy().astype(np.uint8)[None] * (not off)
                folder, case = os.path.split(output_truncated)
                name = case_outputs.binary_mask_name(case, binary_masks[start + i], ending)
                binary[start + i] = (name, case_outputs.write_binary_mask(
                    lambda a, path: rw.write_seg(a, path, properties),
                    _to_original(mask, properties, plans_manager)[0], os.path.join(folder, name)))
    dtype = np.uint8 if n_out < 255 else np.uint16
    seg = _to_original(label.numpy().astype(dtype)[None], properties, plans_manager)[0]
    result = {"peaks": peaks, "mode": mode, "binary": binary, "segmentation": seg}
    if save_probabilities:
        lse = torch.zeros_like(best)  # log-sum-exp over [0, l_1..l_K], starting with the background's exp(0)
        for _, logits in iter_chunk_logits(agg, resample, mode, chunk):
            lse = torch.logaddexp(lse, torch.logsumexp(logits, 0))

        def parts():
            yield _to_original(torch.exp(-lse).numpy()[None], properties, plans_manager, fill_first=1.0)
            for _, logits in iter_chunk_logits(agg, resample, mode, chunk):
                yield _to_original(torch.exp(logits - lse).numpy(), properties, plans_manager)
        shape = (n_out + 1, *[properties["shape_before_cropping"][i] for i in plans_manager.transpose_backward])
        if output_truncated is None:
            result["probabilities"] = np.concatenate(list(parts()), 0)
        else:
            _write_npz_chunks(output_truncated + ".npz", shape, parts())
            save_pickle(properties, output_truncated + ".pkl")
    return result
