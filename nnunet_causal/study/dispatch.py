"""Hand a study's runs to its backend and keep the books: skip finished runs, submit the others, poll, collect,
resubmit runs whose worker was lost, record every attempt in ``study_state.json``.

Only this process writes ``study_state.json``. A run's status goes ``submitted`` -> ``done`` / ``failed``
(``interrupted`` when the study itself is stopped: its jobs are cancelled, and the next invocation continues
them from their files; ``not started`` for the jobs a backend knows had not begun). A failed run is reported with its log and the others go on.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, List, Sequence, Tuple

from tqdm import tqdm

from nnunet_causal.study.backends import Backend, WorkerLost
from nnunet_causal.study.checks import StudyContext, worker_environment
from nnunet_causal.study.paths import Run, StudyPaths
from nnunet_causal.study.runs import RunJob, RunOutcome, next_action
from nnunet_causal.study.state import StudyLog, StudyState


def make_jobs(ctx: StudyContext, paths: StudyPaths, runs: Sequence[Run], backend: Backend) -> List[RunJob]:
    """One :class:`RunJob` per run, carrying only the environment a worker needs."""
    job_ctx = dataclasses.replace(ctx, env=worker_environment(ctx))
    return [RunJob(job_ctx, paths, run, backend.num_gpus) for run in runs]


def pending_runs(ctx: StudyContext, paths: StudyPaths, runs: Sequence[Run], state: StudyState, log: StudyLog
                 ) -> Tuple[List[Run], Dict[str, List[str]]]:
    """``(runs with work left, {run id: ["skipped"]} for the finished ones)``; records each run in the state."""
    todo, skipped = [], {}
    for run in runs:
        entry = state.run(run.run_id)
        entry.update(trainer=run.trainer.name, label=run.trainer.label, domain=run.domain, fold=run.fold,
                     seed=run.seed, log=str(paths.log(run)), model_folder=str(paths.fold_dir(run)),
                     evaluation=str(paths.evaluation_json(run)))
        if entry.get("status") == "submitted" and entry.get("backend") not in (None, "local"):
            log.info("%s: an earlier invocation submitted it as %s job %s and did not see it end; if that job "
                     "still runs, cancel it first (two workers would write the same model folder)", run.run_id,
                     entry["backend"], entry.get("job_id", "?"))
        if next_action(ctx, paths, run) == "skip":
            log.info("%s: skipped (checkpoint_final.pth and %s exist)", run.run_id, paths.evaluation_json(run).name)
            entry.update(status="done", error=None)
            state.record(run.run_id, ["skipped"], 0.0)
            skipped[run.run_id] = ["skipped"]
        else:
            todo.append(run)
    state.save()
    return todo, skipped


def execute_all(jobs: Sequence[RunJob], backend: Backend, state: StudyState, log: StudyLog
                ) -> Tuple[Dict[str, List[str]], Dict[str, str]]:
    """Run ``jobs`` on ``backend``; return ``({run id: actions}, {run id: error with its log})``."""
    actions: Dict[str, List[str]] = {}
    failed: Dict[str, str] = {}
    if not jobs:
        return actions, failed
    attempts = {j.run.run_id: 0 for j in jobs}
    started = {j.run.run_id: time.time() for j in jobs}
    active: Dict[Any, RunJob] = {}
    _submit(jobs, backend, state, log, active)
    bar = tqdm(total=len(jobs), desc=f"study runs ({backend.name})", unit="run", leave=False)
    try:
        while active:
            ended = 0
            for handle, job in list(active.items()):
                if not backend.poll(handle):
                    continue
                ended += 1
                del active[handle]
                rid = job.run.run_id
                try:
                    outcome = backend.collect(handle)
                except WorkerLost as e:
                    attempts[rid] += 1
                    state.record(rid, ["lost"], time.time() - started[rid], backend=backend.name,
                                 job_id=backend.job_id(handle), error=str(e), backend_log=e.log)
                    if attempts[rid] <= backend.max_retries:
                        log.info("%s: %s; resubmitting (%d of at most %d)", rid, e, attempts[rid],
                                 backend.max_retries)
                        started[rid] = time.time()
                        _submit([job], backend, state, log, active)
                        continue
                    outcome = RunOutcome(rid, "failed", ["failed"], f"{e}; gave up after {attempts[rid]} "
                                         f"attempt(s)", e.log or str(job.paths.log(job.run)))
                _record(outcome, job, backend, handle, state, log, actions, failed)
                bar.update(1)
            if active and not ended:
                time.sleep(backend.poll_seconds)
    except BaseException:
        for handle, job in active.items():
            status = "interrupted" if backend.started(handle) else "not started"
            state.run(job.run.run_id).update(status=status)
            state.record(job.run.run_id, [status], time.time() - started[job.run.run_id] if status == "interrupted"
                         else 0.0, backend=backend.name, job_id=backend.job_id(handle))
        state.save()
        backend.cancel(list(active))
        raise
    finally:
        bar.close()
    return actions, failed


def _submit(jobs: Sequence[RunJob], backend: Backend, state: StudyState, log: StudyLog, active: Dict) -> None:
    handles = backend.submit(jobs)
    for handle, job in zip(handles, jobs):
        active[handle] = job
        entry = state.run(job.run.run_id)
        entry.update(status="submitted", backend=backend.name, job_id=backend.job_id(handle))
        log.info("%s (trainer %s, held-out %s, fold %d, seed %d): submitted to %s%s", job.run.run_id,
                 job.run.trainer.name, job.run.domain, job.run.fold, job.run.seed, backend.name,
                 f" as {backend.job_id(handle)}" if backend.job_id(handle) else "")
    state.save()


def _record(outcome: RunOutcome, job: RunJob, backend: Backend, handle, state: StudyState, log: StudyLog,
            actions: Dict[str, List[str]], failed: Dict[str, str]) -> None:
    rid = job.run.run_id
    entry = state.run(rid)
    entry.update(status=outcome.status, error=outcome.error, host=outcome.host)
    state.record(rid, outcome.actions, outcome.seconds, backend=backend.name, job_id=backend.job_id(handle))
    state.save()
    actions[rid] = outcome.actions
    if outcome.status != "done":
        failed[rid] = f"{outcome.error} (log: {outcome.log})"
        log.info("%s: FAILED: %s (log: %s)", rid, outcome.error, outcome.log)
    else:
        log.info("%s: done (%s) in %.0f s%s", rid, ", ".join(outcome.actions), outcome.seconds,
                 f" on {outcome.host}" if outcome.host else "")
