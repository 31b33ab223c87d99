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

from nnunet_causal.errors import DatasetError, PromptError
from nnunet_causal.inference import case_outputs
from nnunet_causal.text.words import MAX_PROMPT_CHARS
from nnunet_causal.viewer.cases import CaseFiles, CaseImage

MAX_PROMPTS = 32          # prompts per request (the request model in app.py uses this constant too)
# characters per prompt: the grounding's own limit, one constant for every prompt input
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
        self.presence: Optional[List[dict]] = None   # one presence record per prompt (None: no presence head)
        self.prompt_seg: Optional[np.ndarray] = None
        self.seg: Optional[np.ndarray] = None
        self.session = None
        self._session_base = None     # trained-structure masks of the session's unedited prediction
        self.redo_stack: list = []
        self.version = 0

    # ------------------------------------------------------------------ prompts
    def predict_prompts(self, prompts: Sequence[str], open_vocabulary: bool, report: Report) -> dict:
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
        with tile_progress(p, _tiles(report, 0.1, 0.9, "predicting")):
            result = p.predict_case(torch.from_numpy(np.ascontiguousarray(data)).float(), props)
        report(0.95, "composing the label map")
        self.assignments, self.max_probability = list(assignments), list(result.max_probability)
        self.presence = result.presence
        self.prompt_seg = np.asarray(result.segmentation).reshape(self.image.shape)
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
            with tile_progress(s.window_predictor, _tiles(report, 0.45, 0.7, "caching encoder features")):
                base = s.predict()
            self.session, self._session_base = s, s.structure_masks(base)
        return self.session

    def apply_command(self, command: str, report: Report) -> dict:
        from nnunet_causal.intervention.modulation.intervene_cli import check_command
        from nnunet_causal.viewer.jobs import tile_progress

        check_command(command)   # empty / too long; the text itself only ever reaches the offline parser
        s = self._ensure_session(report)
        report(0.72, "applying the command (decoder-only re-runs)")
        with tile_progress(s.window_predictor, _tiles(report, 0.72, 0.95, "editing")):
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
        self.session.redo(self.redo_stack.pop())
        self._compose()
        return self.state()

    # ------------------------------------------------------------------ composition and state
    def _compose(self) -> None:
        seg = self.prompt_seg.copy()
        if self.session is not None and self.session.history:
            current = self.session.structure_masks(self.session.current_segmentation())
            done = set()
            for a in self.assignments:   # the first prompt of a structure holds its voxels (case_outputs)
                key = case_outputs.structure_key(a)
                if a.source != "trained" or not a.trained_structures or key in done:
                    continue
                done.add(key)
                before = np.logical_or.reduce([self._session_base[n] for n in a.trained_structures])
                after = np.logical_or.reduce([current[n] for n in a.trained_structures])
                before, after = before.reshape(seg.shape), after.reshape(seg.shape)
                holder = self._holder(a, key)
                seg[before & ~after & (seg == holder)] = 0
                seg[after & ~before] = holder
        self.seg = seg
        self.version += 1

    def _holder(self, assignment, key: str) -> int:
        """The label value holding the voxels of ``assignment``'s structure in the unedited map."""
        for a in self.assignments:
            if case_outputs.structure_key(a) == key and (self.prompt_seg == a.label_value).any():
                return a.label_value
        return assignment.label_value

    def records(self) -> List[dict]:
        """The case contract's prompt records of the label map on show (what :meth:`save` writes)."""
        return case_outputs.prompt_records(self.assignments, self.seg, self.max_probability, self.presence,
                                           base_label_map=self.prompt_seg)

    def layers(self) -> List[dict]:
        """One entry per prompt: its contract record plus ``value`` (its label value) and ``editable``."""
        return [{**r, "value": r["label_value"], "editable": r["source"] == "trained"} for r in self.records()]

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
        """The label map (the model's file format, the image's geometry), ``CASE.prompts.json`` and
        ``CASE.edits.json`` through :mod:`nnunet_causal.inference.case_outputs`."""
        from nnunet_causal.intervention.modulation.intervene_cli import edit_log

        if self.seg is None:
            raise DatasetError(f"case {self.case}: nothing to save yet (type a prompt first)")
        rw = self.model.reader_writer_class()
        s = self.session
        edits = edit_log(s) if s else {"model": str(self.model.folder), "fold": self.model.fold,
                                        "tci_weights": None, "edits": [], "applied": 0}
        edits["model"] = str(self.model.folder)
        paths = case_outputs.write_case(
            out_folder, self.case, self.model.file_ending, records=self.records(), label_map=self.seg,
            write_seg=lambda a, path: rw.write_seg(a, path, self.image.properties), edited=bool(s and s.history),
            info={"images": [os.path.basename(f) for f in self.files.files], "model": str(self.model.folder),
                  "fold": self.model.fold}, edits=edits)
        return paths
