"""Interactive editing of one case with cached encoder features (Test-Time Causal Intervention, seed 000).

    session = InterventionSession(model_folder, fold=0)      # loads the frozen model and its FiLM weights
    session.load_case(["case_0000.png"])                      # nnU-Net preprocessing
    seg = session.predict()                                   # full sliding window; caches encoder features
    edit = session.apply_command("make the lesion a bit bigger")   # decoder-only re-run
    session.undo(); session.history; session.export("out/")

How edits compose. The unedited logits ``l`` are nnU-Net's own sliding-window logits (the base prediction is
bit-identical to ``nnUNetv2_predict`` with the same settings). An action on structure ``k`` re-runs the
decoder on the cached features under the FiLM modulation of (k, action, strength) and keeps the change of
channel ``k`` only: ``delta_k = g * (l'_k - l_k)`` (``g`` the spatial gate of a location, else 1). The edited
logits are ``l + sum of the deltas of every applied action``; ``undo`` drops the last command's deltas. So
other structures keep their logits exactly (``keep_others="exact"``, the default; they can still lose voxels
to the target in the label map's argmax); ``keep_others="learned"`` keeps the modulated logits of every
channel instead, which shows what the generator's keep-loss learned. Location words gate an action to half
of the array (:func:`~nnunet_causal.intervention.modulation.corrections.location_region`); ``remove`` with a
location removes the connected components of the target whose centre lies there.

Mirroring and cost. The base prediction uses nnU-Net's test-time mirroring (``use_mirroring``). An edit
replays every mirrored pass by default (``edit_mirroring=True``: nnU-Net's TTA for the edit too, so the
target's edited logits are the mirror-averaged modulated prediction itself, ``delta = l'_k - l_k`` with both
terms TTA logits); ``edit_mirroring=False`` estimates the change on the unmirrored tiles only, against an
unmirrored base computed once per case on the first edit (cheaper, less accurate: run R5 of ``benchmarks/RESULTS_intervention_cpu.md``).
The replay resumes the decoder at the generator's first modulated stage from its output cached in the base
prediction and aggregates all tiles and mirrors in batches
(:class:`~nnunet_causal.intervention.modulation.tail_window.TailWindow`); the FiLM generator runs once per
(target, action). ``replay="nnunet"`` replays the whole decoder through nnU-Net's own sliding-window loop
instead (same result within float tolerance, tested; ``ignore_confounder``'s bottleneck do() always does).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from nnunet_causal.errors import DatasetError, ModelError, PromptError
from nnunet_causal.intervention.modulation.cached_network import CachingNetwork
from nnunet_causal.intervention.modulation.confounder_do import (bottleneck_without, invert_image, inverse_steps,
                                                                 match_confounder)
from nnunet_causal.intervention.modulation.corrections import location_gate
from nnunet_causal.intervention.modulation.film import (FILM_ACTIONS, STRENGTH_VALUES, condition_vectors, film_hooks,
                                                        target_queries)
from nnunet_causal.inference.model_folder import ModelFolder, parse_fold
from nnunet_causal.intervention.modulation.frozen_model import load_frozen_predictor
from nnunet_causal.intervention.modulation.tail_window import TailWindow
from nnunet_causal.intervention.modulation.weights import load_tci
from nnunet_causal.networks.text_plans import foreground_label_names, get_text_settings

logger = logging.getLogger(__name__)
ACTIONS = (*FILM_ACTIONS, "ignore_confounder")


@dataclass
class Edit:
    """One applied command: its text, the parser's output, one record per action and the logit changes."""
    command: Optional[str]
    parsed: dict
    actions: List[dict]
    deltas: List[tuple] = field(default_factory=list, repr=False)  # (channel indices, (n, *spatial) tensor)
    voxels_changed: Dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    encoder_calls: int = 0

    def as_dict(self) -> dict:
        return {"command": self.command, "parsed": self.parsed, "actions": self.actions,
                "voxels_changed": self.voxels_changed, "seconds": round(self.seconds, 4),
                "encoder_calls": self.encoder_calls}


