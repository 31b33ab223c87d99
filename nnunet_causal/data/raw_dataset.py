"""Helpers to write nnU-Net v2 raw datasets (``$nnUNet_raw/DatasetXXX_Name``) with prompts and domains.

On-disk contract (all extra keys are kept by nnU-Net, which copies dataset.json to the preprocessed and
results folders):

``dataset.json``
    Stock keys (``channel_names``, ``labels``, ``numTraining``, ``file_ending``) plus

    * ``"prompts"``: ``{label_name: [prompt, synonym, ...]}`` -- texts that name each foreground label.
      Optional; without it label names are turned into text (``kidney_left`` -> ``"left kidney"``).
    * ``"domains"``: ``{case_id: DomainRecord}`` -- one record per case of imagesTr (and imagesTs where
      known). A record is a dict with at least ``"domain"`` (the grouping key used for
      leave-one-domain-out splits), ``"modality"`` and ``"style"`` (a short text description of the
      imaging style), and optionally ``"site"``, ``"scanner"``, ``"source"`` (dataset of origin).
    * ``"imaging_family"``: ``"ct" | "mri" | "endoscopy"`` -- optional, picks the confounder dictionary.
    * ``"text_encoder"``: optional text-encoder spec (see :mod:`nnunet_causal.text.encoders`).

Every file is written to a temporary name in the destination folder, flushed and renamed into place
(:mod:`nnunet_causal.files`, whose helpers this module re-exports for its callers), so an interrupted
conversion never leaves a half-written file under its final name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional

from nnunet_causal.errors import DatasetError
from nnunet_causal.files import atomic_path, make_temp_dir, make_temp_file, write_json_atomic  # noqa: F401 (re-export)

REQUIRED_DOMAIN_KEYS = ("domain", "modality", "style")


def validate_prompts(prompts: Mapping[str, Iterable[str]], labels: Mapping[str, object],
                     source: str = "dataset.json") -> Dict[str, List[str]]:
    """Check a ``prompts`` mapping against ``labels``; return it with lists of stripped strings.

    Raises :class:`DatasetError` naming ``source`` for a prompt of an unknown label, the background, an
    empty list or an empty string.
    """
    out: Dict[str, List[str]] = {}
    for name, texts in prompts.items():
        if name not in labels:
            raise DatasetError(f"{source}: 'prompts' has an entry for label '{name}', which is not in "
                               f"'labels' (known labels: {', '.join(map(str, labels))})")
        if name == "background" or name == "ignore":
            raise DatasetError(f"{source}: 'prompts' must not describe '{name}'")
        if isinstance(texts, str):
            texts = [texts]
        cleaned = [str(t).strip() for t in texts]
        if not cleaned or any(not t for t in cleaned):
            raise DatasetError(f"{source}: 'prompts' for label '{name}' contains an empty prompt")
        out[name] = cleaned
    return out


def validate_domain_record(case_id: str, record: Mapping, source: str = "dataset.json") -> dict:
    """Return ``record`` as a dict after checking the required keys (:data:`REQUIRED_DOMAIN_KEYS`)."""
    if not isinstance(record, Mapping):
        raise DatasetError(f"{source}: domain record of case '{case_id}' must be an object, got {record!r}")
    missing = [k for k in REQUIRED_DOMAIN_KEYS if not str(record.get(k, "")).strip()]
    if missing:
        raise DatasetError(f"{source}: domain record of case '{case_id}' lacks {', '.join(missing)}")
    return dict(record)


def write_dataset_json(output_folder: os.PathLike | str, channel_names: Mapping, labels: Mapping,
                       num_training_cases: int, file_ending: str, *,
                       prompts: Optional[Mapping[str, Iterable[str]]] = None,
                       domains: Optional[Mapping[str, Mapping]] = None,
                       dataset_name: Optional[str] = None, description: Optional[str] = None,
                       **extra) -> dict:
    """Write ``dataset.json`` for an nnU-Net raw dataset (stock keys plus ``prompts`` and ``domains``).

    Label values may be ints or, for region-based datasets such as BraTS, lists of ints, exactly as
    nnU-Net's own ``generate_dataset_json`` accepts them. Returns the written dict.
    """
    dj = {
        "channel_names": {str(k): v for k, v in channel_names.items()},
        "labels": dict(labels),
        "numTraining": int(num_training_cases),
        "file_ending": file_ending,
    }
    if dataset_name is not None:
        dj["name"] = dataset_name
    if description is not None:
        dj["description"] = description
    if prompts is not None:
        dj["prompts"] = validate_prompts(prompts, labels, source=str(Path(output_folder) / "dataset.json"))
    if domains is not None:
        dj["domains"] = {str(c): validate_domain_record(c, r) for c, r in domains.items()}
    dj.update(extra)
    write_json_atomic(Path(output_folder) / "dataset.json", dj)
    return dj


def load_domain_records(dataset_json: Mapping, case_ids: Optional[Iterable[str]] = None,
                        source: str = "dataset.json") -> Dict[str, dict]:
    """Return ``{case_id: record}`` from dataset.json's ``"domains"``.

    With ``case_ids``, every listed case must have a record; a missing one raises :class:`DatasetError`
    naming the case (there is no silent fallback: add the record, or use a single-domain dataset).
    """
    records = dataset_json.get("domains")
    if records is None:
        raise DatasetError(f"{source} has no 'domains' key: add one record per case "
                           f"({{case_id: {{'domain': ..., 'modality': ..., 'style': ...}}}})")
    out = {str(k): validate_domain_record(k, v, source) for k, v in records.items()}
    if case_ids is not None:
        missing = [c for c in case_ids if c not in out]
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise DatasetError(f"{source}: no domain record for case(s) {shown}")
    return out
