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
import os
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

from nnunet_causal.errors import DatasetError, PromptError, ResolutionError
from nnunet_causal.inference import presence as presence_decisions
from nnunet_causal.inference.modality_check import warn_if_not_ct
from nnunet_causal.inference.stock_prompts import caller_sets_prompts
from nnunet_causal.networks.text_plans import get_text_settings

logger = logging.getLogger(__name__)


@dataclass
class PromptAssignment:
    """How one prompt is segmented; written to the per-case JSON sidecar."""
    prompt: str
    label_value: int
    terms: List[str]
    score: float
    method: str               # resolver stage: exact | knowledge | corrected | embedding | none
    source: str               # "trained" (stored queries of trained structures) or "open_vocabulary"
    trained_structures: List[str] = field(default_factory=list)
    used_words: List[str] = field(default_factory=list)      # prompt words that named the terms
    ignored_words: List[str] = field(default_factory=list)   # the other words (articles, unknown, ...)
    unknown_words: List[str] = field(default_factory=list)   # ignored words the vocabulary does not know
    corrected: Optional[str] = None                           # spelling-corrected prompt (method "corrected")
    resolution_message: str = ""                              # the resolver's note (correction, why none)


def _unwrap(network):
    return getattr(network, "_orig_mod", network)


class nnUNetTextPredictor(nnUNetPredictor):
    """``nnUNetPredictor`` with :meth:`set_prompts`; everything else (sliding window, mirroring, export) is
    nnU-Net's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.assignments: List[PromptAssignment] = []
        self.case_max_probabilities: Dict[str, List[float]] = {}
        self._text_encoder = None
        self._pending_outputs: List[Optional[str]] = []
        #: ``f(truncated output path) -> bool``: which cases ``overwrite=False`` skips (default: nnU-Net's test,
        #: the label map and, with probabilities, the ``.npz`` exist)
        self.case_is_finished: Optional[Callable[[str], bool]] = None
        #: aggregate embeddings instead of logits where the connector allows it (see the module docstring)
        self.feature_window = True
        #: resampling to the original spacing: "auto", "features" or "logits" (chunked_export)
        self.resample_mode = "auto"
        #: prompts per chunk when applying the head to a whole volume
        self.prompt_chunk_size = 8
        #: keep the masks of prompts decided absent in the label map (the sidecar still says absent)
        self.keep_absent_masks = False
        #: ``{label value: file-name part}``: write one binary mask per prompt (feature path)
        self.binary_mask_suffixes: Optional[Dict[int, str]] = None
        self.case_presence: Dict[str, List[dict]] = {}
        self.case_binary: Dict[str, Dict[int, tuple]] = {}
        self.case_resample_mode: Dict[str, str] = {}
        self.presence_calibrations: List[Optional[dict]] = []

    def initialize_from_trained_model_folder(self, model_training_output_dir, use_folds,
                                             checkpoint_name="checkpoint_final.pth"):
        with caller_sets_prompts():  # prompts come from set_prompts, not from nnUNet_causal_prompt_file
            super().initialize_from_trained_model_folder(model_training_output_dir, use_folds, checkpoint_name)
        if use_folds is None:
            use_folds = self.auto_detect_available_folds(model_training_output_dir, checkpoint_name)
        self.presence_calibrations = presence_decisions.load_calibrations(model_training_output_dir, use_folds)

    def has_presence_head(self) -> bool:
        return _unwrap(self.network).presence is not None

    def uses_feature_window(self) -> bool:
        net = _unwrap(self.network)
        return bool(self.feature_window and self.assignments and net.inference_groups is not None
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
        net = _unwrap(self.network)
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
                                                list(res.unknown), res.corrected, res.message))
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

    # ------------------------------------------------------------------ checks + bookkeeping
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

    def _manage_input_and_output_lists(self, list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files,
                                       folder_with_segs_from_prev_stage=None, overwrite=True, part_id=0, num_parts=1,
                                       save_probabilities=False):
        if overwrite or self.case_is_finished is None:
            return super()._manage_input_and_output_lists(
                list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files,
                folder_with_segs_from_prev_stage, overwrite, part_id, num_parts, save_probabilities)
        inputs, outputs, previous = super()._manage_input_and_output_lists(
            list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files,
            folder_with_segs_from_prev_stage, True, part_id, num_parts, save_probabilities)
        if outputs is None:
            return inputs, outputs, previous
        todo = [i for i, out in enumerate(outputs) if not self.case_is_finished(out)]
        logger.info("continuing: %d of %d case(s) already finished, predicting %d", len(outputs) - len(todo),
                    len(outputs), len(todo))
        return [inputs[i] for i in todo], [outputs[i] for i in todo], [previous[i] for i in todo]

    def _internal_get_data_iterator_from_lists_of_filenames(self, input_list_of_lists, seg_from_prev_stage_files,
                                                            output_filenames_truncated, num_processes):
        self.check_input_channels(input_list_of_lists)
        self._pending_outputs = list(output_filenames_truncated) if output_filenames_truncated else []
        return super()._internal_get_data_iterator_from_lists_of_filenames(
            input_list_of_lists, seg_from_prev_stage_files, output_filenames_truncated, num_processes)

    def _decisions(self, scores: Optional[torch.Tensor]) -> List[dict]:
        if scores is None:
            return [presence_decisions.unknown_record() for _ in self.assignments]
        return [d.as_record() for d in presence_decisions.decide(scores, self.presence_calibrations)]

    def _suppressed(self, records: List[dict]) -> Optional[torch.Tensor]:
        if self.keep_absent_masks:
            return None
        return torch.tensor([r["present"] is False for r in records], dtype=torch.bool)

    @torch.inference_mode()
    def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
        """nnU-Net's logit path (cross-attention connector, or ``feature_window`` off), with the sidecar's
        peak probabilities and presence recorded; absent prompts' logits are set to the lowest value."""
        net = _unwrap(self.network)
        record = bool(self.assignments) and net.presence is not None
        net.presence_recorder = [] if record else None
        try:
            logits = super().predict_logits_from_preprocessed_data(data)
            calls = net.presence_recorder
        finally:
            net.presence_recorder = None
        if self.assignments:
            # cases are predicted in input order; record max sigmoid per prompt for the sidecar
            key = self._pending_outputs.pop(0) if self._pending_outputs else f"case_{len(self.case_max_probabilities)}"
            peak = torch.sigmoid(logits[1:].reshape(logits.shape[0] - 1, -1).float().amax(1))
            self.case_max_probabilities[key] = [round(float(p), 6) for p in peak]
            scores = None
            if record:  # the same number of forward passes per fold, folds one after the other
                per_fold = torch.sigmoid(torch.cat(calls, 0)).view(len(self.list_of_parameters), -1, logits.shape[0] - 1)
                scores = per_fold.amax(1)
            self.case_presence[key] = self._decisions(scores)
            suppressed = self._suppressed(self.case_presence[key])
            if suppressed is not None and bool(suppressed.any()):
                logits[1:][suppressed] = torch.finfo(logits.dtype).min
        return logits

    # ------------------------------------------------------------------ feature-space path
    def predict_case_from_features(self, data: torch.Tensor, properties: dict, output_truncated: Optional[str],
                                   save_probabilities: bool = False) -> dict:
        """One preprocessed case through the feature-space window and the chunked export (see
        :func:`nnunet_causal.inference.chunked_export.export_case`)."""
        from nnunet_causal.inference.chunked_export import export_case
        from nnunet_causal.inference.feature_window import aggregate_case

        n_threads = torch.get_num_threads()
        agg = aggregate_case(self, data)
        key = output_truncated or f"case_{len(self.case_max_probabilities)}"
        records = self._decisions(agg.presence)
        binary = None
        if self.binary_mask_suffixes and output_truncated:
            binary = {v - 1: s for v, s in self.binary_mask_suffixes.items()}
        result = export_case(agg, properties, self.plans_manager, self.configuration_manager, self.dataset_json,
                             output_truncated, suppressed=self._suppressed(records),
                             save_probabilities=save_probabilities, binary_masks=binary, mode=self.resample_mode,
                             chunk=self.prompt_chunk_size)
        torch.set_num_threads(n_threads)
        self.case_max_probabilities[key] = [round(float(torch.sigmoid(torch.tensor(p))), 6) for p in result["peaks"]]
        self.case_presence[key] = records
        self.case_binary[key] = {i + 1: v for i, v in result["binary"].items()}
        self.case_resample_mode[key] = result["mode"]
        return result

    def predict_from_data_iterator(self, data_iterator, save_probabilities: bool = False,
                                   num_processes_segmentation_export: int = 3):
        if not self.uses_feature_window():
            return super().predict_from_data_iterator(data_iterator, save_probabilities,
                                                      num_processes_segmentation_export)
        from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian
        from nnunetv2.utilities.helpers import empty_cache

        out = []
        for item in data_iterator:
            data = item["data"]
            if isinstance(data, str):
                path, data = data, torch.from_numpy(np.load(data))
                os.remove(path)
            result = self.predict_case_from_features(data, item["data_properties"], item["ofile"], save_probabilities)
            if item["ofile"] is None:
                seg = result["segmentation"]
                out.append((seg, result["probabilities"]) if save_probabilities else seg)
            else:
                out.append(None)
        if isinstance(data_iterator, MultiThreadedAugmenter):
            data_iterator._finish()
        compute_gaussian.cache_clear()
        empty_cache(self.device)
        return out


def assignments_as_dicts(assignments: Sequence[PromptAssignment]) -> List[dict]:
    return [asdict(a) for a in assignments]
