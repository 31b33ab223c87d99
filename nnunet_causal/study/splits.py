"""The study's leave-one-domain-out folds in nnU-Net's ``splits_final.json``, without clobbering a user's folds.

``nnUNetv2_train DATASET CONF k`` trains on ``splits[k]["train"]`` and validates on ``splits[k]["val"]`` for any
``k`` the file holds (nnU-Net's custom fold numbers). The study needs, for every domain ``d`` (values of the
``split_by`` field), the fold that validates on exactly the cases of ``d`` and trains on all others. Choice:

* no ``splits_final.json`` yet: write the folds in sorted domain order (fold k holds out the k-th domain), as
  ``nnunet_causal make-splits --leave-one-domain-out`` does;
* a file that already holds such a fold (same train and val case sets, in any position): use its number;
* the others are appended after the existing folds; the existing folds keep their numbers and contents, the
  previous file is kept beside it as ``splits_final.json.bak-<time>`` and the log says so.

So a user's 5-fold cross-validation (folds 0-4) stays valid and the study trains folds 5, 6, ...; nothing is
ever rewritten in place without a backup.
"""
from __future__ import annotations

import shutil
from datetime import datetime
from typing import Dict, List, Mapping, Sequence, Tuple

from nnunet_causal.data.splits import SPLITS_FILE, make_leave_one_domain_out_splits, write_splits
from nnunet_causal.errors import DatasetError
from nnunet_causal.study.checks import StudyContext
from nnunet_causal.study.config import StudyError
from nnunet_causal.study.paths import read_json
from nnunet_causal.study.state import StudyLog


def _wanted_folds(ctx: StudyContext) -> Tuple[List[Dict[str, List[str]]], List[str]]:
    try:
        return make_leave_one_domain_out_splits(ctx.dataset.dataset_json, sorted(ctx.dataset.domain_of),
                                                ctx.config.source, key=ctx.config.split_by)
    except DatasetError as e:
        raise StudyError(str(e)) from e


def _existing_folds(ctx: StudyContext) -> List[dict]:
    path = ctx.dataset.preprocessed / SPLITS_FILE
    if not path.is_file():
        return []
    splits = read_json(path)
    if not isinstance(splits, list) or not all(
            isinstance(f, Mapping) and isinstance(f.get("train"), list) and isinstance(f.get("val"), list)
            for f in splits):
        raise StudyError(f"{path} is not in nnU-Net's format (a list of {{'train': [...], 'val': [...]}} folds); "
                         f"fix or move it away")
    return list(splits)


def _same(fold: Mapping, wanted: Mapping) -> bool:
    return set(map(str, fold["train"])) == set(wanted["train"]) and set(map(str, fold["val"])) == set(wanted["val"])


def assign_folds(existing: Sequence[Mapping], wanted: Sequence[Mapping], domains: Sequence[str]
                 ) -> Tuple[Dict[str, int], List[Mapping]]:
    """``({domain: fold number}, folds to append)``: an existing identical fold is reused, the others get the
    numbers after the last existing fold, in ``domains`` order."""
    folds, appended = {}, []
    for domain, fold in zip(domains, wanted):
        match = next((k for k, f in enumerate(existing) if _same(f, fold)), None)
        if match is None:
            match = len(existing) + len(appended)
            appended.append(fold)
        folds[domain] = match
    return folds, appended


def study_folds(ctx: StudyContext, log: StudyLog, write: bool = True) -> Dict[str, int]:
    """``{domain: fold}`` of the study, writing or extending ``splits_final.json`` when ``write`` (see module)."""
    wanted, domains = _wanted_folds(ctx)
    existing = _existing_folds(ctx)
    folds, appended = assign_folds(existing, wanted, domains)
    path = ctx.dataset.preprocessed / SPLITS_FILE
    text = ", ".join(f"fold {k} holds out '{d}'" for d, k in folds.items())
    if not appended:
        log.info("%s already holds the leave-one-domain-out folds by '%s': %s", path, ctx.config.split_by, text)
        return folds
    if not write:
        log.info("would %s %s: %s", "append to" if existing else "write", path, text)
        return folds
    if not existing:
        write_splits(ctx.dataset.preprocessed, list(appended))
        log.info("wrote leave-one-domain-out splits by '%s' to %s: %s", ctx.config.split_by, path, text)
        return folds
    backup = path.with_name(f"{SPLITS_FILE}.bak-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    shutil.copy2(path, backup)
    write_splits(ctx.dataset.preprocessed, list(existing) + list(appended))
    first, last = len(existing), len(existing) + len(appended) - 1
    log.info("%s held %d fold(s); they are kept unchanged and the study's missing folds appended as fold(s) "
             "%d-%d (nnU-Net's custom fold numbers): %s. The previous file is kept as %s",
             path, len(existing), first, last, text, backup)
    return folds
