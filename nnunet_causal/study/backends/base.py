"""The one interface every backend implements: submit runs, poll them, collect their outcomes.

A backend only moves :class:`~nnunet_causal.study.runs.RunJob` objects to workers and brings back the
:class:`~nnunet_causal.study.runs.RunOutcome` of :func:`~nnunet_causal.study.runs.execute_job`; everything a
run does (the stock commands, the evaluation) and every decision about what is left to do is in
:mod:`nnunet_causal.study.runs`, read from the shared study folder. A failed run is an outcome; an exception
from :meth:`Backend.collect` is :class:`WorkerLost` (the process or node running it died, was killed or was
pre-empted), which the dispatcher answers by resubmitting the run (it then resumes from its files).
"""
from __future__ import annotations

import abc
import importlib
from pathlib import Path
from typing import Any, List, Optional, Sequence

from nnunet_causal.study.config import BackendOptions, StudyError
from nnunet_causal.study.runs import RunJob, RunOutcome

CLUSTER_EXTRA = 'pip install "nnunet_causal[cluster]"'


def cluster_library(module: str, backend: str):
    """``import module`` for a cluster backend, or a StudyError that names the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise StudyError(f"backend '{backend}' needs the {module} package, which is not installed: {CLUSTER_EXTRA} "
                         f"(or pip install {module})") from e


class WorkerLost(RuntimeError):
    """The worker of a run vanished without an outcome; ``log`` is where the backend kept its output."""

    def __init__(self, message: str, log: Optional[str] = None):
        super().__init__(message)
        self.log = log


class Backend(abc.ABC):
    """Runs :class:`RunJob` objects somewhere. Handles are opaque to the caller."""

    name = "abstract"

    def __init__(self, options: BackendOptions, output: Path):
        self.options = options
        self.output = Path(output)
        self.max_retries = int(options.get("max_retries", 2))
        self.poll_seconds = float(options.get("poll_seconds", 10.0))

    @property
    def num_gpus(self) -> int:
        """GPUs given to one run (``nnUNetv2_train -num_gpus`` when above 1); 0 for none requested."""
        return 0

    @abc.abstractmethod
    def describe(self, jobs: Sequence[RunJob]) -> List[str]:
        """Lines saying where and how ``jobs`` would be submitted (``--dry-run``); starts nothing."""

    @abc.abstractmethod
    def submit(self, jobs: Sequence[RunJob]) -> List[Any]:
        """Hand ``jobs`` to the scheduler (as one array where it has them); one handle per job, same order."""

    @abc.abstractmethod
    def poll(self, handle: Any) -> bool:
        """True once the job of ``handle`` has ended (successfully or not)."""

    @abc.abstractmethod
    def collect(self, handle: Any) -> RunOutcome:
        """The outcome of an ended job. Raises :class:`WorkerLost` when the worker died without one."""

    def started(self, handle: Any) -> bool:
        """Whether the job of ``handle`` has begun (a backend that cannot tell says True: an interrupted
        study then marks it ``interrupted``, and the next invocation finds out from its files)."""
        return True

    def job_id(self, handle: Any) -> str:
        """The scheduler's name for the job (shown in study_state.json and the log)."""
        return ""

    def cancel(self, handles: Sequence[Any]) -> None:
        """Stop jobs still queued or running (the study was interrupted)."""

    def close(self) -> None:
        """Release what the backend started (e.g. a local Ray cluster)."""
