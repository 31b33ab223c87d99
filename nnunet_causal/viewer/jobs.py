"""Long work off the request threads: one worker thread runs the viewer's jobs in order, each reporting progress.

One worker because predictions share one model (and, on the CPU, all cores): a second prompt typed while one
runs waits in the queue instead of slowing both. The queue is bounded (:data:`MAX_QUEUED` jobs waiting): a
further job is refused with :class:`QueueFull` (the app answers HTTP 429), so a flood of requests cannot pile
up unbounded work. Requests only enqueue and poll (``GET /api/jobs/ID``), so the page stays responsive. Progress of a prediction is counted in sliding-window tiles
(:func:`tile_progress`) -- the unit nnU-Net's own progress bar counts.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Optional

from nnunet_causal.errors import NnunetCausalError

logger = logging.getLogger(__name__)
KEEP_JOBS = 200
MAX_QUEUED = 16


class QueueFull(Exception):
    """The worker already has :data:`MAX_QUEUED` jobs waiting."""


class Job:
    """A queued piece of work: ``state`` is queued | running | done | error; ``progress`` in [0, 1]."""

    def __init__(self, job_id: str, kind: str, case: Optional[str]):
        self.id, self.kind, self.case = job_id, kind, case
        self.state, self.progress, self.message = "queued", 0.0, "waiting for the worker"
        self.result, self.error = None, None
        self.created, self.seconds = time.time(), None

    def report(self, progress: float, message: str) -> None:
        self.progress, self.message = max(0.0, min(1.0, float(progress))), message

    def as_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "case": self.case, "state": self.state,
                "progress": round(self.progress, 4), "message": self.message, "result": self.result,
                "error": self.error, "seconds": self.seconds}


class JobRunner:
    """Runs ``fn(job)`` on one worker thread; at most ``max_queued`` jobs wait; keeps the last :data:`KEEP_JOBS`
    jobs for polling."""

    def __init__(self, max_queued: int = MAX_QUEUED):
        self.max_queued = int(max_queued)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="viewer-worker")
        self._jobs: "OrderedDict[str, Job]" = OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def submit(self, kind: str, case: Optional[str], fn: Callable[[Job], object]) -> Job:
        """Queue ``fn``; :class:`QueueFull` when ``max_queued`` jobs are already waiting."""
        with self._lock:
            waiting = sum(1 for j in self._jobs.values() if j.state == "queued")
            if waiting >= self.max_queued:
                raise QueueFull(f"{waiting} jobs are waiting for the worker: try again when they are done")
            job = Job(str(next(self._ids)), kind, case)
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS:
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, job, fn)
        return job

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._jobs.get(job_id)

    def busy(self) -> bool:
        with self._lock:
            return any(j.state in ("queued", "running") for j in self._jobs.values())

    @staticmethod
    def _run(job: Job, fn) -> None:
        job.state, job.message = "running", "started"
        t0 = time.perf_counter()
        try:
            job.result = fn(job)
            job.state, job.progress, job.message = "done", 1.0, "done"
        except NnunetCausalError as e:   # a user's mistake (unknown prompt, refused command...): its message
            job.state, job.error = "error", str(e)
        except Exception as e:  # noqa: BLE001 - the page must hear of every failure; the log keeps the traceback
            logger.exception("viewer job %s (%s) failed", job.id, job.kind)
            job.state, job.error = "error", f"internal error ({type(e).__name__}: {e}); see the server's log"
        job.seconds = round(time.perf_counter() - t0, 3)
        if job.state == "error":
            job.message = job.error

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@contextmanager
def tile_progress(predictor, report: Callable[[int, int, int], None]):
    """Call ``report(tiles done, tiles of this pass, pass number)`` while ``predictor`` (an nnU-Net predictor)
    runs sliding windows; wraps two of its methods on this instance only and restores them after."""
    state = {"done": 0, "total": 0, "passes": 0}
    window = predictor._internal_predict_sliding_window_return_logits
    tile = predictor._internal_maybe_mirror_and_predict

    def counted_window(data, slicers, *args, **kwargs):
        state.update(done=0, total=len(slicers), passes=state["passes"] + 1)
        report(0, state["total"], state["passes"])
        return window(data, slicers, *args, **kwargs)

    def counted_tile(x):
        out = tile(x)
        state["done"] += 1
        report(state["done"], state["total"], state["passes"])
        return out

    predictor._internal_predict_sliding_window_return_logits = counted_window
    predictor._internal_maybe_mirror_and_predict = counted_tile
    try:
        yield state
    finally:
        del predictor._internal_predict_sliding_window_return_logits
        del predictor._internal_maybe_mirror_and_predict
