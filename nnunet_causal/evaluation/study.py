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
    env: {nnUNet_n_proc_DA: 2}
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from nnunet_causal.data.raw_dataset import atomic_path, load_domain_records, write_json_atomic
from nnunet_causal.errors import DatasetError, NnunetCausalError

logger = logging.getLogger(__name__)

STATE_FILE = "study_state.json"
LOG_FILE = "study.log"
SEED_VARIABLE = "nnUNet_causal_study_seed"
PROMPT_FILE_VARIABLE = "nnUNet_causal_prompt_file"
DEVICES = ("cpu", "cuda", "mps")
PREDICTION_MODES = ("validation", "predict")
TOP_LEVEL_KEYS = ("dataset", "configuration", "plans", "trainers", "heldout_domains", "split_by", "seeds", "device",
                  "output", "env", "num_processes", "prediction", "title", "overlay_cases")
TRAINER_KEYS = ("name", "label", "env")
PREDICTION_KEYS = ("mode", "disable_tta", "step_size", "prompt_file", "prompts")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ECHO_MARKERS = ("Epoch ", "Pseudo dice", "Mean Validation Dice", "Traceback", "Error")


class StudyError(NnunetCausalError, ValueError):
    """A study file is malformed, or the study cannot run on the data it names."""


class CommandError(StudyError):
    """A stock command run by the study exited with an error."""


# ----------------------------------------------------------------------------------------------------------------
# schema
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainerSpec:
    """One method of the study: an nnU-Net trainer class, its display label and extra environment."""
    name: str
    label: str
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PredictionOptions:
    """Where held-out predictions come from and, for ``mode == "predict"``, the predictor's options."""
    mode: str = "validation"
    disable_tta: bool = False
    step_size: float = 0.5
    prompt_file: Optional[Path] = None
    prompts: Optional[Tuple[str, ...]] = None


@dataclass(frozen=True)
class StudyConfig:
    """A validated STUDY.yaml (see the module docstring for the meaning of each field)."""
    source: str
    dataset: str
    output: Path
    trainers: Tuple[TrainerSpec, ...]
    configuration: str = "2d"
    plans: str = "nnUNetPlans"
    heldout_domains: Union[str, Tuple[str, ...]] = "all"
    split_by: str = "domain"
    seeds: Tuple[int, ...] = (0,)
    device: Optional[str] = None
    env: Mapping[str, str] = field(default_factory=dict)
    num_processes: int = 2
    prediction: PredictionOptions = field(default_factory=PredictionOptions)
    title: Optional[str] = None
    overlay_cases: int = 3


