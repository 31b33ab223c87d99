"""STUDY.yaml parsing and validation (the schema is documented in :mod:`nnunet_causal.study`).

Every error is a :class:`StudyError` that names the file and the key. The ``backend`` block is checked here
against a table of keys per backend (:data:`BACKEND_KEYS`); the backend modules read the checked values.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from nnunet_causal.errors import NnunetCausalError

STATE_FILE = "study_state.json"
LOG_FILE = "study.log"
SEED_VARIABLE = "nnUNet_causal_study_seed"
PROMPT_FILE_VARIABLE = "nnUNet_causal_prompt_file"
DEVICES = ("cpu", "cuda", "mps")
PREDICTION_MODES = ("validation", "predict")
TOP_LEVEL_KEYS = ("dataset", "configuration", "plans", "trainers", "heldout_domains", "split_by", "seeds", "device",
                  "output", "env", "num_processes", "prediction", "title", "overlay_cases", "backend",
                  "backend_settings")
TRAINER_KEYS = ("name", "label", "env")
PREDICTION_KEYS = ("mode", "disable_tta", "step_size", "prompt_file", "prompts")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

class StudyError(NnunetCausalError, ValueError):
    """A study file is malformed, or the study cannot run on the data it names."""


class CommandError(StudyError):
    """A stock command run by the study exited with an error."""


# value kinds of the backend keys: "int", "number", "text", "texts" (list of strings), "numbers" (mapping of
# names to numbers), "mapping" (names to strings / numbers), or a tuple of allowed strings
_SHARED_BACKEND_KEYS = {"max_retries": "int", "poll_seconds": "number"}
BACKEND_KEYS: Dict[str, Dict[str, Any]] = {
    "local": {},
    "slurm": {**_SHARED_BACKEND_KEYS, "partition": "text", "gpus_per_run": "int", "cpus_per_run": "int",
              "mem_gb": "number", "time_min": "int", "array_parallelism": "int", "account": "text", "qos": "text",
              "constraint": "text", "setup": "texts", "additional": "mapping", "folder": "text",
              "executor": ("slurm", "local", "debug")},
    "ray": {**_SHARED_BACKEND_KEYS, "address": "text", "num_cpus": "int", "num_gpus": "int",
            "resources_per_run": "numbers"},
}

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
class BackendOptions:
    """Where the runs execute: ``name`` (``local``, ``slurm`` or ``ray``) and that backend's checked settings."""
    name: str = "local"
    settings: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default=None):
        return self.settings.get(key, default)


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
    backend: BackendOptions = field(default_factory=BackendOptions)


def load_study(path: Union[str, os.PathLike], output: Optional[Union[str, os.PathLike]] = None,
               backend: Optional[str] = None) -> StudyConfig:
    """Read and validate STUDY.yaml; ``output`` overrides its ``output`` key, ``backend`` the backend's name
    (the file's ``backend`` settings are kept when they are for that backend, else that backend's defaults).

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
    return parse_study(data, source=str(path), output=output, backend=backend)


def parse_study(data, source: str = "study", output: Optional[Union[str, os.PathLike]] = None,
                backend: Optional[str] = None) -> StudyConfig:
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
        backend=_parse_backend(data.get("backend", "local"), data.get("backend_settings"), source, backend),
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



def _parse_backend(value, per_backend, source: str, override: Optional[str] = None) -> BackendOptions:
    """``backend: local`` or ``backend: {name: slurm, partition: gpu, ...}``, plus ``backend_settings: {slurm:
    {...}, ray: {...}}`` (settings for backends picked with ``--backend``); ``override`` replaces the name."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
        raise StudyError(f"{source}: 'backend' must be one of {', '.join(BACKEND_KEYS)} or a mapping with 'name' "
                         f"and that backend's settings, got {value!r}")
    if per_backend is None:
        per_backend = {}
    if not isinstance(per_backend, Mapping) or not all(k in BACKEND_KEYS and isinstance(v, Mapping)
                                                       for k, v in per_backend.items()):
        raise StudyError(f"{source}: 'backend_settings' must map backend names ({', '.join(BACKEND_KEYS)}) to "
                         f"mappings of their settings, got {per_backend!r}")
    name = value["name"]
    for chosen, where in ((name, "'backend.name'"), (override, "--backend")):
        if chosen is not None and chosen not in BACKEND_KEYS:
            raise StudyError(f"{source}: {where} must be one of {', '.join(BACKEND_KEYS)}, got {chosen!r}")
    inline = {k: v for k, v in value.items() if k != "name"}
    if inline and name in per_backend:
        raise StudyError(f"{source}: settings for '{name}' are given both under 'backend' and under "
                         f"'backend_settings.{name}'; keep one")
    blocks = {**per_backend, name: inline or per_backend.get(name, {})}
    checked = {}
    for backend_name, settings in blocks.items():
        allowed = BACKEND_KEYS[backend_name]
        where = "backend" if backend_name == name and inline else f"backend_settings.{backend_name}"
        unknown = [str(k) for k in settings if k not in allowed]
        if unknown:
            raise StudyError(f"{source}: '{where}' ({backend_name}) has unknown key(s) {', '.join(unknown)} "
                             f"(allowed: {', '.join(allowed) or 'none'})")
        checked[backend_name] = {k: _parse_backend_value(v, allowed[k], source, f"{where}.{k}")
                                 for k, v in settings.items()}
    chosen = override or name
    return BackendOptions(name=chosen, settings=checked.get(chosen, {}))


def _parse_backend_value(value, kind, source: str, key: str):
    if isinstance(kind, tuple):
        if value not in kind:
            raise StudyError(f"{source}: '{key}' must be one of {', '.join(kind)}, got {value!r}")
        return value
    if kind == "int":
        return _parse_int(value, source, key, minimum=0)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise StudyError(f"{source}: '{key}' must be a number >= 0, got {value!r}")
        return float(value)
    if kind == "text":
        return _parse_name(value if not _is_int(value) else str(value), source, key)
    if kind == "texts":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise StudyError(f"{source}: '{key}' must be a list of strings, got {value!r}")
        return tuple(value)
    if kind == "numbers":
        if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and not isinstance(v, bool) and isinstance(v, (int, float)) and v >= 0
                for k, v in value.items()):
            raise StudyError(f"{source}: '{key}' must map resource names to numbers >= 0, got {value!r}")
        return {k: v for k, v in value.items()}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, (str, int, float))
                                                  for k, v in value.items()):
        raise StudyError(f"{source}: '{key}' must be a mapping of names to strings or numbers, got {value!r}")
    return {k: v for k, v in value.items()}
