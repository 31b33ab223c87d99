"""The model the viewer serves: its folder checked once, a prompt predictor loaded on first use, and new
intervention sessions on demand.

Two predictors, on purpose: :meth:`nnUNetTextPredictor.set_prompts` reconfigures its network's outputs and
label manager for the typed prompts, while an :class:`InterventionSession` needs the trained-structure outputs
(its edits are deltas on those channels). Sharing one would make every prompt break the open session.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import List, Optional

import torch

from nnunet_causal.errors import ModelError
from nnunet_causal.inference.model_folder import ModelFolder, parse_fold
from nnunet_causal.intervention.modulation.weights import WEIGHTS_NAME


class ModelContext:
    """``model_folder`` / ``fold`` / ``checkpoint`` as ``nnUNetv2_predict_text -m ... -f ... -chk ...``."""

    def __init__(self, model_folder, fold: str = "0", checkpoint: str = "checkpoint_final.pth",
                 device: str = "cpu", use_mirroring: bool = True):
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        self.folder = Path(model_folder).resolve()
        self.fold = parse_fold(fold)
        self.checkpoint, self.use_mirroring = checkpoint, use_mirroring
        try:
            self.device = torch.device(device)
        except RuntimeError as e:
            raise ModelError(f"unknown device '{device}' (cpu, cuda, mps)") from e
        self.model = ModelFolder(self.folder)
        self.model.check([self.fold], checkpoint)
        self.dataset_json, self.plans = self.model.dataset_json, self.model.plans
        self.settings = self.model.require_text_settings()
        self.reader_writer_class = PlansManager(self.plans).image_reader_writer_class
        self.file_ending = self.model.file_ending
        self.n_channels = len(self.dataset_json["channel_names"])
        self.structures: List[str] = self.model.structures
        self.has_tci = (self.model.fold_folder(self.fold) / WEIGHTS_NAME).is_file()
        self._predictor = None
        self._lock = threading.Lock()

    def prompt_predictor(self):
        """The :class:`~nnunet_causal.inference.text_predictor.nnUNetTextPredictor` of this fold (loaded once)."""
        from nnunet_causal.inference.text_predictor import PredictionOptions, nnUNetTextPredictor

        with self._lock:
            if self._predictor is None:
                # nnU-Net's logit path: its sliding window reports the tiles the progress bar counts
                p = nnUNetTextPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=self.use_mirroring,
                                        perform_everything_on_device=self.device.type == "cuda",
                                        device=self.device, verbose=False, verbose_preprocessing=False,
                                        allow_tqdm=False, options=PredictionOptions(feature_window=False))
                p.initialize_from_trained_model_folder(str(self.folder), (self.fold,), self.checkpoint)
                self._predictor = p
            return self._predictor

    def new_session(self):
        """An :class:`InterventionSession` (FiLM actions only when the fold has ``tci_weights.pth``; without
        them ``ignore_confounder`` still works and other actions say how to train the weights)."""
        from nnunet_causal.intervention.modulation.session import InterventionSession

        return InterventionSession(self.folder, self.fold, self.checkpoint, str(self.device),
                                   use_mirroring=self.use_mirroring, require_tci=self.has_tci)

    def info(self) -> dict:
        return {"model": self.folder.name, "fold": self.fold, "structures": self.structures,
                "confounders": list((self.settings.get("causal") or {}).get("confounders") or []),
                "intervention_weights": self.has_tci, "file_ending": self.file_ending,
                "channels": list(self.dataset_json["channel_names"].values())}

    def default_images_folder(self) -> Optional[Path]:
        """``$nnUNet_raw/<dataset>/imagesTs`` of the model's dataset, when it exists."""
        import os

        raw = os.environ.get("nnUNet_raw")
        name = self.plans.get("dataset_name")
        if raw and name and (Path(raw) / name / "imagesTs").is_dir():
            return Path(raw) / name / "imagesTs"
        return None