def load_study(path: Union[str, os.PathLike], output: Optional[Union[str, os.PathLike]] = None) -> StudyConfig:
    """Read and validate STUDY.yaml; ``output`` overrides its ``output`` key.

    Raises:
        StudyError: the file cannot be read, is not valid YAML, or breaks the schema (message names the file
        and the offending key).
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StudyError(f"cannot read study file {path}: {e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise StudyError(f"{path}: not valid YAML: {e}") from e
    return parse_study(data, source=str(path), output=output)


def parse_study(data, source: str = "study", output: Optional[Union[str, os.PathLike]] = None) -> StudyConfig:
    """Validate the parsed YAML document ``data`` (a mapping) against the schema; ``source`` names it in errors."""
    if not isinstance(data, Mapping):
        raise StudyError(f"{source}: a study file must be a YAML mapping (key: value lines), got "
                         f"{type(data).__name__}")
    unknown = [str(k) for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise StudyError(f"{source}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(TOP_LEVEL_KEYS)})")
    for key in ("dataset", "trainers"):
        if data.get(key) is None:
            raise StudyError(f"{source}: missing required key '{key}'")
    out = output if output is not None else data.get("output")
    if out is None:
        raise StudyError(f"{source}: missing required key 'output' (or pass --output)")
    return StudyConfig(
        source=source,
        dataset=_parse_dataset(data["dataset"], source),
        output=_parse_path(out, source, "output"),
        trainers=_parse_trainers(data["trainers"], source),
        configuration=_parse_name(data.get("configuration", "2d"), source, "configuration"),
        plans=_parse_name(data.get("plans", "nnUNetPlans"), source, "plans"),
        heldout_domains=_parse_domains(data.get("heldout_domains", "all"), source),
        split_by=_parse_split_by(data.get("split_by", "domain"), source),
        seeds=_parse_seeds(data.get("seeds", [0]), source),
        device=_parse_device(data.get("device"), source),
        env=_parse_env(data.get("env"), source, "env"),
        num_processes=_parse_int(data.get("num_processes", 2), source, "num_processes", minimum=1),
        prediction=_parse_prediction(data.get("prediction"), source),
        title=None if data.get("title") is None else _parse_name(data["title"], source, "title"),
        overlay_cases=_parse_int(data.get("overlay_cases", 3), source, "overlay_cases", minimum=0),
    )


def _type_name(value) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_name(value, source: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise StudyError(f"{source}: '{key}' must be a non-empty string, got {value!r} ({_type_name(value)})")
    return value.strip()


def _parse_int(value, source: str, key: str, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise StudyError(f"{source}: '{key}' must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _parse_path(value, source: str, key: str) -> Path:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = _parse_name(value, source, key)
    return Path(os.path.expandvars(os.path.expanduser(text))).resolve()


def _parse_dataset(value, source: str) -> str:
    if _is_int(value):
        if not 1 <= value <= 999:
            raise StudyError(f"{source}: 'dataset' id must be 1..999, got {value}")
        return str(value)
    if isinstance(value, str) and (value.strip().isdigit() or re.match(r"^Dataset\d{3}_\S+$", value.strip())):
        return value.strip()
    raise StudyError(f"{source}: 'dataset' must be a dataset id (e.g. 990) or name (e.g. Dataset990_Name), "
                     f"got {value!r}")


def _parse_trainers(value, source: str) -> Tuple[TrainerSpec, ...]:
    if not isinstance(value, list) or not value:
        raise StudyError(f"{source}: 'trainers' must be a non-empty list of trainer class names, got {value!r}")
    specs = tuple(_parse_trainer(item, source, i) for i, item in enumerate(value))
    for attr in ("name", "label"):
        seen = [getattr(s, attr) for s in specs]
        dup = sorted({x for x in seen if seen.count(x) > 1})
        if dup:
            raise StudyError(f"{source}: trainer {attr}(s) listed more than once: {', '.join(dup)}")
    return specs


def _parse_trainer(item, source: str, index: int) -> TrainerSpec:
    where = f"trainers[{index}]"
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, Mapping):
        raise StudyError(f"{source}: {where} must be a trainer class name or a mapping with 'name' (and optional "
                         f"'label', 'env'), got {item!r}")
    unknown = [str(k) for k in item if k not in TRAINER_KEYS]
    if unknown:
        raise StudyError(f"{source}: {where} has unknown key(s) {', '.join(unknown)} "
                         f"(allowed: {', '.join(TRAINER_KEYS)})")
    if "name" not in item:
        raise StudyError(f"{source}: {where} lacks 'name' (the trainer class)")
    name = _parse_name(item["name"], source, f"{where}.name")
    if not _IDENTIFIER.match(name):
        raise StudyError(f"{source}: {where}.name '{name}' is not a Python class name")
    label = _parse_name(item.get("label", name), source, f"{where}.label")
    return TrainerSpec(name=name, label=label, env=_parse_env(item.get("env"), source, f"{where}.env"))


def _parse_domains(value, source: str) -> Union[str, Tuple[str, ...]]:
    if value == "all":
        return "all"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise StudyError(f"{source}: 'heldout_domains' must be 'all' or a non-empty list of domain names, "
                         f"got {value!r}")
    names = [v.strip() for v in value]
    if len(set(names)) != len(names):
        raise StudyError(f"{source}: 'heldout_domains' lists a domain more than once: {names}")
    return tuple(names)


def _parse_split_by(value, source: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise StudyError(f"{source}: 'split_by' must be the name of a domain-record field (domain, modality, "
                         f"scanner, source, ...), got {value!r}")
    return value


def _parse_seeds(value, source: str) -> Tuple[int, ...]:
    if _is_int(value):
        value = [value]
    if not isinstance(value, list) or not value or not all(_is_int(v) for v in value):
        raise StudyError(f"{source}: 'seeds' must be a non-empty list of integers, got {value!r}")
    if len(set(value)) != len(value):
        raise StudyError(f"{source}: 'seeds' lists a seed more than once: {value}")
    if any(v < 0 for v in value):
        raise StudyError(f"{source}: 'seeds' must be >= 0, got {value}")
    return tuple(int(v) for v in value)


def _parse_device(value, source: str) -> Optional[str]:
    if value is None:
        return None
    if value not in DEVICES:
        raise StudyError(f"{source}: 'device' must be one of {', '.join(DEVICES)}, got {value!r}")
    return value


def _parse_env(value, source: str, key: str) -> Dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise StudyError(f"{source}: '{key}' must be a mapping of environment variables, got {value!r}")
    env = {}
    for name, val in value.items():
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise StudyError(f"{source}: '{key}' has an invalid variable name {name!r}")
        if isinstance(val, bool):
            val = "true" if val else "false"
        if not isinstance(val, (str, int, float)):
            raise StudyError(f"{source}: '{key}.{name}' must be a string or number, got {val!r}")
        env[name] = os.path.expandvars(os.path.expanduser(str(val)))
    return env


def _parse_prediction(value, source: str) -> PredictionOptions:
    if value is None:
        return PredictionOptions()
    if not isinstance(value, Mapping):
        raise StudyError(f"{source}: 'prediction' must be a mapping, got {value!r}")
    unknown = [str(k) for k in value if k not in PREDICTION_KEYS]
    if unknown:
        raise StudyError(f"{source}: 'prediction' has unknown key(s) {', '.join(unknown)} "
                         f"(allowed: {', '.join(PREDICTION_KEYS)})")
    mode = value.get("mode", "validation")
    if mode not in PREDICTION_MODES:
        raise StudyError(f"{source}: 'prediction.mode' must be one of {', '.join(PREDICTION_MODES)}, got {mode!r}")
    tta = value.get("disable_tta", False)
    if not isinstance(tta, bool):
        raise StudyError(f"{source}: 'prediction.disable_tta' must be true or false, got {tta!r}")
    step = value.get("step_size", 0.5)
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step <= 1:
        raise StudyError(f"{source}: 'prediction.step_size' must be a number in (0, 1], got {step!r}")
    prompt_file = value.get("prompt_file")
    prompts = value.get("prompts")
    if prompt_file is not None and prompts is not None:
        raise StudyError(f"{source}: give either 'prediction.prompt_file' or 'prediction.prompts', not both")
    if prompts is not None and (not isinstance(prompts, list) or not prompts
                                or not all(isinstance(p, str) and p.strip() for p in prompts)):
        raise StudyError(f"{source}: 'prediction.prompts' must be a non-empty list of prompt lines, got {prompts!r}")
    if (prompt_file is not None or prompts is not None) and mode != "predict":
        raise StudyError(f"{source}: prompt options need 'prediction.mode: predict' (nnU-Net's own validation "
                         f"always uses the trained prompts)")
    if (tta or step != 0.5) and mode != "predict":
        raise StudyError(f"{source}: 'disable_tta' / 'step_size' need 'prediction.mode: predict'")
    return PredictionOptions(
        mode=mode, disable_tta=tta, step_size=float(step),
        prompt_file=None if prompt_file is None else _parse_path(prompt_file, source, "prediction.prompt_file"),
        prompts=None if prompts is None else tuple(p.strip() for p in prompts))


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


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StudyError(f"cannot read {path}: {e}") from e


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


def safe_name(text: str) -> str:
    """``text`` reduced to characters safe in file names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


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


