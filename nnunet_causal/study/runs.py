"""One run, start to finish, on whichever machine a backend picked: the stock commands and the evaluation.

A run is brought to "trained and evaluated" doing only the missing steps, decided from the files under the
study folder (so a resubmitted or re-run run resumes): ``nnUNetv2_train`` (``--c`` after an interruption),
nnU-Net's own validation (``--val``) or ``nnUNetv2_predict`` for the held-out predictions, then
:func:`nnunet_causal.evaluation.evaluate_folder.evaluate_folders` against the raw labels.

:func:`execute_job` is what every backend executes (in this process, a SLURM job or a Ray task); it never
raises for a failed run but returns a :class:`RunOutcome` naming the error and the log, so that an exception
seen by a backend means the worker itself was lost.
"""
from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.study.checks import StudyContext
from nnunet_causal.study.config import PROMPT_FILE_VARIABLE, SEED_VARIABLE, CommandError, StudyError
from nnunet_causal.study.paths import Run, StudyPaths
from nnunet_causal.study.state import StudyLog

logger = logging.getLogger(__name__)
_ECHO_MARKERS = ("Epoch ", "Pseudo dice", "Mean Validation Dice", "Traceback", "Error")


@dataclass(frozen=True)
class RunJob:
    """What a backend ships to a worker: the checked study context (its ``env`` holds only
    :func:`~nnunet_causal.study.checks.worker_environment`), the study's paths, the run and its GPU count
    (``-num_gpus`` of ``nnUNetv2_train`` when above 1)."""
    ctx: StudyContext
    paths: StudyPaths
    run: Run
    num_gpus: int = 1


@dataclass
class RunOutcome:
    """What a worker reports back: ``status`` ``done`` or ``failed``, the steps taken, the error and the log."""
    run_id: str
    status: str
    actions: List[str] = field(default_factory=list)
    error: Optional[str] = None
    log: Optional[str] = None
    seconds: float = 0.0
    host: str = ""


def execute_job(job: RunJob) -> RunOutcome:
    """Run ``job`` on this machine; a failure (a command's non-zero exit, bad data, a bug) becomes a failed
    outcome naming the run's log, never an exception."""
    t0, log_path = time.time(), job.paths.log(job.run)
    host = socket.gethostname()
    try:
        actions = execute_run(job.ctx, job.paths, job.run, StudyLog(job.paths.study_log), job.num_gpus)
        return RunOutcome(job.run.run_id, "done", actions, None, str(log_path), time.time() - t0, host)
    except NnunetCausalError as e:
        return RunOutcome(job.run.run_id, "failed", ["failed"], str(e), str(log_path), time.time() - t0, host)
    except Exception as e:  # noqa: BLE001 - reported as this run's failure; the other runs go on
        text = f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exc(limit=8))
        return RunOutcome(job.run.run_id, "failed", ["failed"], text, str(log_path), time.time() - t0, host)


