"""What one predicted case leaves on disk: the format, its one writer and its reader.

``nnUNetv2_predict_text``, ``nnunet_causal intervene`` and the viewer's *save* all hand plain data to
:func:`write_case`; :func:`read_case` reads any of them back. For a case ``CASE`` in an output folder::

    CASE<file ending>            label map, nnU-Net's reader/writer and the image's geometry; value i is the
                                 label value of prompt i (1-based), 0 background
    CASE__<part><file ending>    optional: one binary mask per prompt (0/1, same geometry); <part> is the
                                 prompt's slug, with "__<label value>" appended when two slugs coincide
    CASE.prompts.json            the sidecar (below)
    CASE.edits.json              intervention and viewer only: the edit log (below)

``CASE.prompts.json``::

    {"schema_version": 1, "case": "CASE", "edited": false,
     "images": [...], "model": "...", "fold": 0,          # optional, where the writer knows them
     "prompts": [ {one record per prompt, in label-value order} ]}

Every prompt record has these keys (``None`` where a writer has no value):

=======================  =====================================================================================
``prompt``               the prompt as given
``label_value``          the prompt's own value in the label map
``structure``            what the prompt grounds to: ``"trained: a + b"`` (trained structures) or
                         ``"open: <text>"``; prompts with the same structure are one structure
``voxels_label_value``   the label value that holds the structure's voxels in the label map (the first
                         prompt of the structure that has voxels; its own ``label_value`` otherwise)
``voxel_count``          voxels of ``voxels_label_value`` in the label map: the structure's voxels
``max_probability``      the structure's largest sigmoid probability over the case
``present``              the presence decision of the structure: ``true``/``false`` from the model's
                         presence head and calibration, ``null`` when the model has none (unknown, never a
                         guess). The same for every prompt of one structure, in every output.
``presence_score``       case-level presence probability (``null`` without a head), with
``presence_threshold``   its threshold and ``presence_calibration`` (where the threshold comes from, or why
                         there is none); the presence decision may add keys of its own, such as
                         ``presence_reason`` (:mod:`nnunet_causal.inference.presence`)
``presence_reason``      why the structure was decided absent (score below the threshold, image unlike
                         the training images, structure outside the model's body regions); ``null`` otherwise
``mask_suppressed``      the structure was decided absent and its voxels were kept out of the label map
``terms``, ``score``,    the grounding: resolved terms, resolver score and stage (exact | knowledge |
``resolution``,          corrected | embedding | none), ``source`` (trained | open_vocabulary), the
``source``, ...          trained structures, used / ignored / unknown words, the corrected spelling, the
                         resolver's message and, when the resolver gives one, its ``explanation`` dict
``binary_mask``          file name of the prompt's binary mask (``null`` when none was written), and
``binary_voxel_count``   its voxel count; a binary mask is its structure's mask (empty when suppressed)
``voxels_changed_by_``   voxels of the structure changed by edits (intervention and viewer; 0 otherwise)
``edits``
=======================  =====================================================================================

``CASE.edits.json``::

    {"schema_version": 1, "case": "CASE", "model": "...", "fold": 0, "tci_weights": {...} | null,
     "edits": [one entry per command: command, parsed, actions, voxels_changed, seconds, refused, undone],
     "applied": <edits in effect>, "timings": {...}, "voxels_changed_total": {structure: voxels}}

Every file is written through a temporary file, flushed and renamed into place, so a reader never sees half
a case. :func:`read_case` raises :class:`~nnunet_causal.errors.DatasetError` naming the file for an unknown
schema version or a missing key.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from nnunet_causal.errors import DatasetError

from nnunet_causal.files import atomic_path, write_json_atomic

SCHEMA_VERSION = 1
PROMPTS_SUFFIX = ".prompts.json"
EDITS_SUFFIX = ".edits.json"

#: keys of a prompt record (the reader checks them)
RECORD_KEYS = ("prompt", "label_value", "structure", "voxels_label_value", "voxel_count", "max_probability",
               "present", "presence_score", "presence_threshold", "presence_calibration", "mask_suppressed",
               "terms", "score", "resolution", "source", "trained_structures", "used_words", "ignored_words",
               "unknown_words", "corrected", "resolution_message", "explanation", "binary_mask",
               "binary_voxel_count", "voxels_changed_by_edits")
SIDECAR_KEYS = ("schema_version", "case", "edited", "prompts")
EDITS_KEYS = ("schema_version", "case", "model", "fold", "tci_weights", "edits", "applied")
NO_HEAD_NOTE = "unknown: this model has no presence head (trained without one); masks are not filtered"


def _plain(assignment) -> dict:
    return asdict(assignment) if is_dataclass(assignment) else dict(assignment)


def slug(text: str) -> str:
    """The file-name part of a prompt: lower-case ASCII words joined by ``_`` (at most 60 characters)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()[:60].strip("_") or "prompt"