# ----------------------------------------------------------------------------------------------------------------
# results, tables, charts, report
# ----------------------------------------------------------------------------------------------------------------

RESULT_FIELDS = ("trainer", "label", "heldout_domain", "fold", "seed", "dice", "hd95_mm", "n_cases",
                 "n_hd95_undefined")


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def scored_records(evaluation: Mapping, partial_labels: Optional[Mapping[str, Sequence[str]]] = None
                   ) -> List[dict]:
    """The evaluation's per-case, per-structure records (``None`` metrics as NaN), without the structures a
    case does not annotate (dataset.json ``"partial_labels"``: ``{case: [annotated structures]}``)."""
    partial = partial_labels or {}
    out = []
    for r in evaluation["records"]:
        if r["case"] in partial and r["structure"] not in partial[r["case"]]:
            continue
        out.append({**r, "dice": _num(r["dice"]), "hd95_mm": _num(r["hd95_mm"])})
    return out


def result_row(run: Run, evaluation: Mapping, partial_labels: Optional[Mapping[str, Sequence[str]]] = None) -> dict:
    """One results.csv row from a run and its evaluation JSON: mean over cases and (annotated) structures,
    plus per structure ``dice_<name>`` / ``hd95_mm_<name>``."""
    from nnunet_causal.evaluation.evaluate_folder import summarise

    records = scored_records(evaluation, partial_labels)
    if not records:
        raise StudyError(f"{run.run_id}: the evaluation holds no annotated structure to score")
    summary = summarise(records)
    row = {"trainer": run.trainer.name, "label": run.trainer.label, "heldout_domain": run.domain, "fold": run.fold,
           "seed": run.seed, "dice": _num(summary["mean"]["dice"]), "hd95_mm": _num(summary["mean"]["hd95_mm"]),
           "n_cases": len({r["case"] for r in records}),
           "n_hd95_undefined": summary["mean"]["n_hd95_undefined"]}
    for name, agg in summary["per_structure"].items():
        row[f"dice_{name}"] = _num(agg["dice"])
        row[f"hd95_mm_{name}"] = _num(agg["hd95_mm"])
    return row


