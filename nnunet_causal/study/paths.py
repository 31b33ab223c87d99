"""Where a study keeps its files, and the unit of work: one :class:`Run` (a trainer on one held-out fold and seed).

Everything lives under the study's output folder, which every worker must see (a shared file system on a
cluster): per-seed ``nnUNet_results``, one ``runs/<run id>/`` folder per run (command log, evaluation),
``references/`` and ``inputs/`` (links to the raw files of each held-out domain) and the tables and figures.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from nnunet_causal.study.config import LOG_FILE, STATE_FILE, PredictionOptions, StudyError, TrainerSpec


def safe_name(text: str) -> str:
    """``text`` reduced to characters safe in file names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


def read_json(path: Path):
    """The JSON document in ``path``; StudyError naming the file when it cannot be read."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StudyError(f"cannot read {path}: {e}") from e


@dataclass(frozen=True)
class Run:
    """One training + evaluation: a trainer on the fold that holds out ``domain``, repeat ``seed``."""
    trainer: TrainerSpec
    domain: str
    fold: int
    seed: int
    cases: Tuple[str, ...]

    @property
    def run_id(self) -> str:
        return f"{safe_name(self.trainer.label)}__{safe_name(self.domain)}__seed{self.seed}"


class StudyPaths:
    """Where a study keeps its files (all under ``root``).

    ``prediction_tag`` (:func:`prediction_tag`) is empty for nnU-Net's validation predictions; otherwise it
    names the predictor settings, so that evaluating the same trained models with other settings (TTA,
    step size, prompts) gets its own predictions and evaluation instead of reusing stale ones.
    """

    def __init__(self, root: Path, dataset_name: str, configuration: str, plans: str, prediction_tag: str = ""):
        self.root = Path(root)
        self._dataset = dataset_name
        self._model_suffix = f"__{plans}__{configuration}"
        self.prediction_tag = prediction_tag

    def results(self, seed: int) -> Path:
        return self.root / f"seed_{seed}" / "nnUNet_results"

    def fold_dir(self, run: Run) -> Path:
        return (self.results(run.seed) / self._dataset / f"{run.trainer.name}{self._model_suffix}"
                / f"fold_{run.fold}")

    def run_dir(self, run: Run) -> Path:
        return self.root / "runs" / run.run_id

    def evaluation_prefix(self, run: Run) -> Path:
        return self.run_dir(run) / ("evaluation_" + self.prediction_tag if self.prediction_tag else "evaluation")

    def evaluation_json(self, run: Run) -> Path:
        return self.evaluation_prefix(run).with_suffix(".json")

    def log(self, run: Run) -> Path:
        return self.run_dir(run) / "commands.log"

    def predictions(self, run: Run) -> Path:
        if not self.prediction_tag:
            return self.fold_dir(run) / "validation"
        return self.run_dir(run) / f"predictions_{self.prediction_tag}"

    def references(self, domain: str) -> Path:
        return self.root / "references" / safe_name(domain)

    def inputs(self, domain: str) -> Path:
        return self.root / "inputs" / safe_name(domain)

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    @property
    def study_log(self) -> Path:
        return self.root / LOG_FILE

    @property
    def figures(self) -> Path:
        return self.root / "figures"


def prediction_tag(options: PredictionOptions, prompt_file: Optional[Path] = None) -> str:
    """``""`` for nnU-Net's validation predictions, else e.g. ``predict``, ``predict_notta_step0p25_prompts-1a2b3c4d``
    (the prompt part hashes the prompt file's content)."""
    if options.mode == "validation":
        return ""
    parts = ["predict"]
    if options.disable_tta:
        parts.append("notta")
    if options.step_size != 0.5:
        parts.append(f"step{options.step_size:g}".replace(".", "p"))  # no dots: file suffixes follow
    if prompt_file is not None:
        parts.append("prompts-" + hashlib.sha1(Path(prompt_file).read_bytes()).hexdigest()[:8])
    return "_".join(parts)
