"""``backend: {name: slurm, ...}``: every run a SLURM job, submitted through submitit as one job array.

Each job calls :func:`~nnunet_causal.study.runs.execute_job`, i.e. the stock ``nnUNetv2_train`` (with
``-num_gpus N`` when a run gets N > 1 GPUs: nnU-Net's own DDP training of one fold), validation or
``nnUNetv2_predict``, and the evaluation, on the node SLURM picked; results land in the study folder, which
must be on a file system the nodes share. The study process waits and polls (``poll_seconds``); a job that
ends without an outcome (killed, pre-empted, timed out, node failure) is resubmitted up to ``max_retries``
times and resumes from its files (``--c``).

Settings (all optional): ``partition``, ``gpus_per_run`` (default 1; 0 for CPU runs), ``cpus_per_run``
(default 8), ``mem_gb``, ``time_min`` (default 1440), ``array_parallelism`` (runs at once, default 32),
``account``, ``qos``, ``constraint``, ``setup`` (shell lines run before each job, e.g. ``module load cuda``),
``additional`` (further sbatch options), ``folder`` (submitit's job files, default
``OUTPUT/backend_logs/submitit``), ``executor`` (``slurm``; ``local`` / ``debug`` run submitit's stand-ins on
this machine, for trying a study file), ``max_retries`` (2), ``poll_seconds`` (30).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Sequence

from nnunet_causal.study.backends.base import Backend, WorkerLost, cluster_library
from nnunet_causal.study.config import StudyError
from nnunet_causal.study.runs import RunJob, RunOutcome, execute_job

logger = logging.getLogger(__name__)


def _submitit():
    return cluster_library("submitit", "slurm")


class SlurmBackend(Backend):
    name = "slurm"

    def __init__(self, options, output):
        super().__init__(options, output)
        self.poll_seconds = float(options.get("poll_seconds", 30.0))
        self.folder = Path(options.get("folder") or self.output / "backend_logs" / "submitit")
        self._executor = None

    @property
    def num_gpus(self) -> int:
        return int(self.options.get("gpus_per_run", 1))

    def parameters(self, n_jobs: int) -> Dict[str, Any]:
        """submitit's parameters for the settings (generic ones plus ``slurm_*``)."""
        o = self.options
        params: Dict[str, Any] = {"name": "nnunet_causal_study", "timeout_min": int(o.get("time_min", 1440)),
                                  "gpus_per_node": self.num_gpus, "cpus_per_task": int(o.get("cpus_per_run", 8)),
                                  "tasks_per_node": 1, "nodes": 1,
                                  "slurm_array_parallelism": int(o.get("array_parallelism", 32))}
        if o.get("mem_gb") is not None:
            params["mem_gb"] = o.get("mem_gb")
        for key in ("partition", "account", "qos", "constraint"):
            if o.get(key) is not None:
                params[f"slurm_{key}"] = o.get(key)
        if o.get("setup"):
            params["slurm_setup"] = list(o.get("setup"))
        if o.get("additional"):
            params["slurm_additional_parameters"] = dict(o.get("additional"))
        return params

    def describe(self, jobs: Sequence[RunJob]) -> List[str]:
        kind = self.options.get("executor", "slurm")
        params = ", ".join(f"{k}={v}" for k, v in self.parameters(len(jobs)).items())
        return [f"slurm ({kind} executor via submitit): one job array of {len(jobs)} job(s) with {params}; job "
                f"files in {self.folder}; each job runs the commands listed for its run"]

    def _get_executor(self):
        if self._executor is None:
            submitit = _submitit()
            kind = self.options.get("executor", "slurm")
            executor = submitit.AutoExecutor(folder=str(self.folder), cluster=kind)
            params = self.parameters(0)
            if kind != "slurm":  # stand-ins on this machine: only the generic parameters mean something
                params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
            executor.update_parameters(**params)
            self._executor = executor
        return self._executor

    def submit(self, jobs: Sequence[RunJob]) -> List[Any]:
        if not jobs:
            return []
        executor = self._get_executor()
        try:
            return list(executor.map_array(execute_job, list(jobs)))
        except Exception as e:  # noqa: BLE001 - sbatch missing / refused: say which and why
            raise StudyError(f"submitting {len(jobs)} job(s) to SLURM failed: {type(e).__name__}: {e}") from e

    def poll(self, handle) -> bool:
        return bool(handle.done())

    def collect(self, handle) -> RunOutcome:
        submitit = _submitit()
        try:
            return handle.result()
        except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as e:
            raise WorkerLost(f"SLURM job {handle.job_id} ended without an outcome ({type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else 'no message'})",
                             str(handle.paths.stderr)) from e

    def job_id(self, handle) -> str:
        return str(handle.job_id)

    def cancel(self, handles: Sequence[Any]) -> None:
        for h in handles:
            try:
                h.cancel(check=False)
            except Exception as e:  # noqa: BLE001 - on the way out: say which job may still run
                logger.warning("could not cancel SLURM job %s (%s); cancel it with scancel", h.job_id, e)
