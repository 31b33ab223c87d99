"""The whole study: check, find the folds, plan the runs, have the backend run them, report.

See :mod:`nnunet_causal.study` for the steps and the STUDY.yaml schema.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

from nnunet_causal.study.backends import Backend, default_device, make_backend
from nnunet_causal.study.checks import StudyContext, prepare_study
from nnunet_causal.study.config import StudyConfig, StudyError
from nnunet_causal.study.dispatch import execute_all, make_jobs, pending_runs
from nnunet_causal.study.overlays import write_overlays
from nnunet_causal.study.paths import Run, StudyPaths, prediction_tag
from nnunet_causal.study.report import collect_rows, write_study_outputs
from nnunet_causal.study.runs import next_action, planned_commands
from nnunet_causal.study.splits import study_folds
from nnunet_causal.study.state import StudyLog, StudyState

logger = logging.getLogger(__name__)


@dataclass
class StudyResult:
    """What :func:`run_study` produced."""
    output: Path
    rows: List[dict]
    actions: Dict[str, List[str]]
    failed: Dict[str, str]
    files: Dict[str, Path]


def _check_folds(state: StudyState, folds: Mapping[str, int], paths: StudyPaths, split_by: str) -> None:
    previous = state.data.get("folds")
    if state.data.get("split_by", split_by) != split_by:
        raise StudyError(f"{paths.state}: this study was started with split_by '{state.data['split_by']}', now "
                         f"'{split_by}'; its trained models belong to the old folds. Use a new output folder.")
    state.data["split_by"] = split_by
    if previous and any(previous.get(d) != k for d, k in folds.items() if d in previous):
        raise StudyError(f"{paths.state}: the dataset's leave-one-domain-out folds changed since this study "
                         f"started ({previous} -> {dict(folds)}); trained models would no longer match their "
                         f"held-out domain. Use a new output folder.")
    state.data["folds"] = {**(previous or {}), **folds}


def run_study(config: StudyConfig, dry_run: bool = False) -> StudyResult:
    """Check, run (resuming where possible) on the study's backend, evaluate and report the study ``config``.

    With ``dry_run`` only the checks run; the planned step of every run and what the backend would submit
    (the commands, the scheduler's settings) are logged, and nothing is written to the dataset.

    Raises:
        StudyError: bad input before anything runs; after the runs, when some of them failed (the others
        are reported anyway, each failure with its log).
    """
    backend = make_backend(config.backend, config.output)
    ctx = prepare_study(config, default_device=default_device(backend))
    paths = StudyPaths(config.output, ctx.dataset.name, config.configuration, config.plans,
                       prediction_tag(config.prediction, ctx.prompt_file))
    log = StudyLog(paths.study_log)
    log.info("study %s: dataset %s, configuration %s, %d trainer(s) x %d held-out domain(s) x %d seed(s), "
             "device %s, backend %s", config.source, ctx.dataset.name, config.configuration, len(config.trainers),
             len(ctx.domains), len(config.seeds), ctx.device, backend.name)
    state = StudyState.load(paths.state)
    folds = study_folds(ctx, log, write=not dry_run)
    _check_folds(state, folds, paths, config.split_by)
    state.data.update(study=config.source, dataset=ctx.dataset.name, configuration=config.configuration,
                      plans=config.plans, device=ctx.device, backend=backend.name)
    runs = plan_runs(ctx, folds)
    if dry_run:
        _dry_run(ctx, paths, runs, backend, log)
        return StudyResult(config.output, [], {}, {}, {})
    state.save()
    todo, actions = pending_runs(ctx, paths, runs, state, log)
    try:
        done, failed = execute_all(make_jobs(ctx, paths, todo, backend), backend, state, log)
    except KeyboardInterrupt:
        for rid, entry in state.data["runs"].items():
            if entry.get("status") == "interrupted":
                log.info("%s: interrupted (Ctrl-C); the same command continues it", rid)
        raise
    finally:
        backend.close()
    actions.update(done)
    actions = {r.run_id: actions[r.run_id] for r in runs if r.run_id in actions}
    rows = collect_rows(paths, runs, ctx.dataset.dataset_json.get("partial_labels"))
    files = write_study_outputs(config.output, rows, [t.label for t in config.trainers], ctx.domains,
                                title=config.title or f"Out-of-domain study: {ctx.dataset.name}",
                                header_lines=_report_header(ctx, folds),
                                overlays=write_overlays(ctx, paths, runs),
                                runs_table=_runs_table(runs, state))
    log.info("results: %s; report: %s", files["results"], files["report"])
    if failed:
        raise StudyError(f"{len(failed)} of {len(runs)} run(s) failed (tables hold the others): "
                         + "; ".join(f"{k}: {v.splitlines()[0]}" for k, v in failed.items()))
    return StudyResult(config.output, rows, actions, failed, files)


def _dry_run(ctx: StudyContext, paths: StudyPaths, runs: Sequence[Run], backend: Backend, log: StudyLog) -> None:
    jobs = make_jobs(ctx, paths, runs, backend)
    todo = [j for j in jobs if next_action(ctx, paths, j.run) != "skip"]
    for line in backend.describe(todo):
        log.info("dry run: %s", line)
    for job in jobs:
        run = job.run
        log.info("%s: fold %d, next step: %s", run.run_id, run.fold, next_action(ctx, paths, run))
        for line in planned_commands(job):
            log.info("    %s", line)


def plan_runs(ctx: StudyContext, folds: Mapping[str, int]) -> List[Run]:
    """All runs of the study, seed-major (a complete table for the first seed comes first)."""
    cases = {d: tuple(sorted(c for c, dom in ctx.dataset.domain_of.items() if dom == d)) for d in ctx.domains}
    return [Run(trainer=t, domain=d, fold=folds[d], seed=s, cases=cases[d])
            for s in ctx.config.seeds for t in ctx.config.trainers for d in ctx.domains]


def _report_header(ctx: StudyContext, folds: Mapping[str, int]) -> List[str]:
    c = ctx.config
    source = ("nnU-Net's own final validation of each fold" if c.prediction.mode == "validation"
              else "stock `nnUNetv2_predict`" + (" with the study's prompt file" if ctx.prompt_file else ""))
    fold_text = ", ".join(f"fold {k} holds out `{d}`" for d, k in sorted(folds.items(), key=lambda x: x[1]))
    return [
        f"Study file `{c.source}`. Dataset `{ctx.dataset.name}`, configuration `{c.configuration}`, plans "
        f"`{c.plans}`, device `{ctx.device}`, seeds {', '.join(map(str, c.seeds))}.",
        "",
        "Each trainer was trained with the stock `nnUNetv2_train` on all domains but one (leave-one-domain-out "
        f"folds by `{c.split_by}` from `nnunet_causal make-splits`: {fold_text}).",
        f"Held-out predictions: {source}; scored against the raw `labelsTr` (Dice, HD95 in mm; mean over cases "
        f"and annotated structures).",
        "Seeds are independent repeats (nnU-Net does not seed its training); cells are mean ± sample standard "
        "deviation over seeds, the best value of each column in bold.",
    ]


def _runs_table(runs: Sequence[Run], state: StudyState) -> str:
    lines = [f"Backend: {state.data.get('backend', 'local')}.", "",
             "| run | fold | seed | status | last steps | seconds |", "|---|---|---|---|---|---|"]
    for run in runs:
        e = state.data["runs"].get(run.run_id, {})
        lines.append(f"| `{run.run_id}` | {run.fold} | {run.seed} | {e.get('status', '-')} | "
                     f"{', '.join(e.get('actions', [])) or '-'} | {e.get('seconds', '-')} |")
    return "\n".join(lines) + "\n"
