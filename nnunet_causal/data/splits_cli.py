"""``nnunet_causal make-splits``: write nnU-Net's splits_final.json from the per-case domain records."""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import List

from nnunet_causal.data.splits import make_leave_one_domain_out_splits, write_splits
from nnunet_causal.errors import DatasetError

logger = logging.getLogger(__name__)


def _require_env(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        raise DatasetError(f"the environment variable {name} is not set (run eval \"$(nnunet_causal env)\" or "
                           f"export it)")
    return Path(value)


def resolve_dataset_name(dataset: str) -> str:
    """``"990"`` or ``"Dataset990_X"`` -> ``"Dataset990_X"`` via nnU-Net's ``maybe_convert_to_dataset_name``."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return maybe_convert_to_dataset_name(dataset)
    except (RuntimeError, ValueError) as e:
        raise DatasetError(f"dataset '{dataset}' not found: {e}") from e


def training_case_ids(preprocessed_folder: Path, raw_folder: Path, dataset_json: dict) -> List[str]:
    """Training case ids: from the preprocessed data folders (one ``CASE.pkl`` per case, as nnU-Net's
    trainer sees them) if any exist, else from the raw dataset (``imagesTr`` or dataset.json's ``"dataset"``)."""
    from nnunetv2.utilities.utils import get_identifiers_from_splitted_dataset_folder

    found = set()
    if preprocessed_folder.is_dir():
        for sub in sorted(p for p in preprocessed_folder.iterdir() if p.is_dir()):
            ids = {f.name[:-4] for f in sub.iterdir() if f.name.endswith(".pkl")}
            if found and ids and ids != found:
                logger.warning("preprocessed folders disagree on the case list (%s has %d cases, others %d); "
                               "using the union", sub.name, len(ids), len(found))
            found |= ids
    if found:
        return sorted(found)
    if "dataset" in dataset_json:
        return sorted(dataset_json["dataset"])
    images = raw_folder / "imagesTr"
    if not images.is_dir():
        raise DatasetError(f"no preprocessed cases in {preprocessed_folder} and no raw images in {images}")
    ids = [str(i) for i in get_identifiers_from_splitted_dataset_folder(str(images), dataset_json["file_ending"])]
    if not ids:
        raise DatasetError(f"{images} holds no '*_0000{dataset_json['file_ending']}' images")
    return sorted(ids)


def run_make_splits(args) -> int:
    """Write splits_final.json for the dataset named by ``args.dataset`` and print the fold table."""
    if not args.leave_one_domain_out:
        raise DatasetError("choose a split scheme: --leave-one-domain-out")
    preprocessed_root = _require_env("nnUNet_preprocessed")
    name = resolve_dataset_name(args.dataset)
    pre = preprocessed_root / name
    dj_path = pre / "dataset.json"
    if not dj_path.is_file():
        raise DatasetError(f"{dj_path} does not exist: run nnUNetv2_plan_and_preprocess -d {args.dataset} first")
    try:
        dataset_json = json.loads(dj_path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{dj_path} is not valid JSON: {e}") from e
    raw_root = os.environ.get("nnUNet_raw")
    raw = Path(raw_root) / name if raw_root else Path("<nnUNet_raw unset>")
    cases = training_case_ids(pre, raw, dataset_json)
    splits, domains = make_leave_one_domain_out_splits(dataset_json, cases, str(dj_path), key=args.by)
    path = write_splits(pre, splits)
    for k, (domain, fold) in enumerate(zip(domains, splits)):
        what = "domain" if args.by == "domain" else args.by
        print(f"fold {k}: holds out {what} '{domain}' ({len(fold['val'])} validation / {len(fold['train'])} "
              f"training cases)")
    print(f"wrote {path}")
    return 0


def add_parser(subparsers) -> None:
    """Register ``make-splits`` on an argparse sub-parser collection."""
    p = subparsers.add_parser(
        "make-splits", help="write splits_final.json with one fold per held-out domain",
        description="Write nnU-Net's splits_final.json into $nnUNet_preprocessed/DatasetXXX so that fold k "
                    "validates on domain k (domains sorted by name, from dataset.json's 'domains' records) and "
                    "trains on all other domains; nnU-Net's final validation then reports out-of-domain Dice. "
                    "Run it after nnUNetv2_plan_and_preprocess.",
        epilog="Example:\n  nnunet_causal make-splits -d 990 --leave-one-domain-out\n"
               "  nnUNetv2_train 990 2d 3 -tr nnUNetTrainerCausalText   # fold 3 holds out the 4th domain",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", dest="dataset", required=True, help="dataset name or id (e.g. 990 or Dataset990_Synth)")
    p.add_argument("--leave-one-domain-out", action="store_true", help="one fold per domain (required)")
    p.add_argument("--by", default="domain", metavar="FIELD",
                   help="domain-record field that defines the domains (default: domain; e.g. modality for "
                        "CT -> MRI folds, source, scanner)")
    p.set_defaults(func=run_make_splits)