def binary_mask_parts(assignments: Sequence) -> Dict[int, str]:
    """``{label value: file-name part}`` of the binary masks, unique and deterministic.

    The part is the prompt's slug; prompts whose slugs coincide all get ``__<label value>`` appended (a slug
    never contains ``__``, so the result cannot collide with another prompt's plain slug).
    """
    rows = [_plain(a) for a in assignments]
    counts = Counter(slug(a["prompt"]) for a in rows)
    return {a["label_value"]: slug(a["prompt"]) + (f"__{a['label_value']}" if counts[slug(a["prompt"])] > 1 else "")
            for a in rows}


def binary_mask_name(case: str, part: str, file_ending: str) -> str:
    return f"{case}__{part}{file_ending}"


def structure_key(assignment) -> str:
    """What a prompt grounds to; prompts with equal keys segment one structure (the same logits)."""
    a = _plain(assignment)
    if a.get("source") == "trained" and a.get("trained_structures"):
        return "trained: " + " + ".join(sorted(a["trained_structures"]))
    return "open: " + " ".join(str(a["prompt"]).lower().split())


def unknown_presence() -> dict:
    return {"present": None, "presence_score": None, "presence_threshold": None,
            "presence_calibration": NO_HEAD_NOTE}


def prompt_records(assignments: Sequence, label_map: np.ndarray, max_probability: Sequence[float],
                   presence: Optional[Sequence[Mapping]] = None, *, keep_absent_masks: bool = False,
                   binary: Optional[Mapping[int, tuple]] = None,
                   base_label_map: Optional[np.ndarray] = None) -> List[dict]:
    """One record per prompt (keys :data:`RECORD_KEYS`), from plain data only.

    ``assignments``: the grounding of each prompt (``PromptAssignment`` or its dict), ``label_map`` the case's
    label map, ``max_probability`` and ``presence`` (presence records, ``None`` for a model without a presence
    head) one per prompt, ``binary`` ``{label value: (file name, voxel count)}`` of written binary masks,
    ``base_label_map`` the label map before edits (for ``voxels_changed_by_edits``). Prompts of one structure
    get the same ``present``, ``voxel_count``, ``max_probability`` and ``voxels_label_value``: the first prompt
    of the structure that holds voxels decides.
    """
    rows = [_plain(a) for a in assignments]
    if len(max_probability) != len(rows) or (presence is not None and len(presence) != len(rows)):
        raise ValueError("one max probability and one presence record per prompt expected")
    counts = {v: int(n) for v, n in zip(*np.unique(np.asarray(label_map), return_counts=True))}
    first: Dict[str, int] = {}
    holder: Dict[str, int] = {}
    for i, a in enumerate(rows):
        key = structure_key(a)
        first.setdefault(key, i)
        if key not in holder and counts.get(a["label_value"], 0) > 0:
            holder[key] = a["label_value"]
    out = []
    for i, a in enumerate(rows):
        key = structure_key(a)
        lead = first[key]
        pres = dict(presence[lead]) if presence is not None else unknown_presence()
        value = holder.get(key, a["label_value"])
        changed = 0
        if base_label_map is not None:
            changed = int(((np.asarray(label_map) == value) != (np.asarray(base_label_map) == value)).sum())
        file, n_binary = (binary or {}).get(a["label_value"], (None, None))
        out.append({
            "prompt": a["prompt"], "label_value": a["label_value"], "structure": key, "voxels_label_value": value,
            "voxel_count": counts.get(value, 0), "max_probability": round(float(max_probability[lead]), 6),
            "present": pres["present"], "presence_score": pres["presence_score"],
            "presence_threshold": pres["presence_threshold"], "presence_calibration": pres["presence_calibration"],
            "mask_suppressed": pres["present"] is False and not keep_absent_masks,
            "terms": list(a.get("terms") or []), "score": float(a.get("score") or 0.0),
            "resolution": a.get("method", a.get("resolution")), "source": a.get("source"),
            "trained_structures": list(a.get("trained_structures") or []),
            "used_words": list(a.get("used_words") or []), "ignored_words": list(a.get("ignored_words") or []),
            "unknown_words": list(a.get("unknown_words") or []), "corrected": a.get("corrected"),
            "resolution_message": a.get("resolution_message", ""), "explanation": a.get("explanation"),
            "binary_mask": file, "binary_voxel_count": n_binary, "voxels_changed_by_edits": changed,
            **{k: v for k, v in pres.items() if k not in RECORD_KEYS}})   # e.g. the presence decision's reason
    return out


