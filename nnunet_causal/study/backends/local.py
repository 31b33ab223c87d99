"""``backend: local`` (the default): every run on this machine, one after the other, in this process.

This is the study runner's original behaviour: a run starts when the dispatcher first polls it, so runs go in
plan order (seed-major), each command's output streams into ``runs/<run>/commands.log`` and an interruption
(Ctrl-C) stops the study at once, leaving the interrupted training to be continued with ``--c``; the runs
after it were never started and are marked so.
"""
from __future__ import annotations

import shlex
from typing import List, Sequence

from nnunet_causal.study.backends.base import Backend
from nnunet_causal.study.runs import RunJob, RunOutcome, execute_job


class _LocalHandle:
    def __init__(self, job: RunJob, number: int):
        self.job, self.number, self.outcome, self.started = job, number, None, False


class LocalBackend(Backend):
    name = "local"

    def __init__(self, options, output):
        super().__init__(options, output)
        self.max_retries = 0  # nothing here can lose a worker without losing the study too
        self.poll_seconds = 0.0
        self._submitted = 0

    @property
    def num_gpus(self) -> int:
        return 1

    def describe(self, jobs: Sequence[RunJob]) -> List[str]:
        return [f"local: {len(jobs)} run(s), one after the other in this process on this machine "
                f"(environment: {shlex.join(f'{k}={v}' for k, v in sorted(jobs[0].ctx.env.items()))})"
                if jobs else "local: nothing to run"]

    def submit(self, jobs: Sequence[RunJob]) -> List[_LocalHandle]:
        handles = []
        for job in jobs:
            self._submitted += 1
            handles.append(_LocalHandle(job, self._submitted))
        return handles

    def poll(self, handle: _LocalHandle) -> bool:
        if handle.outcome is None:
            handle.started = True
            handle.outcome = execute_job(handle.job)
        return True

    def collect(self, handle: _LocalHandle) -> RunOutcome:
        return handle.outcome

    def started(self, handle: _LocalHandle) -> bool:
        return handle.started

    def job_id(self, handle: _LocalHandle) -> str:
        return f"local-{handle.number}"
