"""One case open in the viewer: prompt prediction, test-time intervention, undo / redo, save.

Prompts run exactly as ``nnUNetv2_predict_text`` predicts one case (same predictor, grounding, sliding window
and export): label value ``i`` is prompt ``i`` and each prompt keeps its resolution record. Commands go to an
:class:`~nnunet_causal.intervention.modulation.session.InterventionSession` (seed 000), whose edits are
changes of the *trained structures'* logits. How an edit reaches the prompts' label map (our choice; the seed
has no prompts): a prompt grounded on trained structures takes over the change of the union of its structures
-- voxels the edit adds to that union get the prompt's label, voxels it removes lose it -- and every other
voxel keeps the prompt prediction's label, so undoing all edits gives back the prediction bit for bit.
Open-vocabulary prompts are not editable (no trained channel carries them); the layer list says so. Typing
new prompts keeps the applied edits (they are re-applied to the new prompts' map).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from nnunet_causal.data.raw_dataset import atomic_path, write_json_atomic
from nnunet_causal.errors import DatasetError, PromptError
from nnunet_causal.viewer.cases import CaseFiles, CaseImage

MAX_PROMPTS = 32
MAX_PROMPT_CHARS = 200
Report = Callable[[float, str], None]


def _tiles(report: Report, lo: float, hi: float, what: str):
    def on_tile(done: int, total: int, passes: int) -> None:
        frac = done / total if total else 0.0
        report(lo + (hi - lo) * frac, f"{what}: pass {passes}, tile {done} of {total}")
    return on_tile


class CaseState:
    """The state of ``files`` under ``model`` (a :class:`~nnunet_causal.viewer.model_context.ModelContext`).

    ``seg`` is the label map on show ``(Z, Y, X)``; ``version`` grows whenever it changes (the page asks for
    slices of a version, so a stale picture is never mixed with a new one)."""

    def __init__(self, model, files: CaseFiles):
        self.model, self.files, self.case = model, files, files.case
        self.image = CaseImage.read(files.files, model.reader_writer_class)
        self.assignments: list = []
        self.max_probability: List[float] = []
        self.prompt_seg: Optional[np.ndarray] = None
        self.seg: Optional[np.ndarray] = None
        self.session = None
        self._session_base = None     # trained-structure masks of the session's unedited prediction
        self.redo_stack: list = []
        self.version = 0

    # ------------------------------------------------------------------ prompts
    def predict_prompts(self, prompts: Sequence[str], open_vocabulary: bool, report: Report) -> dict:
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        from nnunet_causal.text.prompt_file import parse_prompts
        from nnunet_causal.viewer.jobs import tile_progress

        prompts = [p.strip() for p in prompts if p and p.strip()]
        if not prompts:
            raise PromptError("type at least one prompt (one structure per line; 'a|b' for synonyms)")
        if len(prompts) > MAX_PROMPTS or any(len(p) > MAX_PROMPT_CHARS for p in prompts):
            raise PromptError(f"at most {MAX_PROMPTS} prompts of at most {MAX_PROMPT_CHARS} characters each")
        specs = parse_prompts(prompts, source="prompt box")
        report(0.02, "loading the model")
        p = self.model.prompt_predictor()
        assignments = p.set_prompts(specs, open_vocabulary=open_vocabulary)
        report(0.08, "preprocessing (nnU-Net)")
        p.check_input_channels([list(self.files.files)])
        pre = p.configuration_manager.preprocessor_class(verbose=False)
        data, _, props = pre.run_case(list(self.files.files), None, p.plans_manager, p.configuration_manager,
                                      p.dataset_json)
        p._pending_outputs = [self.case]
        with tile_progress(p, _tiles(report, 0.1, 0.9, "predicting")):
            logits = p.predict_logits_from_preprocessed_data(torch.from_numpy(np.ascontiguousarray(data)).float())
        peaks = p.case_max_probabilities.pop(self.case)
        report(0.92, "resampling to the image geometry")
        seg = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, p.plans_manager, p.configuration_manager, p.label_manager, props)
        self.assignments, self.max_probability = list(assignments), list(peaks)
        self.prompt_seg = np.asarray(seg).reshape(self.image.shape)
        self._compose()
        return self.state()

    # ------------------------------------------------------------------ commands
    def _ensure_session(self, report: Report):
        from nnunet_causal.viewer.jobs import tile_progress

        if self.prompt_seg is None:   # a command before any prompt: show every trained structure
            self.predict_prompts(self.model.structures, False, lambda f, m: report(0.4 * f, m))
        if self.session is None:
            report(0.4, "loading the intervention model")
            s = self.model.new_session()
            s.load_case(list(self.files.files), case=self.case)
            with tile_progress(s.predictor, _tiles(report, 0.45, 0.7, "caching encoder features")):
                base = s.predict()
            self.session, self._session_base = s, s.structure_masks(base)
        return self.session

    def apply_command(self, command: str, report: Report) -> dict:
        from nnunet_causal.intervention.modulation.intervene_cli import _check_command
        from nnunet_causal.viewer.jobs import tile_progress

        _check_command(command)   # empty / too long; the text itself only ever reaches the offline parser
        s = self._ensure_session(report)
        report(0.72, "applying the command (decoder-only re-runs)")
        with tile_progress(s.predictor, _tiles(report, 0.72, 0.95, "editing")):
            edit = s.apply_command(command)
        if edit.deltas:
            self.redo_stack.clear()
        self._compose()
        return {**self.state(), "edit": s.log[-1]}

    def undo(self) -> dict:
        if self.session is None or not self.session.history:
            raise PromptError("nothing to undo")
        self.redo_stack.append(self.session.undo())
        self._compose()
        return self.state()

    def redo(self) -> dict:
        if not self.redo_stack:
            raise PromptError("nothing to redo")
        s, edit = self.session, self.redo_stack.pop()
        s.history.append(edit)
        s._seg = s.segmentation()
        for entry in reversed(s.log):
            if entry["command"] == edit.command and entry["undone"] and entry["actions"] == edit.actions:
                entry["undone"] = False
                break
        self._compose()
        return self.state()

    # ------------------------------------------------------------------ composition and state
    def _compose(self) -> None:
        seg = self.prompt_seg.copy()
        if self.session is not None and self.session.history:
            current = self.session.structure_masks(self.session._seg if self.session._seg is not None
                                                   else self.session.segmentation())
            for a in self.assignments:
                if a.source != "trained" or not a.trained_structures:
                    continue
                before = np.logical_or.reduce([self._session_base[n] for n in a.trained_structures])
                after = np.logical_or.reduce([current[n] for n in a.trained_structures])
                before, after = before.reshape(seg.shape), after.reshape(seg.shape)
                seg[before & ~after & (seg == a.label_value)] = 0
                seg[after & ~before] = a.label_value
        self.seg = seg
        self.version += 1

    def layers(self) -> List[dict]:
        out = []
        for a, peak in zip(self.assignments, self.max_probability):
            n = int((self.seg == a.label_value).sum())
            out.append({"value": a.label_value, "prompt": a.prompt, "terms": a.terms, "resolution": a.method,
                        "score": round(a.score, 4), "source": a.source, "trained_structures": a.trained_structures,
                        "corrected": a.corrected, "resolution_message": a.resolution_message,
                        "unknown_words": a.unknown_words, "max_probability": peak, "voxel_count": n,
                        "present": n > 0, "editable": a.source == "trained",
                        "voxels_changed_by_edits": int(((self.seg == a.label_value)
                                                        != (self.prompt_seg == a.label_value)).sum())})
        return out

    def state(self) -> dict:
        s = self.session
        return {"case": self.case, "version": self.version, "has_mask": self.seg is not None,
                "layers": self.layers() if self.seg is not None else [],
                "edit_log": list(s.log) if s else [], "applied": len(s.history) if s else 0,
                "can_undo": bool(s and s.history), "can_redo": bool(self.redo_stack),
                "image": {"shape": list(self.image.shape), "views": self.image.view_info(),
                          "is_2d": self.image.is_2d}}

    # ------------------------------------------------------------------ saving
    def output_paths(self, out_folder: Path) -> dict:
        out = Path(out_folder)
        return {"mask": out / f"{self.case}{self.model.file_ending}", "prompts": out / f"{self.case}.prompts.json",
                "edits": out / f"{self.case}.edits.json"}

    def save(self, out_folder: Path) -> dict:
        """The label map (the model's file format, the image's geometry), ``CASE.prompts.json`` (the sidecar of
        ``nnUNetv2_predict_text`` plus each prompt's voxels changed by edits) and ``CASE.edits.json`` (the edit
        log), each written atomically."""
        if self.seg is None:
            raise DatasetError(f"case {self.case}: nothing to save yet (type a prompt first)")
        paths = self.output_paths(out_folder)
        rw = self.model.reader_writer_class()
        with atomic_path(paths["mask"]) as tmp:
            rw.write_seg(self.seg.astype(np.uint8 if self.seg.max() < 256 else np.uint16), tmp,
                         self.image.properties)
        records = [{k: v for k, v in layer.items() if k not in ("present", "editable")} | {"present": layer["present"]}
                   for layer in self.layers()]
        write_json_atomic(paths["prompts"], {"case": self.case, "images": [os.path.basename(f) for f in self.files.files],
                                             "model": str(self.model.folder), "fold": self.model.fold,
                                             "prompts": records, "edited": bool(self.session and self.session.history)})
        s = self.session
        write_json_atomic(paths["edits"], {"case": self.case, "model": str(self.model.folder), "fold": self.model.fold,
                                           "tci_weights": (s.tci_settings or None) if s else None,
                                           "edits": list(s.log) if s else [], "applied": len(s.history) if s else 0})
        return {k: str(v) for k, v in paths.items()}
