"""The checks a study passes before anything runs: dataset planned and preprocessed, domain records, held-out
domains, trainers findable the way ``nnUNetv2_train`` finds them, prompt files; and the environment the runs get.

Every failure is a :class:`~nnunet_causal.study.config.StudyError` naming the study file and what to do.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional

from nnunet_causal.data.raw_dataset import atomic_path, load_domain_records
from nnunet_causal.errors import DatasetError
from nnunet_causal.study.config import StudyConfig, StudyError
from nnunet_causal.study.paths import read_json as _read_json

logger = logging.getLogger(__name__)

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


def prepare_study(config: StudyConfig, default_device: Optional[str] = None) -> StudyContext:
    """Check the dataset, trainers, domains and prompts of ``config``; return the context to run it in.

    Without ``device`` in the study file the runs use ``default_device`` (a cluster backend's choice: ``cuda``
    when it gives each run GPUs, else ``cpu``) or, for local runs, ``cuda`` if this machine has one.

    Raises:
        StudyError / DatasetError: with a message naming the study file and what to do.
    """
    env = study_environment(config)
    dataset = check_dataset(config, env)
    domains = check_heldout_domains(config, dataset)
    check_trainers(config, env)
    prompt_file = check_prompts(config)
    device = config.device or default_device or _default_device()
    return StudyContext(config=config, dataset=dataset, domains=domains, device=device, env=env,
                        prompt_file=prompt_file)


def _default_device() -> str:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    logger.info("no 'device' in the study file: using %s (found on this machine)", device)
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




def worker_environment(ctx: StudyContext) -> Dict[str, str]:
    """The part of the study's environment a run carries to its worker: the ``nnUNet_*`` variables this machine
    checked (paths on the shared file system, ``nnUNet_extTrainer`` with this package's trainers) and the
    study file's ``env``. A worker lays these over its own environment (its ``PATH``, ``CUDA_VISIBLE_DEVICES``
    and scheduler variables stay its own)."""
    env = {k: v for k, v in ctx.env.items() if k.startswith("nnUNet_")}
    env.update(ctx.config.env)
    env["nnUNet_extTrainer"] = ctx.env["nnUNet_extTrainer"]
    return env