def collect_rows(paths: StudyPaths, runs: Sequence[Run], partial_labels: Optional[Mapping] = None) -> List[dict]:
    """Rows of every run that has an evaluation (this invocation's or an earlier one's)."""
    rows = []
    for run in runs:
        ev = paths.evaluation_json(run)
        if ev.is_file():
            rows.append(result_row(run, _read_json(ev), partial_labels))
    return rows


def write_results_csv(rows: Sequence[dict], path: Path) -> Path:
    """results.csv: :data:`RESULT_FIELDS` then the per-structure columns; NaN written as empty."""
    fields = list(RESULT_FIELDS) + sorted({k for r in rows for k in r} - set(RESULT_FIELDS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()})
    with atomic_path(path) as tmp:
        Path(tmp).write_text(buf.getvalue())
    return path


@dataclass(frozen=True)
class Cell:
    """Mean and sample standard deviation of one metric over seeds (``n`` finite values)."""
    mean: float
    std: float
    n: int


def _cell(values: Iterable[float]) -> Cell:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return Cell(float("nan"), float("nan"), 0)
    return Cell(float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals))


def aggregate(rows: Sequence[dict], metric: str, labels: Sequence[str], domains: Sequence[str]
              ) -> Dict[str, Dict[str, Cell]]:
    """``{label: {domain or "mean": Cell}}`` over seeds. The mean column averages, per seed, over all
    ``domains`` (a seed missing a domain, or with an undefined value, does not count there)."""
    out = {}
    for label in labels:
        mine = [r for r in rows if r["label"] == label]
        cells = {d: _cell(r[metric] for r in mine if r["heldout_domain"] == d) for d in domains}
        per_seed = []
        for seed in sorted({r["seed"] for r in mine}):
            vals = {r["heldout_domain"]: r[metric] for r in mine if r["seed"] == seed}
            if all(d in vals and math.isfinite(vals[d]) for d in domains):
                per_seed.append(float(np.mean([vals[d] for d in domains])))
        cells["mean"] = _cell(per_seed)
        out[label] = cells
    return out


def _fmt(cell: Cell, digits: int, bold: bool) -> str:
    if cell.n == 0:
        return "–"
    text = f"{cell.mean:.{digits}f}" + (f" ± {cell.std:.{digits}f}" if cell.n > 1 else "")
    return f"**{text}**" if bold else text


