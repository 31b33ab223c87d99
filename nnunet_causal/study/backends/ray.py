"""``backend: {name: ray, ...}``: every run a Ray task, on an existing Ray cluster or a local one.

``address`` names the cluster (``auto`` for the one this machine belongs to, ``ray://head:10001`` for a
remote one); without it a Ray cluster is started on this machine for the study (``num_cpus`` / ``num_gpus``
limit it) and stopped at the end. ``resources_per_run`` is what each task asks Ray for (``num_cpus``,
default 1; ``num_gpus``, default 0 -- Ray hides GPUs from tasks that ask for none, so set it for ``cuda``
runs; ``memory_gb``; any custom resource of the cluster). A run given N > 1 GPUs trains with nnU-Net's own
``-num_gpus N``. The task calls :func:`~nnunet_causal.study.runs.execute_job` (the stock commands); results
land in the study folder, which the cluster's nodes must share. Ray's own task retries are off: a task whose
worker died (killed, out of memory, node lost) is resubmitted by the study, up to ``max_retries`` (2), and
resumes from its files. ``poll_seconds`` (default 5) sets how often the study looks.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Sequence

from nnunet_causal.study.backends.base import Backend, WorkerLost, cluster_library
from nnunet_causal.study.config import StudyError
from nnunet_causal.study.runs import RunJob, RunOutcome, execute_job

logger = logging.getLogger(__name__)


def _ray():
    return cluster_library("ray", "ray")


class RayBackend(Backend):
    name = "ray"

    def __init__(self, options, output):
        super().__init__(options, output)
        self.poll_seconds = float(options.get("poll_seconds", 5.0))
        self._started = False
        self._remote = None
        self._names: Dict[Any, str] = {}

    def resources(self) -> Dict[str, Any]:
        """``.options(...)`` of each task: num_cpus, num_gpus, memory (bytes) and custom resources."""
        wanted = dict(self.options.get("resources_per_run") or {})
        out: Dict[str, Any] = {"num_cpus": wanted.pop("num_cpus", 1), "num_gpus": wanted.pop("num_gpus", 0)}
        if "memory_gb" in wanted:
            out["memory"] = int(wanted.pop("memory_gb") * 1024 ** 3)
        if wanted:
            out["resources"] = wanted
        return out

    @property
    def num_gpus(self) -> int:
        return int(self.resources()["num_gpus"])

    def _where(self) -> str:
        address = self.options.get("address")
        if address:
            return f"the Ray cluster at {address}"
        limits = ", ".join(f"{k}={self.options.get(k)}" for k in ("num_cpus", "num_gpus") if self.options.get(k))
        return f"a Ray cluster started on this machine ({limits or 'all its CPUs and GPUs'})"

    def describe(self, jobs: Sequence[RunJob]) -> List[str]:
        res = ", ".join(f"{k}={v}" for k, v in self.resources().items())
        return [f"ray: {len(jobs)} task(s) on {self._where()}, each with {res}, max_retries=0 (the study "
                f"resubmits lost tasks up to {self.max_retries} times); each task runs the commands listed for "
                f"its run"]

    def _connect(self):
        ray = _ray()
        if self._remote is None:
            if not ray.is_initialized():
                kwargs: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
                address = self.options.get("address")
                if address:
                    kwargs["address"] = address
                else:
                    for key in ("num_cpus", "num_gpus"):
                        if self.options.get(key) is not None:
                            kwargs[key] = int(self.options.get(key))
                try:
                    ray.init(**kwargs)
                except Exception as e:  # noqa: BLE001 - connection refused, bad address: one clear message
                    raise StudyError(f"cannot start or reach {self._where()}: {type(e).__name__}: {e}") from e
                self._started = True
                logger.info("connected to %s", self._where())
            self._remote = ray.remote(execute_job).options(max_retries=0, **self.resources())
        return ray

    def submit(self, jobs: Sequence[RunJob]) -> List[Any]:
        self._connect()
        refs = []
        for job in jobs:
            ref = self._remote.remote(job)
            self._names[ref] = job.run.run_id
            refs.append(ref)
        return refs

    def poll(self, handle) -> bool:
        ray = _ray()
        ready, _ = ray.wait([handle], timeout=0)
        return bool(ready)

    def collect(self, handle) -> RunOutcome:
        ray = _ray()
        try:
            return ray.get(handle)
        except ray.exceptions.RayError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "no message"
            raise WorkerLost(f"Ray task {handle.hex()[:16]} ended without an outcome ({type(e).__name__}: "
                             f"{first})") from e

    def job_id(self, handle) -> str:
        return handle.hex()[:16]

    def cancel(self, handles: Sequence[Any]) -> None:
        ray = _ray()
        for h in handles:
            try:
                ray.cancel(h, force=True)
            except Exception as e:  # noqa: BLE001 - on the way out: say which task may still run
                logger.warning("could not cancel Ray task %s: %s", self._names.get(h, h), e)

    def close(self) -> None:
        if self._started:
            _ray().shutdown()
            self._started, self._remote = False, None
