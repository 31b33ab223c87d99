"""Out-of-domain studies: trainers x held-out domains x seeds through the stock nnU-Net commands.

``nnunet_causal study STUDY.yaml`` generalises the hand-written leave-one-domain-out loop of
``benchmarks/lodo_benchmark.py``. For an already planned and preprocessed dataset it

1. runs ``nnunet_causal make-splits -d DATASET --leave-one-domain-out`` (fold k holds out domain k);
2. for every seed, trainer and held-out domain runs the stock
   ``nnUNetv2_train DATASET CONFIG FOLD -tr TRAINER -p PLANS -device DEVICE`` with ``nnUNet_results`` pointed
   at ``OUTPUT/seed_<seed>/nnUNet_results`` (each seed its own model folders);
3. takes the predictions of the held-out domain from nnU-Net's own final validation
   (``fold_k/validation``: for a leave-one-domain-out fold the validation cases *are* the held-out domain),
   or, with ``prediction: {mode: predict}``, from a stock ``nnUNetv2_predict`` run on the held-out cases;
4. scores them against the raw ``labelsTr`` with :func:`nnunet_causal.evaluation.evaluate_folder.evaluate_folders`
   (Dice and HD95 per case and structure; the structures a case does not annotate, listed by dataset.json's
   ``"partial_labels"``, are left out of its scores);
5. writes ``results.csv``, ``table.md``, bar charts and overlays under ``figures/``, and ``report.md``.

The study is resumable: a run whose ``checkpoint_final.pth`` and evaluation JSON both exist is skipped
(and says so in ``study.log``); a run interrupted during training (``checkpoint_latest.pth`` only) is
continued with ``--c``; a run whose training finished but whose validation did not is completed with
``--val``. Progress and per-run history are kept in ``study_state.json`` (written atomically).

Modules: this one runs the study (checks, runs, resumption); :mod:`.study_config` parses the file below,
:mod:`.study_report` writes tables, charts, overlays and the report.

STUDY.yaml schema
-----------------
Relative paths are taken relative to the current working directory; ``$VARS`` and ``~`` are expanded in
paths and in ``env`` values. Unknown keys are errors (they are usually typos).

``dataset`` (required)
    Dataset id (``990``) or name (``Dataset990_SynthEndoscopy``). Must be planned and preprocessed
    (``$nnUNet_preprocessed/DatasetXXX/<plans>.json`` and the configuration's data folder) and its
    dataset.json must hold a ``"domains"`` record for every training case.
``trainers`` (required)
    Non-empty list. Each item is a trainer class name (``nnUNetTrainerCausalText_50epochs``) or a mapping
    ``{name: CLASS, label: "text shown in tables", env: {VAR: value}}`` (``label`` defaults to the name;
    ``env`` is added to the environment of that trainer's commands only). Names and labels must be unique.
    Each class must be findable the way ``nnUNetv2_train`` finds it (nnunetv2's own trainers, then the
    folders in ``nnUNet_extTrainer``; this package's trainer folder is always added).
``output`` (required unless given on the command line with ``--output``)
    Study folder: per-seed ``nnUNet_results``, run logs, evaluations, tables, figures and report.
``configuration`` (default ``2d``), ``plans`` (default ``nnUNetPlans``)
    nnU-Net configuration and plans identifier.
``heldout_domains`` (default ``all``)
    ``all`` or a list of domain names (values of the ``split_by`` field of dataset.json's domain records).
``split_by`` (default ``domain``)
    The domain-record field that defines the domains, passed to ``make-splits --by``: ``domain`` (site or
    source dataset), or e.g. ``modality`` for CT -> MRI folds, ``scanner``, ``source``. splits_final.json is
    shared by everything trained on the dataset: do not run studies with different ``split_by`` on the same
    dataset at the same time.
``seeds`` (default ``[0]``)
    List of distinct integers. Every seed gets its own results folder. nnU-Net does not seed its
    training (weight initialisation, patch sampling and augmentation draw from unseeded generators) and
    none of this package's trainers reads a seed, so seeds are *independent repeats* labelled by the
    number; the number is exported as ``nnUNet_causal_study_seed`` for custom trainers that want it.
``device`` (default ``cuda`` when available, else ``cpu``)
    ``cpu``, ``cuda`` or ``mps``, passed as ``-device``.
``env`` (optional)
    Mapping of extra environment variables for every command (``nnUNet_raw``, ``nnUNet_preprocessed``,
    ``nnUNet_n_proc_DA``, ``nnUNet_compile``, ...). Values are strings, numbers or booleans.
    ``nnUNet_results`` is always replaced by the seed's folder under ``output``.
``num_processes`` (default 2)
    Worker processes for evaluation and for ``nnUNetv2_predict`` (``-npp``/``-nps``).
``prediction`` (optional mapping)
    ``mode``: ``validation`` (default; nnU-Net's final validation of the fold) or ``predict`` (stock
    ``nnUNetv2_predict`` on the held-out domain's training images, with the options below);
    ``disable_tta`` (bool, default false), ``step_size`` (float in (0, 1], default 0.5);
    ``prompt_file`` (a prompt file with one line per trained structure, in label order) or ``prompts``
    (a list of such lines): text trainers then segment the trained structures through these wordings
    (``nnUNet_causal_prompt_file``; other trainers ignore it). Prompt options need ``mode: predict``.
``title`` (optional)
    Report title. ``overlay_cases`` (default 3): cases per domain shown in the overlay figures.

Example::

    dataset: 990
    configuration: 2d
    trainers:
      - nnUNetTrainer_CPUDemo
      - {name: nnUNetTrainerCausalText_CPUDemo, label: causal + text}
    heldout_domains: all
    seeds: [0, 1, 2]
    device: cpu
    output: studies/synthetic_endoscopy
    env: {nnUNet_n_proc_DA: 2}"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from nnunet_causal.data.raw_dataset import atomic_path, load_domain_records, write_json_atomic
from nnunet_causal.errors import DatasetError, NnunetCausalError
from nnunet_causal.evaluation.study_config import (  # noqa: F401  (re-exported: the public API lives here)
    LOG_FILE, PREDICTION_MODES, PROMPT_FILE_VARIABLE, SEED_VARIABLE, STATE_FILE, CommandError, PredictionOptions,
    StudyConfig, StudyError, TrainerSpec, load_study, parse_study)
from nnunet_causal.evaluation.study_report import (  # noqa: F401
    RESULT_FIELDS, Cell, _read_json, aggregate, collect_rows, markdown_metric_table, overlay_figure, pick_slice,
    result_row, safe_name, scored_records, write_bar_charts, write_report, write_results_csv, write_study_outputs,
    write_tables, _case_dice, _spread)

logger = logging.getLogger(__name__)
_ECHO_MARKERS = ("Epoch ", "Pseudo dice", "Mean Validation Dice", "Traceback", "Error")


# ----------------------------------------------------------------------------------------------------------------
# checks against the environment and the data
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class DatasetInfo:
    """The dataset a study runs on, as found on disk."""
    name: str
    raw: Path
    preprocessed: Path
    dataset_json: dict
    domain_of: Dict[str, str]
    file_ending: str

    @property
    def domains(self) -> List[str]:
        return sorted(set(self.domain_of.values()))

    @property
    def dataset_json_path(self) -> Path:
        return self.raw / "dataset.json"


@dataclass
class StudyContext:
    """Everything a study run needs after the checks: config, dataset, device and base environment."""
    config: StudyConfig
    dataset: DatasetInfo
    domains: List[str]
    device: str
    env: Dict[str, str]
    prompt_file: Optional[Path] = None


def study_environment(config: StudyConfig) -> Dict[str, str]:
    """``os.environ`` plus the study's ``env``, with this package's trainer folder in ``nnUNet_extTrainer``."""
    from nnunet_causal.env_cli import ext_trainer_folder

    env = dict(os.environ)
    env.update(config.env)
    ext = str(ext_trainer_folder())
    parts = [p for p in env.get("nnUNet_extTrainer", "").split(os.pathsep) if p.strip()]
    if ext not in parts:
        parts.append(ext)
    env["nnUNet_extTrainer"] = os.pathsep.join(parts)
    return env


@contextlib.contextmanager
def _patched_environ(env: Mapping[str, str]) -> Iterator[None]:
    """Temporarily replace ``os.environ`` by ``env`` (nnunetv2 reads its path variables at call time)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def prepare_study(config: StudyConfig) -> StudyContext:
    """Check the dataset, trainers, domains and prompts of ``config``; return the context to run it in.

    Raises:
        StudyError / DatasetError: with a message naming the study file and what to do.
    """
    env = study_environment(config)
    dataset = check_dataset(config, env)
    domains = check_heldout_domains(config, dataset)
    check_trainers(config, env)
    prompt_file = check_prompts(config)
    device = config.device or _default_device()
    return StudyContext(config=config, dataset=dataset, domains=domains, device=device, env=env,
                        prompt_file=prompt_file)