def _executable(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise StudyError(f"command {name} not found (is nnunetv2 installed in this environment?)")
    return found


def _die_with_worker() -> None:
    """Run in the child before it execs (Linux): SIGKILL it when the process that started it dies, so that the
    training of a lost worker (killed, pre-empted) cannot go on beside its resubmitted run."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def stop_command(proc: subprocess.Popen, grace_seconds: float = 30.0) -> None:
    """Stop a stock command and reap it: SIGINT (Ctrl-C in a terminal reaches it anyway, ``kill -INT`` of the
    study does not), so that its Python code unwinds as after Ctrl-C; SIGKILL after ``grace_seconds``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_command(cmd: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
    """Run a stock command, appending its output to ``log_path``; progress lines go to the logger. The command
    dies with this process (Linux) and is stopped and reaped when this process is interrupted (Ctrl-C).

    Raises:
        CommandError: non-zero exit, with the log path and the last output lines.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque = deque(maxlen=8)
    with open(log_path, "a", encoding="utf-8") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(list(cmd), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1,
                                preexec_fn=_die_with_worker if sys.platform.startswith("linux") else None)
        try:
            for line in proc.stdout:
                f.write(line)
                tail.append(line.rstrip())
                if any(m in line for m in _ECHO_MARKERS):
                    logger.info("    %s", line.strip())
            code = proc.wait()
        except BaseException:  # Ctrl-C or the worker being stopped: the command stops with it
            stop_command(proc)
            f.write(f"[{Path(cmd[0]).name} stopped: the study was interrupted]\n")
            raise
    if code:
        last = [t for t in tail if t.strip()]
        raise CommandError(f"{Path(cmd[0]).name} exited with code {code}: {last[-1] if last else 'no output'} "
                           f"(full output in {log_path})\n  last lines:\n    " + "\n    ".join(last))


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` -> ``src`` as a symbolic link (a copy where links fail), put in place with one rename so that
    runs of the same held-out domain on several workers can build the same folder at once."""
    if dst.is_symlink() and Path(os.readlink(dst)) == src:
        return
    tmp = dst.with_name(f".{dst.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(src)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _mirror(folder: Path, files: Mapping[str, Path]) -> Path:
    """Make ``folder`` hold exactly ``files`` (name -> source), as symbolic links (copies where links fail);
    other workers' temporary names (leading dot) are left alone."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if stale.name not in files and not stale.name.startswith("."):
            stale.unlink(missing_ok=True)
    for name, src in files.items():
        if not src.is_file():
            raise StudyError(f"{src} does not exist (needed by the study)")
        _link_or_copy(src.resolve(), folder / name)
    return folder


def reference_folder(ctx: StudyContext, paths: StudyPaths, domain: str, cases: Sequence[str]) -> Path:
    """A folder with the raw labelsTr files of ``cases`` (one held-out domain)."""
    ending = ctx.dataset.file_ending
    files = {f"{c}{ending}": ctx.dataset.raw / "labelsTr" / f"{c}{ending}" for c in cases}
    return _mirror(paths.references(domain), files)


def input_folder(ctx: StudyContext, paths: StudyPaths, domain: str, cases: Sequence[str]) -> Path:
    """A folder with the raw imagesTr channel files of ``cases``, for ``nnUNetv2_predict -i``."""
    ending = ctx.dataset.file_ending
    n_channels = len(ctx.dataset.dataset_json.get("channel_names", ctx.dataset.dataset_json.get("modality", {})))
    files = {}
    for c in cases:
        for ch in range(max(n_channels, 1)):
            name = f"{c}_{ch:04d}{ending}"
            src = ctx.dataset.raw / "imagesTr" / name
            if ch == 0 or src.exists():  # RGB PNGs hold all channels in _0000
                files[name] = src
    return _mirror(paths.inputs(domain), files)


def _newer_than_model(path: Path, paths: StudyPaths, run: Run) -> bool:
    final = paths.fold_dir(run) / "checkpoint_final.pth"
    return path.is_file() and final.is_file() and path.stat().st_mtime >= final.stat().st_mtime


def predictions_current(paths: StudyPaths, run: Run, ending: str) -> bool:
    """Every held-out case has a prediction written after the final checkpoint (not one of an older model)."""
    folder = paths.predictions(run)
    return all(_newer_than_model(folder / f"{c}{ending}", paths, run) for c in run.cases)


def next_action(ctx: StudyContext, paths: StudyPaths, run: Run) -> str:
    """What ``execute_run`` would do first: skip, train, continue, validate, predict or evaluate."""
    fold_dir = paths.fold_dir(run)
    if _newer_than_model(paths.evaluation_json(run), paths, run):
        return "skip"
    if not (fold_dir / "checkpoint_final.pth").is_file():
        return "continue" if (fold_dir / "checkpoint_latest.pth").is_file() else "train"
    if not predictions_current(paths, run, ctx.dataset.file_ending):
        return "validate" if ctx.config.prediction.mode == "validation" else "predict"
    return "evaluate"


def _run_env(ctx: StudyContext, paths: StudyPaths, run: Run) -> Dict[str, str]:
    """This machine's environment, the study's (``ctx.env``), the trainer's, and the seed's results folder."""
    env = dict(os.environ)
    env.update(ctx.env)
    env.update(run.trainer.env)
    results = paths.results(run.seed)
    results.mkdir(parents=True, exist_ok=True)
    env["nnUNet_results"] = str(results)
    env[SEED_VARIABLE] = str(run.seed)
    return env


def train_command(ctx: StudyContext, run: Run, flag: Optional[str], num_gpus: int = 1) -> List[str]:
    """The stock ``nnUNetv2_train`` command of ``run`` (``flag``: None, ``--c`` or ``--val``)."""
    c = ctx.config
    cmd = [_executable("nnUNetv2_train"), ctx.dataset.name, c.configuration, str(run.fold), "-tr", run.trainer.name,
           "-p", c.plans, "-device", ctx.device]
    if num_gpus > 1:  # nnU-Net's own multi-GPU (DDP) training of one fold
        cmd += ["-num_gpus", str(num_gpus)]
    return cmd + ([flag] if flag else [])


def predict_command(ctx: StudyContext, paths: StudyPaths, run: Run, inputs: Path) -> List[str]:
    """The stock ``nnUNetv2_predict`` command for ``run``'s held-out cases (``inputs``: their images)."""
    c, opts = ctx.config, ctx.config.prediction
    cmd = [_executable("nnUNetv2_predict"), "-i", str(inputs), "-o", str(paths.predictions(run)),
           "-d", ctx.dataset.name, "-c", c.configuration, "-p", c.plans, "-tr", run.trainer.name, "-f", str(run.fold),
           "-device", ctx.device, "-npp", str(c.num_processes), "-nps", str(c.num_processes),
           "-step_size", str(opts.step_size), "--continue_prediction", "--disable_progress_bar"]
    return cmd + (["--disable_tta"] if opts.disable_tta else [])


def planned_commands(job: RunJob) -> List[str]:
    """The commands ``job`` would run now (for ``--dry-run``), one shell line each; nothing is written."""
    ctx, paths, run = job.ctx, job.paths, job.run
    action = next_action(ctx, paths, run)
    if action == "skip":
        return []
    lines = []
    if action in ("train", "continue"):
        lines.append(train_command(ctx, run, "--c" if action == "continue" else None, job.num_gpus))
    if action == "validate":
        lines.append(train_command(ctx, run, "--val", job.num_gpus))
    if action == "predict" or (action in ("train", "continue") and ctx.config.prediction.mode == "predict"):
        lines.append(predict_command(ctx, paths, run, paths.inputs(run.domain)))
    text = [shlex.join(c) for c in lines]
    return text + [f"evaluate {paths.predictions(run)} against {paths.references(run.domain)} -> "
                   f"{paths.evaluation_json(run)}"]


def execute_run(ctx: StudyContext, paths: StudyPaths, run: Run, log: StudyLog, num_gpus: int = 1) -> List[str]:
    """Bring one run to 'trained and evaluated', doing only the missing steps; return the steps taken."""
    action = next_action(ctx, paths, run)
    if action == "skip":
        log.info("%s: skipped (checkpoint_final.pth and %s exist)", run.run_id, paths.evaluation_json(run).name)
        return ["skipped"]
    env, cmd_log, ending = _run_env(ctx, paths, run), paths.log(run), ctx.dataset.file_ending
    done: List[str] = []
    if action in ("train", "continue"):
        flag = "--c" if action == "continue" else None
        log.info("%s: %s nnUNetv2_train fold %d (holds out '%s')", run.run_id,
                 "continuing (--c) interrupted" if flag else "starting", run.fold, run.domain)
        run_command(train_command(ctx, run, flag, num_gpus), env, cmd_log)
        done.append("continued" if flag else "trained")
    if not predictions_current(paths, run, ending):
        done.append(_predict_held_out(ctx, paths, run, env, log, num_gpus))
    pred = paths.predictions(run)
    if not predictions_current(paths, run, ending):
        raise StudyError(f"{run.run_id}: {pred} lacks up-to-date predictions for some held-out cases; see {cmd_log}")
    evaluate_run(ctx, paths, run)
    done.append("evaluated")
    return done


def _predict_held_out(ctx: StudyContext, paths: StudyPaths, run: Run, env: Dict[str, str], log: StudyLog,
                      num_gpus: int = 1) -> str:
    """(Re)create the held-out predictions: nnU-Net's validation (``--val``) or ``nnUNetv2_predict``."""
    if ctx.config.prediction.mode == "validation":
        log.info("%s: running nnU-Net's validation of the held-out domain (--val)", run.run_id)
        run_command(train_command(ctx, run, "--val", num_gpus), env, paths.log(run))
        return "validated"
    log.info("%s: nnUNetv2_predict on %d held-out cases", run.run_id, len(run.cases))
    folder = paths.predictions(run)
    if folder.is_dir():  # --continue_prediction keeps existing files: drop those of an older model
        for old in folder.glob(f"*{ctx.dataset.file_ending}"):
            if not _newer_than_model(old, paths, run):
                old.unlink()
    if ctx.prompt_file is not None:
        env = dict(env, **{PROMPT_FILE_VARIABLE: str(ctx.prompt_file)})
    inputs = input_folder(ctx, paths, run.domain, run.cases)
    run_command(predict_command(ctx, paths, run, inputs), env, paths.log(run))
    return "predicted"


def evaluate_run(ctx: StudyContext, paths: StudyPaths, run: Run) -> dict:
    """Score the run's held-out predictions against raw labelsTr; writes ``runs/<id>/evaluation.*``."""
    from nnunet_causal.evaluation.evaluate_folder import evaluate_folders

    refs = reference_folder(ctx, paths, run.domain, run.cases)
    pred = paths.predictions(run)
    return evaluate_folders(refs, pred, ctx.dataset.dataset_json_path, output_prefix=str(paths.evaluation_prefix(run)),
                            num_processes=ctx.config.num_processes)