def markdown_metric_table(rows: Sequence[dict], metric: str, labels: Sequence[str], domains: Sequence[str],
                          higher_is_better: bool, digits: int) -> str:
    """Rows: methods; columns: held-out domains and their mean; cells mean ± std over seeds, best in bold."""
    table = aggregate(rows, metric, labels, domains)
    columns = list(domains) + ["mean"]
    best = {}
    for col in columns:
        means = [table[lb][col].mean for lb in labels if table[lb][col].n]
        if means and len(labels) > 1:
            best[col] = max(means) if higher_is_better else min(means)
    head = "| method | " + " | ".join(f"held out: {_md(d)}" for d in domains) + " | mean |"
    lines = [head, "|---|" + "---|" * len(columns)]
    for lb in labels:
        cells = [_fmt(table[lb][c], digits, table[lb][c].n > 0 and best.get(c) == table[lb][c].mean)
                 for c in columns]
        lines.append(f"| {_md(lb)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def write_tables(rows: Sequence[dict], labels: Sequence[str], domains: Sequence[str], path: Path) -> Tuple[str, str]:
    """table.md with the Dice and the HD95 table; returns both tables."""
    n_seeds = len({r["seed"] for r in rows})
    dice = markdown_metric_table(rows, "dice", labels, domains, True, 3)
    hd95 = markdown_metric_table(rows, "hd95_mm", labels, domains, False, 2)
    text = (f"## Dice on the held-out domain (mean ± std over {n_seeds} seed(s))\n\n{dice}\n"
            f"## HD95 (mm) on the held-out domain (mean ± std over {n_seeds} seed(s); lower is better)\n\n{hd95}")
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return dice, hd95


def write_bar_charts(rows: Sequence[dict], labels: Sequence[str], domains: Sequence[str], folder: Path
                     ) -> Dict[str, Path]:
    """One PNG per held-out domain (and one for the mean): Dice and HD95 bars per method, std error bars."""
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    dice, hd95 = aggregate(rows, "dice", labels, domains), aggregate(rows, "hd95_mm", labels, domains)
    out = {}
    for col in list(domains) + ["mean"]:
        fig = Figure(figsize=(max(6.0, 2.0 + 1.6 * len(labels)), 3.6), dpi=110)
        for ax, table, title in ((fig.add_subplot(1, 2, 1), dice, "Dice (higher = better)"),
                                 (fig.add_subplot(1, 2, 2), hd95, "HD95 in mm (lower = better)")):
            _bars(ax, [table[lb][col] for lb in labels], labels, title)
        fig.suptitle("mean over held-out domains" if col == "mean" else f"held-out domain: {col}", fontsize=10)
        fig.tight_layout()
        path = folder / f"bars_{safe_name(col)}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp)
        out[col] = path
    return out


def _bars(ax, cells: Sequence[Cell], labels: Sequence[str], title: str) -> None:
    x = np.arange(len(labels))
    means = [c.mean if c.n else 0.0 for c in cells]
    errs = [c.std if c.n > 1 else 0.0 for c in cells]
    ax.bar(x, means, yerr=errs, capsize=3, color=[f"C{i % 10}" for i in range(len(labels))])
    for xi, c in zip(x, cells):
        if c.n == 0:
            ax.text(xi, 0, "n/a", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)


def write_study_outputs(output: Path, rows: Sequence[dict], labels: Sequence[str], domains: Sequence[str], *,
                        title: str = "Out-of-domain study", header_lines: Sequence[str] = (),
                        overlays: Optional[Mapping[str, Path]] = None, runs_table: Optional[str] = None
                        ) -> Dict[str, Path]:
    """results.csv, table.md, bar charts and report.md (embedding tables, charts and ``overlays``)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    order = {lb: i for i, lb in enumerate(labels)}
    dom_order = {d: i for i, d in enumerate(domains)}
    rows = sorted(rows, key=lambda r: (order.get(r["label"], 1e9), dom_order.get(r["heldout_domain"], 1e9),
                                       r["seed"]))
    files = {"results": write_results_csv(rows, output / "results.csv")}
    files["table"] = output / "table.md"
    dice, hd95 = write_tables(rows, labels, domains, files["table"])
    charts = write_bar_charts(rows, labels, domains, output / "figures")
    files.update({f"chart_{k}": v for k, v in charts.items()})
    files["report"] = write_report(output, title, header_lines, dice, hd95, charts, overlays or {}, runs_table,
                                   n_seeds=len({r["seed"] for r in rows}))
    return files


def write_report(output: Path, title: str, header_lines: Sequence[str], dice: str, hd95: str,
                 charts: Mapping[str, Path], overlays: Mapping[str, Path], runs_table: Optional[str],
                 n_seeds: int) -> Path:
    """report.md: header, Dice and HD95 tables, bar charts, overlays and the run list."""
    rel = lambda p: Path(p).relative_to(output).as_posix()  # noqa: E731 - report-relative links
    lines = [f"# {title}", "", *header_lines, "",
             f"## Dice on the held-out domain (mean ± std over {n_seeds} seed(s))", "", dice,
             "## HD95 (mm) on the held-out domain (lower is better)", "", hd95,
             "## Per held-out domain", ""]
    for col, path in charts.items():
        lines += [f"![{col}]({rel(path)})", ""]
    if overlays:
        lines += ["## Overlays (green: reference, red: prediction; first seed)", ""]
        for domain, path in overlays.items():
            lines += [f"### held out: {domain}", "", f"![overlays {domain}]({rel(path)})", ""]
    if runs_table:
        lines += ["## Runs", "", runs_table]
    lines += ["Raw numbers: `results.csv` (one row per trainer, held-out domain and seed); per-case metrics: "
              "`runs/<run>/evaluation.csv`; command output: `runs/<run>/commands.log`.", ""]
    path = output / "report.md"
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines))
    return path


# ----------------------------------------------------------------------------------------------------------------
# overlays
# ----------------------------------------------------------------------------------------------------------------

def pick_slice(reference: np.ndarray) -> int:
    """Index along axis 0 with the most foreground; ties go to the slice nearest the middle (middle if empty)."""
    counts = (reference.reshape(reference.shape[0], -1) > 0).sum(1)
    middle = reference.shape[0] // 2
    if counts.max() == 0:
        return middle
    candidates = np.flatnonzero(counts == counts.max())
    return int(candidates[np.argmin(np.abs(candidates - middle))])


def _display_image(image: np.ndarray, z: int) -> np.ndarray:
    """(C, Z, Y, X) -> an RGB (Y, X, 3) picture for RGB data, else channel 0 as grey in [0, 1]."""
    if image.shape[0] == 3:
        rgb = np.moveaxis(image[:, z], 0, -1).astype(np.float32)
        return np.clip(rgb / 255.0 if rgb.max() > 1.0 else rgb, 0, 1)
    grey = image[0, z].astype(np.float32)
    lo, hi = np.percentile(grey, (0.5, 99.5))
    return np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1)


def _draw_contours(ax, seg: np.ndarray, colour: str, style: str) -> None:
    for value in np.unique(seg):
        if value == 0:
            continue
        mask = (seg == value).astype(np.float32)
        ax.contour(mask, levels=[0.5], colors=[colour], linewidths=1.0, linestyles=style)


def _case_dice(evaluation_json: Path, partial_labels: Optional[Mapping] = None) -> Dict[str, float]:
    per_case: Dict[str, List[float]] = {}
    for r in scored_records(_read_json(evaluation_json), partial_labels):
        per_case.setdefault(r["case"], []).append(r["dice"])
    return {c: float(np.mean(v)) for c, v in per_case.items()}


def overlay_figure(dataset_json: Mapping, raw: Path, cases: Sequence[str], columns: Mapping[str, Path],
                   out: Path, dice: Optional[Mapping[str, Mapping[str, float]]] = None) -> Optional[Path]:
    """Grid PNG: one row per case, one column per method (``{label: prediction folder}``); reference contour
    green, prediction red. 3D cases show the slice with the most reference foreground."""
    from matplotlib.figure import Figure
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    ending = dataset_json["file_ending"]
    if not cases or not columns:
        return None
    rw = determine_reader_writer_from_dataset_json(dict(dataset_json), str(raw / "labelsTr" / f"{cases[0]}{ending}"))()
    fig = Figure(figsize=(2.4 * len(columns), 2.5 * len(cases)), dpi=100)
    for i, case in enumerate(cases):
        image, props = rw.read_images([str(raw / "imagesTr" / f"{case}_0000{ending}")])
        ref = rw.read_seg(str(raw / "labelsTr" / f"{case}{ending}"))[0][0]
        z = pick_slice(ref)
        spacing = [float(s) for s in props["spacing"]]
        for j, (label, folder) in enumerate(columns.items()):
            ax = fig.add_subplot(len(cases), len(columns), i * len(columns) + j + 1)
            ax.imshow(_display_image(image, z), cmap="gray", aspect=spacing[-2] / spacing[-1], interpolation="nearest")
            _draw_contours(ax, ref[z], "lime", "solid")
            pred_file = folder / f"{case}{ending}"
            if pred_file.is_file():
                _draw_contours(ax, rw.read_seg(str(pred_file))[0][0][z], "red", "solid")
            d = (dice or {}).get(label, {}).get(case)
            ax.set_title(f"{label}" + (f"\nDice {d:.2f}" if d is not None else ""), fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(case + (f" (z={z})" if ref.shape[0] > 1 else ""), fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp)
    return out


def _spread(items: Sequence[str], k: int) -> List[str]:
    if k <= 0 or not items:
        return []
    idx = np.unique(np.linspace(0, len(items) - 1, min(k, len(items))).round().astype(int))
    return [items[i] for i in idx]


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