def _default_device() -> str:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    logger.info("no 'device' in the study file: using %s", device)
    return device


def _required_folder(env: Mapping[str, str], var: str, source: str) -> Path:
    value = env.get(var)
    if not value:
        raise StudyError(f"{source}: the environment variable {var} is not set (export it, or set it under "
                         f"'env' in the study file)")
    return Path(value)


def check_dataset(config: StudyConfig, env: Mapping[str, str]) -> DatasetInfo:
    """The dataset must resolve, be preprocessed for the configuration and have raw labels and domain records."""
    from nnunet_causal.data.splits_cli import resolve_dataset_name, training_case_ids

    src = config.source
    pre_root = _required_folder(env, "nnUNet_preprocessed", src)
    raw_root = _required_folder(env, "nnUNet_raw", src)
    with _patched_environ(env):
        try:
            name = resolve_dataset_name(config.dataset)
        except DatasetError as e:
            raise StudyError(f"{src}: {e}") from e
    pre = pre_root / name
    _check_preprocessed(config, pre)
    raw = raw_root / name
    for needed in (raw / "dataset.json", raw / "labelsTr"):
        if not needed.exists():
            raise StudyError(f"{src}: {needed} does not exist: the study scores predictions against the raw "
                             f"dataset's labelsTr")
    dj_path = pre / "dataset.json" if (pre / "dataset.json").is_file() else raw / "dataset.json"
    dataset_json = _read_json(dj_path)
    cases = training_case_ids(pre, raw, dataset_json)
    records = load_domain_records(dataset_json, cases, str(dj_path))
    key = config.split_by
    lacking = [c for c in cases if not str(records[c].get(key, "")).strip()]
    if lacking:
        raise StudyError(f"{src}: 'split_by: {key}' but the domain record(s) of {', '.join(lacking[:5])}"
                         f"{' ...' if len(lacking) > 5 else ''} in {dj_path} have no '{key}' field")
    return DatasetInfo(name=name, raw=raw, preprocessed=pre, dataset_json=dataset_json,
                       domain_of={c: str(records[c][key]) for c in cases},
                       file_ending=dataset_json["file_ending"])