class InterventionSession:
    """See the module docstring. ``require_tci=False`` allows sessions that only ignore confounders;
    ``tci_weights`` reads the generator from that file instead of ``fold_X/tci_weights.pth``."""

    def __init__(self, model_folder, fold="0", checkpoint: str = "checkpoint_final.pth", device: str = "cpu",
                 use_mirroring: bool = True, step_size: float = 0.5, require_tci: bool = True,
                 keep_others: str = "exact", edit_mirroring: bool = True, replay: str = "tail",
                 tci_weights: Optional[str] = None, tail_batch: int = 16):
        if keep_others not in ("exact", "learned"):
            raise ValueError(f"keep_others must be 'exact' or 'learned', got '{keep_others}'")
        if replay not in ("tail", "nnunet"):
            raise ValueError(f"replay must be 'tail' or 'nnunet', got '{replay}'")
        self.model_folder, self.fold = Path(model_folder), parse_fold(fold)
        self.folder = ModelFolder(self.model_folder)
        self.device = torch.device(device)
        self.predictor = load_frozen_predictor(self.model_folder, self.fold, checkpoint, self.device,
                                               use_mirroring, step_size)
        self.network = self.predictor.network
        self.cached = CachingNetwork(self.network)
        #: the session's own view of the predictor for its sliding windows: the caching network and the
        #: session's mirroring (the loaded predictor itself is never changed)
        self.window_predictor = copy.copy(self.predictor)
        self.window_predictor.network = self.cached
        self.keep_others = keep_others
        self.edit_mirroring, self.replay = edit_mirroring, replay
        self.settings = get_text_settings(self.predictor.plans_manager.plans, "the model's plans.json")
        self.structures = foreground_label_names(self.predictor.dataset_json)
        self.offset = int(self.network.add_background)
        self.generator, self.tci_settings = (load_tci(self.model_folder, self.fold, self.device, tci_weights)
                                             if require_tci else (None, {}))
        #: tile x mirror calls per decoder-tail batch (a batch rounds differently from single calls: ~1 ulp)
        self.tail_batch = tail_batch
        #: the decoder stage an edit resumes at (the generator's first modulated one); its output is cached
        self.cached.record_stage = self.generator.stages[0] if self.generator is not None else None
        self._window: Optional[TailWindow] = None
        self._vocabulary = None
        self.history: List[Edit] = []     # undo stack: applied edits, oldest first
        self.log: List[dict] = []         # every command, refused and undone ones included
        self.case: Optional[str] = None
        self.base_logits: Optional[torch.Tensor] = None
        self.timings: Dict[str, float] = {}

    # ------------------------------------------------------------------ vocabulary and confounders
    @property
    def vocabulary(self):
        if self._vocabulary is None:
            self._vocabulary = self.folder.vocabulary()
        return self._vocabulary

    @property
    def has_bottleneck(self) -> bool:
        return self.network.bottleneck is not None and "causal" in self.settings

    def confounder_descriptions(self) -> List[str]:
        """The bottleneck's dictionary (causal models) or the dataset's confounder dictionary."""
        if self.has_bottleneck:
            return list(self.settings["causal"]["confounders"])
        return [e.description for e in self.folder.confounder_entries()]

    def structure_indices(self, targets: Sequence[str]) -> List[int]:
        """Indices of the trained structures a parsed target list names (PromptError listing them if unknown)."""
        out = []
        for t in targets:
            name = t if t in self.structures else self.vocabulary.label_for_term(t)
            if name not in self.structures:
                raise PromptError(f"'{t}' is not a structure this model segments (it knows: "
                                  f"{', '.join(self.structures)})")
            out.append(self.structures.index(name))
        return list(dict.fromkeys(out))

    # ------------------------------------------------------------------ case and base prediction
    def load_case(self, files: Sequence[str], case: Optional[str] = None,
                  style_description: Optional[str] = None) -> None:
        """Preprocess one case (its channel files) as nnU-Net does; clears the cache and the edit history."""
        p = self.predictor
        missing = [f for f in files if not Path(f).is_file()]
        if not files or missing:
            raise DatasetError(f"case file(s) {', '.join(missing) or '(none given)'} do not exist")
        p.check_input_channels([list(files)])
        pre = p.configuration_manager.preprocessor_class(verbose=False)
        t0 = time.perf_counter()
        data, _, props = pre.run_case(list(files), None, p.plans_manager, p.configuration_manager, p.dataset_json)
        self.timings = {"preprocess_seconds": time.perf_counter() - t0}
        self.data = torch.from_numpy(np.ascontiguousarray(data)).float()
        self.properties = props
        self.case = case or self.folder.case_name(files[0])
        self.style_description = style_description or self.folder.style(self.case)
        self.cached.start_record()
        self.base_logits, self.history, self.log = None, [], []
        self._replay_base, self._tail_base, self._seg, self._window = None, None, None, None

    def _sliding_window(self) -> torch.Tensor:
        return self.window_predictor.predict_sliding_window_return_logits(self.data).to("cpu")

    def predict(self) -> np.ndarray:
        """Full prediction (encoder, bottleneck, decoder); caches the features; returns the label map."""
        if self.case is None:
            raise DatasetError("no case loaded: call load_case(files) first")
        t0 = time.perf_counter()
        self.cached.start_record()
        self.base_logits = self._sliding_window()
        self.timings["predict_seconds"] = time.perf_counter() - t0
        self.history, self._replay_base, self._tail_base, self._window = [], None, None, None
        self._seg = self._base_seg = self.segmentation()
        return self._seg

    def _mirror_count(self) -> int:
        p = self.predictor
        if not p.use_mirroring or not p.allowed_mirroring_axes:
            return 1
        return 2 ** len(p.allowed_mirroring_axes)

    def _replay(self, params=None, override=None, stages=None) -> torch.Tensor:
        """Decoder-only sliding window through nnU-Net's loop on the cached features (unmirrored tiles unless
        ``edit_mirroring``); ``params`` are FiLM pairs of ``stages`` (``None``: every stage)."""
        view = self.window_predictor
        stride = 1 if self.edit_mirroring else self._mirror_count()
        self.cached.start_replay(stride)
        self.cached.bottleneck_override = override
        mirroring = self.predictor.use_mirroring
        view.use_mirroring = mirroring and stride == 1
        try:
            if params is None:
                return self._sliding_window()
            with film_hooks(self.network, params, stages):
                return self._sliding_window()
        finally:
            self.cached.bottleneck_override = None
            view.use_mirroring = mirroring

    def replay_base(self) -> torch.Tensor:
        """The unedited logits as the replays compute them (the base itself when edits mirror too)."""
        if self.edit_mirroring or self._mirror_count() == 1:
            return self.base_logits
        if self._replay_base is None:
            self._replay_base = self._replay()
        return self._replay_base

    def _tail(self, channels: List[int], params=None) -> torch.Tensor:
        """Aggregated logits of ``channels`` from the decoder resumed at the cached stage (the generator's first)."""
        start = self.cached.record_stage
        if start is None or start > self.generator.stages[0]:
            raise ModelError(f"the generator modulates decoder stage {self.generator.stages[0]} but the prediction "
                             f"cached stage {start}: call predict() again after changing the generator")
        if self._window is None:
            self._window = TailWindow(self.predictor, self.data, self.cached, start, self.tail_batch)
        return self._window.logits(self.network, channels, params, self.generator.stages,
                                   mirrored=self.edit_mirroring).float()

    def _modulated(self, channels: List[int], params) -> torch.Tensor:
        if self.replay == "nnunet":
            return self._replay(params, stages=self.generator.stages).float()[channels]
        return self._tail(channels, params)

    def _reference(self, channels: List[int]) -> torch.Tensor:
        """The unmodulated counterpart of :meth:`_modulated` (the base itself when edits mirror)."""
        if self.replay == "nnunet" or self.edit_mirroring or self._mirror_count() == 1:
            return self.replay_base()[channels].float()
        if self._tail_base is None:
            self._tail_base = self._tail(list(range(self.base_logits.shape[0])))
        return self._tail_base[channels]

    def current_logits(self) -> torch.Tensor:
        """Base logits plus every applied delta (C, *spatial) on the CPU."""
        if self.base_logits is None:
            raise DatasetError("nothing predicted yet: call predict() first")
        if not self.history:
            return self.base_logits
        out = self.base_logits.float().clone()
        for edit in self.history:
            for channels, delta in edit.deltas:
                out[channels] += delta
        return out

    def segmentation(self, logits: Optional[torch.Tensor] = None) -> np.ndarray:
        """Label map in the original image geometry (nnU-Net's conversion and resampling)."""
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
        p = self.predictor
        logits = self.current_logits() if logits is None else logits
        return convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, p.plans_manager, p.configuration_manager, p.label_manager, self.properties)

    def structure_masks(self, seg: np.ndarray) -> Dict[str, np.ndarray]:
        lm = self.predictor.label_manager
        out = {}
        for name in self.structures:
            v = lm.label_dict[name]
            out[name] = np.isin(seg, list(v) if isinstance(v, (list, tuple)) else [v])
        return out

    # ------------------------------------------------------------------ edits
    def apply_command(self, command: str) -> Edit:
        """Parse ``command`` (offline parser of :mod:`nnunet_causal.intervention.commands`) and apply it."""
        from nnunet_causal.intervention.commands import parse_command
        confounders = self.confounder_descriptions() if self.has_bottleneck else self.folder.confounders()
        parsed = parse_command(command, self.vocabulary, confounders=confounders,
                               style_description=self.style_description)
        return self.apply(parsed, command=command)

    def apply(self, actions: Union[dict, Sequence[dict]], command: Optional[str] = None) -> Edit:
        """Apply parsed actions (a parser result or a list of action dicts) as one undoable edit."""
        parsed = actions if isinstance(actions, dict) else {"command": command, "actions": list(actions),
                                                             "refused": None}
        command = command if command is not None else parsed.get("command")
        if self.base_logits is None:
            self.predict()
        before = self._seg if self._seg is not None else self.segmentation()
        calls = self.cached.encoder_calls
        t0 = time.perf_counter()
        edit = Edit(command, parsed, [])
        for action in parsed.get("actions") or []:
            record, deltas = self._apply_action(action)
            edit.actions.append(record)
            edit.deltas.extend(deltas)
        if edit.deltas:
            self.history.append(edit)
        after = self._seg = self.segmentation()
        edit.seconds = time.perf_counter() - t0
        edit.encoder_calls = self.cached.encoder_calls - calls
        mb, ma = self.structure_masks(before), self.structure_masks(after)
        edit.voxels_changed = {n: int((mb[n] != ma[n]).sum()) for n in self.structures}
        self.log.append({**edit.as_dict(), "refused": parsed.get("refused"), "undone": False})
        return edit

    def undo(self) -> Optional[Edit]:
        """Drop the last applied edit (None if there is none)."""
        if not self.history:
            return None
        edit = self.history.pop()
        self._seg = None if self.history else self._base_seg
        for entry in reversed(self.log):
            if entry["command"] == edit.command and not entry["undone"] and entry["actions"] == edit.actions:
                entry["undone"] = True
                break
        return edit

    def redo(self, edit: Edit) -> None:
        """Apply again an edit that :meth:`undo` returned (its deltas are kept; no re-run)."""
        self.history.append(edit)
        self._seg = self.segmentation()
        for entry in reversed(self.log):
            if entry["command"] == edit.command and entry["undone"] and entry["actions"] == edit.actions:
                entry["undone"] = False
                break

    def current_segmentation(self) -> np.ndarray:
        """The label map with every applied edit (cached between edits)."""
        if self._seg is None:
            self._seg = self.segmentation()
        return self._seg

    def _apply_action(self, action: dict):
        kind = action.get("action")
        if kind not in ACTIONS:
            raise PromptError(f"unknown action '{kind}' (known: {', '.join(ACTIONS)})")
        strength = action.get("strength") or "moderate"
        if strength not in STRENGTH_VALUES:
            raise PromptError(f"unknown strength '{strength}' (known: {', '.join(STRENGTH_VALUES)})")
        targets = list(action.get("target") or [])
        record = {"action": kind, "target": targets, "strength": strength, "location": action.get("location"),
                  "confounder": action.get("confounder"), "why": action.get("why")}
        if kind == "ignore_confounder":
            return self._ignore_confounder(action, targets, record)
        if not targets:
            raise PromptError(f"action '{kind}' names no structure (the model knows: {', '.join(self.structures)})")
        if self.generator is None:
            raise ModelError(f"this session was opened without intervention weights; run nnunet_causal train-tci "
                             f"-m {self.model_folder} -f {self.fold}")
        indices = self.structure_indices(targets)
        record["structures"] = [self.structures[i] for i in indices]
        current = self.current_logits() if action.get("location") else None
        deltas = []
        q = target_queries(self.network).detach()
        for k in indices:
            with torch.no_grad():
                cond = condition_vectors(q, torch.tensor([k], device=q.device),
                                         torch.tensor([FILM_ACTIONS.index(kind)], device=q.device),
                                         torch.tensor([STRENGTH_VALUES[strength]], device=q.device))
                params = self.generator(cond)  # once per (target, action), broadcast over tiles and mirrors
            ch = k + self.offset
            gate = None if current is None else location_gate(kind, action.get("location"), current[ch], record)
            channels = [ch] if self.keep_others == "exact" else list(range(self.base_logits.shape[0]))
            delta = self._modulated(channels, params) - self._reference(channels)
            deltas.append((channels, delta if gate is None else delta * gate))
        return record, deltas

    def _ignore_confounder(self, action: dict, targets: List[str], record: dict):
        descriptions = self.confounder_descriptions()
        idx = match_confounder(action.get("confounder") or "", descriptions)
        record["confounder_entry"] = descriptions[idx]
        channels = ([i + self.offset for i in self.structure_indices(targets)] if targets
                    else list(range(self.base_logits.shape[0])))
        if self.has_bottleneck:
            record["method"] = "bottleneck do(): entry removed from the confounder attention"
            logits = self._replay(override=bottleneck_without(self.network, [idx])).float()
            reference = self.replay_base()
        else:
            from nnunet_causal.confounders.frames import IntensityFrame
            entry = self.folder.confounder_entries()[idx]
            steps = inverse_steps(entry)
            record["method"] = "image inverse of " + " then ".join(steps) + " (encoder re-run)"
            p = self.predictor
            config = [c for c, v in p.plans_manager.plans["configurations"].items()
                      if v.get("data_identifier") == p.configuration_manager.data_identifier][0]
            frame = IntensityFrame.from_plans(p.plans_manager.plans, config)
            saved_data, saved_cache = self.data, self.cached
            self.data = invert_image(self.data, steps, frame, len(p.configuration_manager.patch_size) == 2)
            self.cached = self.window_predictor.network = CachingNetwork(self.network)
            try:
                logits = self._sliding_window().float()
            finally:
                saved_cache.encoder_calls += self.cached.encoder_calls
                self.data, self.cached = saved_data, saved_cache
                self.window_predictor.network = saved_cache
            reference = self.base_logits
        return record, [(channels, logits[channels] - reference[channels].float())]
