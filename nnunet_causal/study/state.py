"""The study's bookkeeping: ``study.log`` (time-stamped progress) and ``study_state.json`` (folds, per-run status).

Only the process that runs the study (the driver) writes ``study_state.json``; workers on other machines append
their progress lines to ``study.log`` and their command output to ``runs/<run id>/commands.log``.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Optional

from nnunet_causal.files import write_json_atomic
from nnunet_causal.study.config import StudyError

logger = logging.getLogger("nnunet_causal.study")


class StudyLog:
    """Study progress: to the ``nnunet_causal.study`` logger and, with a time stamp, to ``study.log``."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def info(self, msg: str, *args) -> None:
        text = msg % args if args else msg
        logger.info(text)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{datetime.now().isoformat(timespec='seconds')} {text}\n")


class StudyState:
    """``study_state.json``: fold map and per-run status/history, rewritten atomically on every change."""

    def __init__(self, path: Path, data: Optional[dict] = None):
        self.path = path
        self.data = data or {"runs": {}}

    @classmethod
    def load(cls, path: Path) -> "StudyState":
        if not path.is_file():
            return cls(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise StudyError(f"{path} is corrupt ({e}); move it away to start the bookkeeping afresh "
                             f"(finished runs are still found from their files)") from e
        data.setdefault("runs", {})
        return cls(path, data)

    def save(self) -> None:
        self.data["updated"] = datetime.now().isoformat(timespec="seconds")
        write_json_atomic(self.path, self.data)

    def run(self, run_id: str) -> dict:
        return self.data["runs"].setdefault(run_id, {"history": []})

    def record(self, run_id: str, actions, seconds: float, **extra) -> None:
        """Append one attempt (its actions, duration and e.g. backend / job id) to the run's history."""
        entry = self.run(run_id)
        entry.update(actions=list(actions), seconds=round(seconds, 1))
        entry["history"].append({"time": datetime.now().isoformat(timespec="seconds"), "actions": list(actions),
                                 "seconds": round(seconds, 1), **extra})