def _check_preprocessed(config: StudyConfig, pre: Path) -> Path:
    """Return the configuration's preprocessed data folder; error with the command to run when absent."""
    hint = f"run nnUNetv2_plan_and_preprocess -d {config.dataset} -c {config.configuration} first"
    plans_file = pre / f"{config.plans}.json"
    if not plans_file.is_file():
        raise StudyError(f"{config.source}: dataset {pre.name} is not preprocessed: {plans_file} does not exist; "
                         f"{hint}")
    plans = _read_json(plans_file)
    configurations = plans.get("configurations", {})
    if config.configuration not in configurations:
        raise StudyError(f"{config.source}: {plans_file} has no configuration '{config.configuration}' "
                         f"(available: {', '.join(configurations) or 'none'})")
    identifier = _data_identifier(configurations, config.configuration)
    folder = pre / identifier if identifier else None
    if folder is None or not folder.is_dir() or not any(folder.iterdir()):
        raise StudyError(f"{config.source}: configuration '{config.configuration}' of {pre.name} is not "
                         f"preprocessed ({folder if folder else 'no data_identifier in ' + str(plans_file)} is "
                         f"missing or empty); {hint}")
    return folder


def _data_identifier(configurations: Mapping, name: str) -> Optional[str]:
    """Follow ``inherits_from`` until a configuration names its ``data_identifier``."""
    seen = set()
    while name in configurations and name not in seen:
        seen.add(name)
        conf = configurations[name]
        if conf.get("data_identifier"):
            return conf["data_identifier"]
        name = conf.get("inherits_from")
    return None


