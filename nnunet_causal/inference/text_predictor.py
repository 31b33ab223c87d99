"""nnU-Net's predictor, segmenting whatever the user names.

:class:`nnUNetTextPredictor` is ``nnUNetPredictor`` plus :meth:`set_prompts`. Each prompt is grounded
(:mod:`nnunet_causal.text.resolver`, seed 003): a prompt whose resolved terms are trained structures reuses
their stored embeddings (a merged category such as "kidneys" becomes the voxel-wise union -- maximum of
logits -- of its members); a prompt that names something the model was not trained on, or that the
knowledge base does not know but ``open_vocabulary`` allows, is embedded by the model's own text encoder
and goes through the MLP connector (OpenVocabCT's open-vocabulary path). The backbone and decoder run once
per patch whatever the number of prompts; each prompt adds one dot product per voxel.

Output label map: value ``i`` (1-based) is prompt ``i``; a voxel takes the prompt with the largest logit
among those with sigmoid > 0.5, else background. Prompts the presence head decides absent take no voxel
(unless ``keep_absent_masks``); see :mod:`nnunet_causal.inference.presence`.

Usage: options at construction, prompts once, then one call per preprocessed case::

    p = nnUNetTextPredictor(device=torch.device("cpu"), options=PredictionOptions(keep_absent_masks=False))
    p.initialize_from_trained_model_folder(model_folder, (0,))
    p.set_prompts(["liver", "renal organs"])
    result = p.predict_case(data, properties)      # CasePrediction: label map, peaks, presence

Two ways through the sliding window, same outputs within floating-point tolerance:

* MLP connector (default): the embeddings are aggregated once and the prompts applied at the end in chunks
  (:mod:`~nnunet_causal.inference.feature_window`, :mod:`~nnunet_causal.inference.chunked_export`); cases
  are exported in this process, one after the other. A merged category is there the maximum of its members'
  aggregated logits (nnU-Net's logit path averages the maximum over tiles and mirrors; the two agree where
  tiles agree).
* cross-attention connector, or ``feature_window = False``: nnU-Net's own logit aggregation and export.
"""
from __future__ import annotations

import copy
import logging
import multiprocessing
import os
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

from nnunet_causal.errors import DatasetError, PromptError, ResolutionError
from nnunet_causal.inference import presence as presence_decisions
from nnunet_causal.inference.model_folder import unwrap_network
from nnunet_causal.inference.prompt_assignment import PromptAssignment, explanation_of
from nnunet_causal.inference.modality_check import warn_if_not_ct
from nnunet_causal.inference.stock_prompts import caller_sets_prompts
from nnunet_causal.networks.text_plans import get_text_settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictionOptions:
    """How :meth:`nnUNetTextPredictor.predict_case` runs (fixed at construction)."""
    #: aggregate embeddings instead of logits where the connector allows it (see the module docstring)
    feature_window: bool = True
    #: resampling to the original spacing: "auto", "features" or "logits" (chunked_export)
    resample_mode: str = "auto"
    #: prompts per chunk when applying the head to a whole volume
    prompt_chunk_size: int = 8
    #: keep the masks of prompts decided absent in the label map (the sidecar still says absent)
    keep_absent_masks: bool = False


@dataclass
class CasePrediction:
    """One predicted case: the label map in the original geometry ``(*original shape)``, one peak sigmoid
    probability and one presence record (``None`` for a model without a presence head) per prompt, the binary
    masks written (``{label value: (file name, voxel count)}``), the resampling mode used and, on request, the
    logits ``(1 + K, *network spacing shape)`` (logit path) or probabilities ``(1 + K, *original shape)``."""
    segmentation: np.ndarray
    max_probability: List[float]
    presence: Optional[List[dict]]
    resample_mode: str = "logits"
    binary: Dict[int, Tuple[str, int]] = field(default_factory=dict)
    logits: Optional[torch.Tensor] = None
    probabilities: Optional[np.ndarray] = None