def write_case(folder, case: str, file_ending: str, *, records: Sequence[dict],
               label_map: Optional[np.ndarray] = None, write_seg: Optional[Callable[[np.ndarray, str], None]] = None,
               edited: bool = False, info: Optional[Mapping] = None, edits: Optional[Mapping] = None) -> dict:
    """Write one case: the label map (when given, through ``write_seg(array, path)``: the model's image writer
    bound to the image's properties), ``CASE.prompts.json`` and, when ``edits`` is given, ``CASE.edits.json``
    (``edits`` holds the keys of :data:`EDITS_KEYS` but ``schema_version`` and ``case``). ``info`` adds
    ``images`` / ``model`` / ``fold`` to the sidecar. Returns ``{"mask", "prompts", "edits"}`` paths (those
    written)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    missing = [k for r in records for k in RECORD_KEYS if k not in r]
    if missing:
        raise ValueError(f"prompt records lack {', '.join(sorted(set(missing)))}")
    if label_map is not None:
        if write_seg is None:
            raise ValueError("write_seg is needed to write the label map")
        paths["mask"] = out / f"{case}{file_ending}"
        dtype = np.uint8 if int(np.max(label_map, initial=0)) < 256 else np.uint16
        with atomic_path(paths["mask"]) as tmp:
            write_seg(np.asarray(label_map).astype(dtype, copy=False), tmp)
    paths["prompts"] = out / f"{case}{PROMPTS_SUFFIX}"
    sidecar = {"schema_version": SCHEMA_VERSION, "case": case, "edited": bool(edited), **dict(info or {}),
               "prompts": [dict(r) for r in records]}
    write_json_atomic(paths["prompts"], _json_ready(sidecar))
    if edits is not None:
        missing = [k for k in EDITS_KEYS[2:] if k not in edits]
        if missing:
            raise ValueError(f"edit log lacks {', '.join(missing)}")
        paths["edits"] = out / f"{case}{EDITS_SUFFIX}"
        write_json_atomic(paths["edits"], _json_ready({"schema_version": SCHEMA_VERSION, "case": case, **edits}))
    return {k: str(v) for k, v in paths.items()}


def write_binary_mask(write_seg: Callable[[np.ndarray, str], None], mask: np.ndarray, path) -> int:
    """Write one binary mask (0/1 uint8) atomically; returns its voxel count."""
    mask = np.asarray(mask).astype(np.uint8, copy=False)
    with atomic_path(path) as tmp:
        write_seg(mask, tmp)
    return int(mask.sum())


def _json_ready(obj):
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _load(path: Path, keys: Sequence[str]) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: cannot read it as JSON ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object, found {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(f"{path}: schema_version {version!r} is not supported (this version of nnunet_causal "
                           f"reads {SCHEMA_VERSION}); re-run the prediction to rewrite it")
    missing = [k for k in keys if k not in data]
    if missing:
        raise DatasetError(f"{path}: missing {', '.join(missing)}")
    return data


def read_sidecar(path) -> dict:
    """``CASE.prompts.json`` as written by :func:`write_case`; rejects unknown versions and missing keys."""
    path = Path(path)
    data = _load(path, SIDECAR_KEYS)
    if not isinstance(data["prompts"], list):
        raise DatasetError(f"{path}: 'prompts' is not a list")
    for i, rec in enumerate(data["prompts"]):
        missing = [k for k in RECORD_KEYS if not isinstance(rec, dict) or k not in rec]
        if missing:
            raise DatasetError(f"{path}: prompt {i + 1} is missing {', '.join(missing)}")
    return data


def read_edits(path) -> dict:
    """``CASE.edits.json`` as written by :func:`write_case`; rejects unknown versions and missing keys."""
    return _load(Path(path), EDITS_KEYS)


def read_case(folder, case: str) -> dict:
    """``{"prompts": sidecar, "edits": edit log or None}`` of ``case`` in ``folder``."""
    folder = Path(folder)
    edits = folder / f"{case}{EDITS_SUFFIX}"
    return {"prompts": read_sidecar(folder / f"{case}{PROMPTS_SUFFIX}"),
            "edits": read_edits(edits) if edits.is_file() else None}


def case_name(file_name: str, file_ending: str) -> str:
    """The case identifier of a channel file ``CASE_0000<ending>`` (nnU-Net's naming), else the name up to its
    first dot."""
    name = os.path.basename(file_name)
    if file_ending and name.endswith(file_ending) and len(name) > len(file_ending) + 5:
        return name[:-len(file_ending) - 5]
    return name.split(".")[0]