def check_heldout_domains(config: StudyConfig, dataset: DatasetInfo) -> List[str]:
    """The held-out domains of the study, each one present in the dataset's domain records."""
    known = dataset.domains
    if len(known) < 2:
        raise StudyError(f"{config.source}: dataset {dataset.name} has a single domain ({', '.join(known)}); "
                         f"leave-one-domain-out needs at least two")
    if config.heldout_domains == "all":
        return known
    missing = [d for d in config.heldout_domains if d not in known]
    if missing:
        raise StudyError(f"{config.source}: held-out domain(s) {', '.join(map(repr, missing))} not in the domain "
                         f"records of {dataset.name} (known values of '{config.split_by}' among the training "
                         f"cases: {', '.join(known)})")
    return list(config.heldout_domains)


def check_trainers(config: StudyConfig, env: Mapping[str, str]) -> None:
    """Every trainer class must be findable the way ``nnUNetv2_train`` finds it (nnunetv2, then
    ``nnUNet_extTrainer``)."""
    for spec in config.trainers:
        find_trainer(spec.name, dict(env, **spec.env), config.source)


def find_trainer(name: str, env: Mapping[str, str], source: str = "study"):
    """Return the trainer class ``name`` using nnunetv2's own lookup under ``env``; raise StudyError if absent."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    chatter = io.StringIO()
    try:
        with _patched_environ(env), contextlib.redirect_stdout(chatter):
            return recursive_find_trainer_class_by_name(name)
    except RuntimeError as e:
        if "Could not find requested nnunet trainer" not in str(e):
            raise StudyError(f"{source}: loading trainer '{name}' failed: {e}") from e
        folders = env.get("nnUNet_extTrainer", "")
        raise StudyError(f"{source}: unknown trainer '{name}': no such class in nnunetv2.training.nnUNetTrainer "
                         f"nor in the nnUNet_extTrainer folders ({folders})") from e
    except AssertionError as e:
        raise StudyError(f"{source}: '{name}' is not a subclass of nnUNetTrainer") from e
    except ImportError as e:
        raise StudyError(f"{source}: importing trainer modules while looking for '{name}' failed: {e}") from e


def check_prompts(config: StudyConfig) -> Optional[Path]:
    """Validate the prompt file / prompt lines of ``prediction``; return the file the predictor will read."""
    from nnunet_causal.text.prompt_file import read_prompt_file

    opts = config.prediction
    if opts.prompts is not None:
        path = config.output / "prompts.txt"
        with atomic_path(path) as tmp:
            Path(tmp).write_text("\n".join(opts.prompts) + "\n", encoding="utf-8")
    elif opts.prompt_file is not None:
        path = opts.prompt_file
        if not path.is_file():
            raise StudyError(f"{config.source}: prompt file {path} does not exist")
    else:
        return None
    read_prompt_file(path)  # PromptError names the file and line
    return path


# ----------------------------------------------------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------------------------------------------------

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


class StudyLog:
    """Study progress: to this module's logger and, with a time stamp, to ``study.log``."""

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


