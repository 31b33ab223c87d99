"""nnU-Net's predictor, segmenting whatever the user names.

:class:`nnUNetTextPredictor` is ``nnUNetPredictor`` plus :meth:`set_prompts`. Each prompt is grounded
(:mod:`nnunet_causal.text.resolver`, seed 003): a prompt whose resolved terms are trained structures reuses
their stored embeddings (a merged category such as "kidneys" becomes the voxel-wise union -- maximum of
logits -- of its members); a prompt that names something the model was not trained on, or that the
knowledge base does not know but ``open_vocabulary`` allows, is embedded by the model's own text encoder
and goes through the MLP connector (OpenVocabCT's open-vocabulary path). The backbone and decoder run once
per patch whatever the number of prompts; each prompt adds one dot product per voxel.

Output label map: value ``i`` (1-based) is prompt ``i``; a voxel takes the prompt with the largest logit
among those with sigmoid > 0.5, else background.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

from nnunet_causal.errors import DatasetError, PromptError, ResolutionError
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

    def initialize_from_trained_model_folder(self, model_training_output_dir, use_folds,
                                             checkpoint_name="checkpoint_final.pth"):
        with caller_sets_prompts():  # prompts come from set_prompts, not from nnUNet_causal_prompt_file
            super().initialize_from_trained_model_folder(model_training_output_dir, use_folds, checkpoint_name)

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

    def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
        logits = super().predict_logits_from_preprocessed_data(data)
        if self.assignments:
            # cases are predicted in input order; record max sigmoid per prompt for the sidecar
            key = self._pending_outputs.pop(0) if self._pending_outputs else f"case_{len(self.case_max_probabilities)}"
            peak = torch.sigmoid(logits[1:].reshape(logits.shape[0] - 1, -1).float().amax(1))
            self.case_max_probabilities[key] = [round(float(p), 6) for p in peak]
        return logits


def assignments_as_dicts(assignments: Sequence[PromptAssignment]) -> List[dict]:
    return [asdict(a) for a in assignments]
