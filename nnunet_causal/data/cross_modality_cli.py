"""``nnunet_causal cross-modality``: declare a raw dataset for cross-modality training (dataset.json, in place)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from nnunet_causal.data.cross_modality import declare_cross_modality
from nnunet_causal.errors import DatasetError
from nnunet_causal.files import write_json_atomic

logger = logging.getLogger(__name__)


def declare_dataset_folder(folder) -> dict:
    """Rewrite ``folder/dataset.json`` with the cross-modality declaration (temp file + rename); returns it.
    A dataset already declared is left as it is (a hand-written declaration with a ``"CT"`` channel gets it
    renamed)."""
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        raise DatasetError(f"{path} does not exist (give the raw dataset folder, $nnUNet_raw/DatasetXXX_Name)")
    try:
        dj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    if not isinstance(dj, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    declared = declare_cross_modality(dj)
    if declared == dj:
        logger.info("%s already declares cross-modality training; unchanged", path)
        return dj
    write_json_atomic(path, declared)
    logger.info("%s: channel names %s -> %s, imaging family %s, counterfactual recipe %s; now run "
                "nnUNetv2_plan_and_preprocess", path, dj.get("channel_names"), declared["channel_names"],
                declared.get("imaging_family", "(from the channel names)"), declared["counterfactual_recipe"])
    return declared


def run_cross_modality(args) -> int:
    declare_dataset_folder(args.folder)
    return 0


def add_parser(subparsers) -> None:
    """Register ``cross-modality`` on an argparse sub-parser collection."""
    p = subparsers.add_parser(
        "cross-modality", help="declare a raw dataset for training on one modality and segmenting another",
        description="Rewrite DATASET/dataset.json for cross-modality training (e.g. train on CT, segment MR): CT "
                    "channels are renamed 'zscore' so that nnU-Net z-scores every image by itself instead of "
                    "clipping it into the CT training set's HU window, the imaging family (confounder dictionary "
                    "with its [modality] group) is kept, and the cross-modality counterfactual recipe is added. "
                    "Run it before nnUNetv2_plan_and_preprocess (docs/cross_modality.md).",
        epilog="Example:\n  nnunet_causal cross-modality $nnUNet_raw/Dataset500_AbdomenCT\n"
               "  nnUNetv2_plan_and_preprocess -d 500 -c 3d_fullres\n"
               "  nnUNetv2_train 500 3d_fullres 0 -tr nnUNetTrainerCausalText",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="raw dataset folder holding dataset.json")
    p.set_defaults(func=run_cross_modality)
