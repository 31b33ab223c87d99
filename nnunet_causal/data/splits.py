"""Leave-one-domain-out cross-validation splits in nnU-Net's ``splits_final.json`` format.

nnU-Net reads ``$nnUNet_preprocessed/DatasetXXX/splits_final.json`` (a list with one
``{"train": [case ids], "val": [case ids]}`` per fold) when it exists and only creates its random 5-fold
split otherwise. Writing one fold per domain makes ``nnUNetv2_train ID CONF k`` train on all domains but
the k-th and report out-of-domain Dice in its final validation.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

from nnunet_causal.data.raw_dataset import load_domain_records, write_json_atomic
from nnunet_causal.errors import DatasetError

logger = logging.getLogger(__name__)

SPLITS_FILE = "splits_final.json"


def make_leave_one_domain_out_splits(dataset_json: Mapping, case_ids: Sequence[str], source: str = "dataset.json",
                                     key: str = "domain") -> Tuple[List[Dict[str, List[str]]], List[str]]:
    """One fold per domain: fold k validates on the k-th domain in sorted name order, trains on the rest.

    Args:
        dataset_json: dataset.json contents with a ``"domains"`` record for every case in ``case_ids``.
        case_ids: the training case identifiers (imagesTr / preprocessed cases).
        source: name used in error messages.
        key: the domain-record field that defines the domains (``"domain"``; also e.g. ``"modality"`` for
            CT -> MRI folds, ``"source"`` or ``"scanner"``).

    Returns:
        ``(splits, domains)``: ``splits[k] = {"train": sorted ids, "val": sorted ids}`` and ``domains[k]`` the
        domain fold k holds out.

    Raises:
        DatasetError: no cases, duplicate ids, a case without a domain record (named), or fewer than two
        domains (nothing to hold out).
    """
    case_ids = [str(c) for c in case_ids]
    if not case_ids:
        raise DatasetError(f"{source}: no training cases to split")
    if len(set(case_ids)) != len(case_ids):
        dup = sorted({c for c in case_ids if case_ids.count(c) > 1})
        raise DatasetError(f"{source}: duplicate case id(s) {', '.join(dup[:10])}")
    records = load_domain_records(dataset_json, case_ids, source)
    lacking = [c for c in case_ids if not str(records[c].get(key, "")).strip()]
    if lacking:
        raise DatasetError(f"{source}: the domain record(s) of {', '.join(lacking[:10])} have no '{key}' field")
    domain_of = {c: str(records[c][key]) for c in case_ids}
    domains = sorted(set(domain_of.values()))
    if len(domains) < 2:
        raise DatasetError(f"{source}: all {len(case_ids)} cases belong to the single domain '{domains[0]}'; "
                           f"leave-one-domain-out needs at least two domains")
    splits = [{"train": sorted(c for c in case_ids if domain_of[c] != d),
               "val": sorted(c for c in case_ids if domain_of[c] == d)} for d in domains]
    return splits, domains


def write_splits(preprocessed_dataset_folder, splits: Sequence[Mapping[str, Sequence[str]]]) -> Path:
    """Write ``splits`` to ``<preprocessed_dataset_folder>/splits_final.json`` atomically; return the path.

    Each fold must have non-empty ``"train"`` and ``"val"`` lists of case ids (nnU-Net's format).
    """
    folder = Path(preprocessed_dataset_folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} does not exist (run nnUNetv2_plan_and_preprocess first)")
    clean = []
    for k, fold in enumerate(splits):
        if not fold.get("train") or not fold.get("val"):
            raise DatasetError(f"fold {k} of the splits for {folder} has an empty 'train' or 'val' list")
        clean.append({"train": [str(c) for c in fold["train"]], "val": [str(c) for c in fold["val"]]})
    path = folder / SPLITS_FILE
    write_json_atomic(path, clean)
    logger.info("wrote %d folds to %s", len(clean), path)
    return path