class nnUNetTextPredictor(nnUNetPredictor):
    """``nnUNetPredictor`` with :meth:`set_prompts` and :meth:`predict_case`; the sliding window, mirroring,
    preprocessing and resampling are nnU-Net's. ``options`` (:class:`PredictionOptions`) fix how cases run."""

    def __init__(self, *args, options: Optional[PredictionOptions] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.options = options or PredictionOptions()
        self.assignments: List[PromptAssignment] = []
        self.presence_calibrations: List[Optional[dict]] = []
        self._text_encoder = None

    def initialize_from_trained_model_folder(self, model_training_output_dir, use_folds,
                                             checkpoint_name="checkpoint_final.pth"):
        with caller_sets_prompts():  # prompts come from set_prompts, not from nnUNet_causal_prompt_file
            super().initialize_from_trained_model_folder(model_training_output_dir, use_folds, checkpoint_name)
        if use_folds is None:
            use_folds = self.auto_detect_available_folds(model_training_output_dir, checkpoint_name)
        self.presence_calibrations = presence_decisions.load_calibrations(
            model_training_output_dir, use_folds, self.list_of_parameters, self.plans_manager.plans)

    def sliding_window_slicers(self, image_size) -> list:
        """nnU-Net's tile positions over a padded ``(*spatial)`` size (the same tiles its own window uses)."""
        return self._internal_get_sliding_window_slicers(image_size)

    def has_presence_head(self) -> bool:
        return unwrap_network(self.network).presence is not None

    def uses_feature_window(self) -> bool:
        net = unwrap_network(self.network)
        return bool(self.options.feature_window and self.assignments and net.inference_groups is not None
                    and not net.connector.image_conditioned)

    # ------------------------------------------------------------------ prompts
    def text_encoder(self):
        """The model's own text encoder, loaded on first use only (trained prompts never need it)."""
        if self._text_encoder is None:
            from nnunet_causal.text.embedding_cache import get_text_encoder
            settings = get_text_settings(self.plans_manager.plans, "the model's plans.json")
            self._text_encoder = get_text_encoder(settings["text_encoder"])
        return self._text_encoder

    def set_prompts(self, prompts: Sequence, open_vocabulary: bool = False,
                    use_embedding_resolution: bool = True) -> List[PromptAssignment]:
        """Ground ``prompts`` (strings or :class:`~nnunet_causal.text.prompt_file.PromptSpec`) and configure
        the network to output one channel per prompt. Returns the assignments (also kept in
        ``self.assignments``).

        Raises :class:`ResolutionError` for a prompt that resolves to nothing, listing the nearest known
        terms, unless ``open_vocabulary`` is set.
        """
        from nnunet_causal.text.resolver import nearest_terms, resolve_prompt
        from nnunet_causal.text.vocabulary import load_vocabulary, vocabulary_from_labels

        settings = get_text_settings(self.plans_manager.plans, "the model's plans.json")
        trained_names = list(settings["prompts"])
        model_vocab = vocabulary_from_labels({n: i + 1 for i, n in enumerate(trained_names)}, settings["prompts"])
        full_vocab = load_vocabulary("all").merged_with(model_vocab)
        term_to_label = model_vocab.label_for_term
        net = unwrap_network(self.network)
        if net.prompt_embeddings.shape[0] != len(trained_names):
            raise DatasetError("the network and the plans disagree on the number of trained prompts")

        texts = [p if isinstance(p, str) else p.text for p in prompts]
        if not texts:
            raise PromptError("no prompts given")
        for t in texts:
            if not t or not t.strip():
                raise PromptError("empty prompt")
        encoder = self.text_encoder() if use_embedding_resolution else None

        rows: List[torch.Tensor] = []
        groups: List[List[int]] = []
        assignments: List[PromptAssignment] = []
        trained_rows: Dict[str, int] = {}
        open_texts: List[tuple] = []  # (group index, text)
        for i, (spec, text) in enumerate(zip(prompts, texts)):
            res = resolve_prompt(text, full_vocab, encoder=encoder)
            trained = [term_to_label(t) for t in res.terms]
            trained = [t for t in trained if t is not None]
            if res.terms and trained:
                group = []
                for name in dict.fromkeys(trained):
                    if name not in trained_rows:
                        trained_rows[name] = len(rows)
                        rows.append(net.prompt_embeddings[trained_names.index(name)].detach().cpu())
                    group.append(trained_rows[name])
                groups.append(group)
                source = "trained"
            else:
                if not res.terms and not open_vocabulary:
                    near = ", ".join(nearest_terms(text, full_vocab, k=5))
                    why = f" ({res.message})" if res.message else ""
                    raise ResolutionError(f"prompt '{text}' does not name any known structure{why} (nearest known "
                                          f"terms: {near}); rephrase it, or pass --open_vocabulary to segment it "
                                          f"through its own text embedding")
                groups.append([-1])  # filled below
                open_texts.append((i, text if isinstance(spec, str) else [text, *getattr(spec, "synonyms", [])]))
                trained, source = [], "open_vocabulary"
            assignments.append(PromptAssignment(text, i + 1, list(res.terms), float(res.score), res.method, source,
                                                list(dict.fromkeys(trained)), list(res.used), list(res.ignored),
                                                list(res.unknown), res.corrected, res.message,
                                                explanation_of(res)))
        if open_texts:
            enc = self.text_encoder()
            for gi, t in open_texts:
                variants = [t] if isinstance(t, str) else t
                e = enc.encode(variants).mean(0)
                groups[gi] = [len(rows)]
                rows.append(e / e.norm().clamp_min(1e-8))
        net.set_inference_prompts(torch.stack(rows).float(), groups)

        labels = {"background": 0}
        for a in assignments:
            name = a.prompt if a.prompt not in labels else f"{a.prompt} ({a.label_value})"
            labels[name] = a.label_value
        self.dataset_json = copy.deepcopy(self.dataset_json)
        self.dataset_json["labels"] = labels
        self.dataset_json.pop("regions_class_order", None)
        self.label_manager = self.plans_manager.get_label_manager(self.dataset_json)
        self.assignments = assignments
        return assignments

    # ------------------------------------------------------------------ cases
    def check_input_channels(self, list_of_lists: List[List[str]]) -> None:
        """Every case must have as many channels as the plans expect (error names the case's files)."""
        expected = determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json)
        rw = self.plans_manager.image_reader_writer_class()
        for files in list_of_lists:
            try:
                image, _ = rw.read_images(files)
            except Exception as e:  # noqa: BLE001 - any reader failure is reported with the file names
                raise DatasetError(f"cannot read {', '.join(files)}: {e}") from e
            if image.shape[0] != expected:
                raise DatasetError(f"{', '.join(files)}: {image.shape[0]} channel(s), but the model expects "
                                   f"{expected} ({', '.join(map(str, self.dataset_json['channel_names'].values()))})")
            if not np.all(np.isfinite(image)):
                raise DatasetError(f"{', '.join(files)}: image contains NaN or infinite values")
            warn_if_not_ct(image, ", ".join(files), self.configuration_manager.normalization_schemes,
                           self.plans_manager.foreground_intensity_properties_per_channel)

    def case_lists(self, source, output_folder: Optional[str], folder_with_segs_from_prev_stage=None,
                   part_id: int = 0, num_parts: int = 1):
        """nnU-Net's pairing of a folder (or list of file lists) with truncated output paths: ``(inputs,
        outputs, previous-stage segmentations)`` of part ``part_id`` of ``num_parts``."""
        if self.configuration_manager.previous_stage_name is not None and folder_with_segs_from_prev_stage is None:
            raise DatasetError(f"configuration {self.configuration_manager.configuration_name} is a cascade stage: "
                               f"give the previous stage's predictions ({self.configuration_manager.previous_stage_name}) "
                               f"with -prev_stage_predictions")
        return self._manage_input_and_output_lists(source, output_folder, folder_with_segs_from_prev_stage, True,
                                                   part_id, num_parts, False)

    def iter_preprocessed(self, inputs: List[List[str]], previous, outputs, num_processes: int = 3) -> Iterator[dict]:
        """Cases preprocessed by nnU-Net in background processes, in input order: ``{"data": (C, *shape)
        tensor, "data_properties": dict, "ofile": truncated output path or None}``. The channel count of every
        case is checked first."""
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian
        from nnunetv2.utilities.helpers import empty_cache

        self.check_input_channels(inputs)
        running_before = set(multiprocessing.active_children())
        iterator = self._internal_get_data_iterator_from_lists_of_filenames(inputs, previous, outputs, num_processes)
        finished = False
        try:
            for item in iterator:
                data = item["data"]
                if isinstance(data, str):  # nnU-Net hands large cases over as a temporary .npy
                    path, data = data, torch.from_numpy(np.load(data))
                    os.remove(path)
                yield {**item, "data": data}
            finished = True
        finally:
            if not finished:  # stopped early: end nnU-Net's workers before their queues go (else: tracebacks)
                workers = [p for p in multiprocessing.active_children() if p.daemon and p not in running_before]
                for p in workers:
                    p.terminate()
                for p in workers:
                    p.join(timeout=30)
            compute_gaussian.cache_clear()
            empty_cache(self.device)

    def _decisions(self, scores: Optional[torch.Tensor], pooled=None) -> Optional[List[dict]]:
        """Presence records per prompt (None when the model has no presence head); ``pooled``: the presence
        head's pooled embeddings recorded during the case's window (the image-domain check)."""
        return presence_decisions.case_records(scores, self.presence_calibrations, pooled, self.assignments)

    def _suppressed(self, records: Optional[List[dict]]) -> Optional[torch.Tensor]:
        if self.options.keep_absent_masks or records is None:
            return None
        return torch.tensor([r["present"] is False for r in records], dtype=torch.bool)

    def predict_case(self, data, properties: dict, *, output_truncated: Optional[str] = None,
                     save_probabilities: bool = False, binary_masks: Optional[Dict[int, str]] = None,
                     return_logits: bool = False) -> CasePrediction:
        """Predict one preprocessed case ``data (C, *shape)`` with the prompts of :meth:`set_prompts`.

        With ``output_truncated``, the files that are streamed while predicting are written beside it:
        ``.npz``/``.pkl`` probabilities (``save_probabilities``) and the binary masks ``{label value: file-name
        part}`` of ``binary_masks`` (:mod:`nnunet_causal.inference.case_outputs` names and writes them; the
        label map and the sidecar are the caller's, through the same module). Without it,
        ``save_probabilities`` returns the probabilities instead. ``return_logits`` (logit path only) keeps the
        logits at the network's spacing.
        """
        if not self.assignments:
            raise PromptError("no prompts: call set_prompts first")
        data = torch.from_numpy(np.ascontiguousarray(data)) if isinstance(data, np.ndarray) else data
        if self.uses_feature_window():
            return self.predict_case_from_features(data, properties, output_truncated=output_truncated,
                                                   save_probabilities=save_probabilities, binary_masks=binary_masks)
        return self._predict_case_from_logits(data, properties, output_truncated, save_probabilities, binary_masks,
                                              return_logits)

    @torch.inference_mode()
    def logits_and_presence(self, data: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """nnU-Net's sliding-window logits ``(1 + K, *shape)`` (folds averaged) and the presence scores
        ``(folds, K)`` recorded during the same passes (None without a presence head)."""
        net = unwrap_network(self.network)
        record = net.presence is not None
        net.presence_recorder = [] if record else None
        try:
            logits = super().predict_logits_from_preprocessed_data(data)
            calls = net.presence_recorder
        finally:
            net.presence_recorder = None
        scores = None
        if record:  # the same number of forward passes per fold, folds one after the other
            per_fold = torch.sigmoid(torch.cat(calls, 0)).view(len(self.list_of_parameters), -1, logits.shape[0] - 1)
            scores = per_fold.amax(1)
        return logits, scores

    def _predict_case_from_logits(self, data, properties, output_truncated, save_probabilities, binary_masks,
                                  return_logits) -> CasePrediction:
        from batchgenerators.utilities.file_and_folder_operations import save_pickle
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        from nnunet_causal.inference import case_outputs

        with presence_decisions.recording_pooled_features(unwrap_network(self.network)) as pooled:
            logits, scores = self.logits_and_presence(data)
        logits = logits.to("cpu")
        peaks = torch.sigmoid(logits[1:].reshape(logits.shape[0] - 1, -1).float().amax(1))
        presence = self._decisions(scores, pooled)
        suppressed = self._suppressed(presence)
        if suppressed is not None and bool(suppressed.any()):
            logits[1:][suppressed] = torch.finfo(logits.dtype).min
        write_binary = bool(binary_masks and output_truncated)
        need_probabilities = save_probabilities or write_binary
        out = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, self.plans_manager, self.configuration_manager, self.label_manager, properties,
            return_probabilities=need_probabilities)
        seg, probabilities = out if need_probabilities else (out, None)
        binary = {}
        if write_binary:
            rw = self.plans_manager.image_reader_writer_class()
            ending = self.dataset_json["file_ending"]
            folder, case = os.path.split(output_truncated)
            for value, part in binary_masks.items():
                name = case_outputs.binary_mask_name(case, part, ending)
                mask = probabilities[value] > probabilities[0]   # <=> sigmoid(l_k) > 0.5
                binary[value] = (name, case_outputs.write_binary_mask(
                    lambda a, path: rw.write_seg(a, path, properties), mask, os.path.join(folder, name)))
        if save_probabilities and output_truncated:
            with case_outputs.atomic_path(output_truncated + ".npz", suffix=".npz") as tmp:
                np.savez_compressed(tmp, probabilities=probabilities)
            save_pickle(properties, output_truncated + ".pkl")
        return CasePrediction(np.asarray(seg), [round(float(p), 6) for p in peaks], presence, "logits", binary,
                              logits if return_logits else None,
                              probabilities if save_probabilities and not output_truncated else None)

    # ------------------------------------------------------------------ feature-space path
    def predict_case_from_features(self, data: torch.Tensor, properties: dict, output_truncated: Optional[str] = None,
                                   save_probabilities: bool = False,
                                   binary_masks: Optional[Dict[int, str]] = None) -> CasePrediction:
        """One preprocessed case through the feature-space window and the chunked export (see
        :func:`nnunet_causal.inference.chunked_export.export_case`); works on a network whose prompts were set
        with ``set_inference_prompts`` directly too."""
        from nnunet_causal.inference.chunked_export import export_case
        from nnunet_causal.inference.feature_window import aggregate_case

        n_threads = torch.get_num_threads()
        with presence_decisions.recording_pooled_features(unwrap_network(self.network)) as pooled:
            agg = aggregate_case(self, data)
        presence = self._decisions(agg.presence, pooled)
        parts = {v - 1: s for v, s in binary_masks.items()} if binary_masks and output_truncated else None
        result = export_case(agg, properties, self.plans_manager, self.configuration_manager, self.dataset_json,
                             output_truncated, suppressed=self._suppressed(presence),
                             save_probabilities=save_probabilities, binary_masks=parts,
                             mode=self.options.resample_mode, chunk=self.options.prompt_chunk_size)
        torch.set_num_threads(n_threads)
        peaks = [round(float(torch.sigmoid(torch.tensor(p))), 6) for p in result["peaks"]]
        return CasePrediction(result["segmentation"], peaks, presence, result["mode"],
                              {i + 1: v for i, v in result["binary"].items()},
                              probabilities=result.get("probabilities"))