def _executable(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise StudyError(f"command {name} not found (is nnunetv2 installed in this environment?)")
    return found


def run_command(cmd: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
    """Run a stock command, appending its output to ``log_path``; progress lines go to the logger.

    Raises:
        CommandError: non-zero exit, with the log path and the last output lines.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque = deque(maxlen=8)
    with open(log_path, "a", encoding="utf-8") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(list(cmd), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        for line in proc.stdout:
            f.write(line)
            tail.append(line.rstrip())
            if any(m in line for m in _ECHO_MARKERS):
                logger.info("    %s", line.strip())
        code = proc.wait()
    if code:
        last = [t for t in tail if t.strip()]
        raise CommandError(f"{Path(cmd[0]).name} exited with code {code}: {last[-1] if last else 'no output'} "
                           f"(full output in {log_path})\n  last lines:\n    " + "\n    ".join(last))


def make_splits(ctx: StudyContext, log: StudyLog) -> Dict[str, int]:
    """Run ``nnunet_causal make-splits`` and return ``{domain: fold}`` read back from splits_final.json."""
    cmd = [sys.executable, "-m", "nnunet_causal.cli", "make-splits", "-d", ctx.dataset.name,
           "--leave-one-domain-out", "--by", ctx.config.split_by]
    log.info("writing leave-one-domain-out splits: %s", shlex.join(cmd[1:]))
    run_command(cmd, ctx.env, ctx.config.output / "make_splits.log")
    return fold_map(ctx.dataset)


def fold_map(dataset: DatasetInfo) -> Dict[str, int]:
    """``{domain: fold}`` from ``splits_final.json``; each fold's validation cases must share one domain."""
    path = dataset.preprocessed / "splits_final.json"
    splits = _read_json(path)
    out = {}
    for k, fold in enumerate(splits):
        domains = {dataset.domain_of.get(c, "?") for c in fold.get("val", [])}
        if len(domains) != 1:
            raise StudyError(f"{path}: fold {k} validates on cases of domains {sorted(domains)}; expected one "
                             f"held-out domain per fold (run nnunet_causal make-splits --leave-one-domain-out)")
        out[domains.pop()] = k
    return out


def plan_runs(ctx: StudyContext, folds: Mapping[str, int]) -> List[Run]:
    """All runs of the study, seed-major (a complete table for the first seed comes first)."""
    cases = {d: tuple(sorted(c for c, dom in ctx.dataset.domain_of.items() if dom == d)) for d in ctx.domains}
    return [Run(trainer=t, domain=d, fold=folds[d], seed=s, cases=cases[d])
            for s in ctx.config.seeds for t in ctx.config.trainers for d in ctx.domains]


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.is_symlink() or dst.exists():
        if dst.is_symlink() and Path(os.readlink(dst)) == src:
            return
        dst.unlink()
    try:
        dst.symlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


def _mirror(folder: Path, files: Mapping[str, Path]) -> Path:
    """Make ``folder`` hold exactly ``files`` (name -> source), as symbolic links (copies where links fail)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if stale.name not in files:
            stale.unlink()
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
    env = dict(ctx.env)
    env.update(run.trainer.env)
    results = paths.results(run.seed)
    results.mkdir(parents=True, exist_ok=True)
    env["nnUNet_results"] = str(results)
    env[SEED_VARIABLE] = str(run.seed)
    return env


def _train_command(ctx: StudyContext, run: Run, flag: Optional[str]) -> List[str]:
    c = ctx.config
    cmd = [_executable("nnUNetv2_train"), ctx.dataset.name, c.configuration, str(run.fold), "-tr", run.trainer.name,
           "-p", c.plans, "-device", ctx.device]
    return cmd + ([flag] if flag else [])


def _predict_command(ctx: StudyContext, paths: StudyPaths, run: Run) -> List[str]:
    c, opts = ctx.config, ctx.config.prediction
    inputs = input_folder(ctx, paths, run.domain, run.cases)
    cmd = [_executable("nnUNetv2_predict"), "-i", str(inputs), "-o", str(paths.predictions(run)),
           "-d", ctx.dataset.name, "-c", c.configuration, "-p", c.plans, "-tr", run.trainer.name, "-f", str(run.fold),
           "-device", ctx.device, "-npp", str(c.num_processes), "-nps", str(c.num_processes),
           "-step_size", str(opts.step_size), "--continue_prediction", "--disable_progress_bar"]
    return cmd + (["--disable_tta"] if opts.disable_tta else [])


def execute_run(ctx: StudyContext, paths: StudyPaths, run: Run, log: StudyLog) -> List[str]:
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
        run_command(_train_command(ctx, run, flag), env, cmd_log)
        done.append("continued" if flag else "trained")
    if not predictions_current(paths, run, ending):
        done.append(_predict_held_out(ctx, paths, run, env, log))
    pred = paths.predictions(run)
    if not predictions_current(paths, run, ending):
        raise StudyError(f"{run.run_id}: {pred} lacks up-to-date predictions for some held-out cases; see {cmd_log}")
    evaluate_run(ctx, paths, run)
    done.append("evaluated")
    return done


def _predict_held_out(ctx: StudyContext, paths: StudyPaths, run: Run, env: Dict[str, str], log: StudyLog) -> str:
    """(Re)create the held-out predictions: nnU-Net's validation (``--val``) or ``nnUNetv2_predict``."""
    if ctx.config.prediction.mode == "validation":
        log.info("%s: running nnU-Net's validation of the held-out domain (--val)", run.run_id)
        run_command(_train_command(ctx, run, "--val"), env, paths.log(run))
        return "validated"
    log.info("%s: nnUNetv2_predict on %d held-out cases", run.run_id, len(run.cases))
    folder = paths.predictions(run)
    if folder.is_dir():  # --continue_prediction keeps existing files: drop those of an older model
        for old in folder.glob(f"*{ctx.dataset.file_ending}"):
            if not _newer_than_model(old, paths, run):
                old.unlink()
    if ctx.prompt_file is not None:
        env = dict(env, **{PROMPT_FILE_VARIABLE: str(ctx.prompt_file)})
    run_command(_predict_command(ctx, paths, run), env, paths.log(run))
    return "predicted"


def evaluate_run(ctx: StudyContext, paths: StudyPaths, run: Run) -> dict:
    """Score the run's held-out predictions against raw labelsTr; writes ``runs/<id>/evaluation.*``."""
    from nnunet_causal.evaluation.evaluate_folder import evaluate_folders

    refs = reference_folder(ctx, paths, run.domain, run.cases)
    pred = paths.predictions(run)
    return evaluate_folders(refs, pred, ctx.dataset.dataset_json_path, output_prefix=str(paths.evaluation_prefix(run)),
                            num_processes=ctx.config.num_processes)


# ----------------------------------------------------------------------------------------------------------------
# the whole study
# ----------------------------------------------------------------------------------------------------------------

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
    """Check, run (resuming where possible), evaluate and report the study ``config``.

    With ``dry_run`` only the checks run and the planned action of every run is logged.

    Raises:
        StudyError: bad input before anything runs; after the runs, when some of them failed (the others
        are reported anyway).
    """
    ctx = prepare_study(config)
    paths = StudyPaths(config.output, ctx.dataset.name, config.configuration, config.plans,
                       prediction_tag(config.prediction, ctx.prompt_file))
    log = StudyLog(paths.study_log)
    log.info("study %s: dataset %s, configuration %s, %d trainer(s) x %d held-out domain(s) x %d seed(s), "
             "device %s", config.source, ctx.dataset.name, config.configuration, len(config.trainers),
             len(ctx.domains), len(config.seeds), ctx.device)
    state = StudyState.load(paths.state)
    folds = make_splits(ctx, log) if not dry_run else _dry_run_folds(ctx)
    _check_folds(state, folds, paths, config.split_by)
    state.data.update(study=config.source, dataset=ctx.dataset.name, configuration=config.configuration,
                      plans=config.plans, device=ctx.device)
    runs = plan_runs(ctx, folds)
    if dry_run:
        for run in runs:
            log.info("%s: fold %d, next step: %s", run.run_id, run.fold, next_action(ctx, paths, run))
        return StudyResult(config.output, [], {}, {}, {})
    state.save()
    actions, failed = _execute_all(ctx, paths, runs, state, log)
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


def _dry_run_folds(ctx: StudyContext) -> Dict[str, int]:
    """Folds make-splits would write (domains in sorted order), without writing them."""
    return {d: k for k, d in enumerate(ctx.dataset.domains)}


def _execute_all(ctx: StudyContext, paths: StudyPaths, runs: Sequence[Run], state: StudyState, log: StudyLog
                 ) -> Tuple[Dict[str, List[str]], Dict[str, str]]:
    actions, failed = {}, {}
    for i, run in enumerate(runs, 1):
        log.info("[%d/%d] %s (trainer %s, held-out %s, fold %d, seed %d)", i, len(runs), run.run_id,
                 run.trainer.name, run.domain, run.fold, run.seed)
        entry = state.run(run.run_id)
        entry.update(trainer=run.trainer.name, label=run.trainer.label, domain=run.domain, fold=run.fold,
                     seed=run.seed, status="running", log=str(paths.log(run)),
                     model_folder=str(paths.fold_dir(run)), evaluation=str(paths.evaluation_json(run)))
        state.save()
        t0 = time.time()
        try:
            done = execute_run(ctx, paths, run, log)
            entry.update(status="done", error=None)
        except NnunetCausalError as e:
            done, failed[run.run_id] = ["failed"], str(e)
            entry.update(status="failed", error=str(e))
            log.info("%s: FAILED: %s", run.run_id, e)
        except BaseException:
            entry.update(status="interrupted")
            entry["history"].append({"time": datetime.now().isoformat(timespec="seconds"),
                                     "actions": ["interrupted"], "seconds": round(time.time() - t0, 1)})
            state.save()
            raise
        seconds = round(time.time() - t0, 1)
        entry.update(actions=done, seconds=seconds)
        entry["history"].append({"time": datetime.now().isoformat(timespec="seconds"), "actions": done,
                                 "seconds": seconds})
        state.save()
        actions[run.run_id] = done
    return actions, failed


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
    lines = ["| run | fold | seed | status | last steps | seconds |", "|---|---|---|---|---|---|"]
    for run in runs:
        e = state.data["runs"].get(run.run_id, {})
        lines.append(f"| `{run.run_id}` | {run.fold} | {run.seed} | {e.get('status', '-')} | "
                     f"{', '.join(e.get('actions', [])) or '-'} | {e.get('seconds', '-')} |")
    return "\n".join(lines) + "\n"

def write_overlays(ctx: StudyContext, paths: StudyPaths, runs: Sequence[Run]) -> Dict[str, Path]:
    """One overlay grid per held-out domain from each method's first evaluated seed."""
    out = {}
    for domain in ctx.domains:
        columns, dice, cases = {}, {}, ()
        for run in runs:
            if run.domain != domain or run.trainer.label in columns or not paths.evaluation_json(run).is_file():
                continue
            columns[run.trainer.label] = paths.predictions(run)
            dice[run.trainer.label] = _case_dice(paths.evaluation_json(run),
                                                 ctx.dataset.dataset_json.get("partial_labels"))
            cases = run.cases
        picked = _spread(list(cases), ctx.config.overlay_cases)
        try:
            fig = overlay_figure(ctx.dataset.dataset_json, ctx.dataset.raw, picked, columns,
                                 paths.figures / f"overlay_{safe_name(domain)}.png", dice)
        except Exception as e:  # noqa: BLE001 - a figure must not sink a finished study
            logger.warning("overlays for domain %s failed: %s", domain, e)
            fig = None
        if fig is not None:
            out[domain] = fig
    return out
