"""Abdomen composite: BTCV + AMOS22 + CHAOS in one 3D dataset with harmonised canonical organ labels.

For cross-dataset and CT -> MRI generalisation (Causal-SAM-LLM's protocol). ``-i`` is a folder holding the
unpacked downloads, found by folder name (case-insensitive)::

    RAW/BTCV/RawData/...          (name contains "btcv", "rawdata" or "abdomen")
    RAW/amos22/...                (name contains "amos")
    RAW/CHAOS_Train_Sets/...      (name contains "chaos" or "train_sets")

or give each explicitly with ``--btcv``, ``--amos``, ``--chaos`` (layouts: ``nnunet_causal convert
btcv|amos|chaos --help``). At least two sources are needed.

Labels are the union of the sources' structures under canonical names: 1 spleen, 2 kidney_right,
3 kidney_left, 4 gallbladder, 5 esophagus, 6 liver, 7 stomach, 8 aorta, 9 inferior_vena_cava,
10 portal_vein_and_splenic_vein, 11 pancreas, 12 adrenal_gland_right, 13 adrenal_gland_left, 14 duodenum,
15 urinary_bladder, 16 prostate_or_uterus.

Unlabelled structures: partial-label handling, not the ignore label. A source that does not annotate a
structure (BTCV has no duodenum, AMOS no portal/splenic vein, CHAOS MR only liver, kidneys and spleen,
CHAOS CT only the liver) leaves its voxels at 0; dataset.json's ``partial_labels`` lists, per case, the
structures that ARE labelled, and the text trainers drop the loss of every other structure for that case
(0 is then "background or not annotated"). nnU-Net's ignore label was not used because it removes a voxel
from the loss of every class at once: marking all unannotated voxels "ignore" would also remove the
background supervision of the structures that are annotated.

Domain records carry ``domain`` = the source dataset (``btcv``/``amos``/``chaos``), ``modality`` (CT/MRI),
``scanner`` where the source says; ``nnunet_causal make-splits -d ID --leave-one-domain-out --by modality``
makes CT -> MRI folds, ``--by domain`` (default) cross-dataset folds. With MRI present the channel is
``CT_or_MRI`` (per-image z-score; CT windowing would be wrong for MRI).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from dataset_conversion import amos, btcv
from dataset_conversion.common import (RawDatasetWriter, add_common_arguments, convert_nifti_case, locate_downloads,
                                       nnunet_raw_root, progress, prompts_for, script_main)
from nnunet_causal.errors import DatasetError

logger = logging.getLogger(__name__)

NAME = "abdomen-composite"
DEFAULT_ID = 808
DATASET_NAME = "AbdomenComposite"
LABELS: Dict[str, int] = {
    "background": 0, "spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "esophagus": 5,
    "liver": 6, "stomach": 7, "aorta": 8, "inferior_vena_cava": 9, "portal_vein_and_splenic_vein": 10,
    "pancreas": 11, "adrenal_gland_right": 12, "adrenal_gland_left": 13, "duodenum": 14, "urinary_bladder": 15,
    "prostate_or_uterus": 16,
}
FOLDER_HINTS = {"btcv": ("btcv", "rawdata", "abdomen"), "amos": ("amos",), "chaos": ("chaos", "train_sets")}
SOURCE_NAMES = ("btcv", "amos", "chaos")


def source_label_map(source_labels: Dict[str, int]) -> Dict[int, int]:
    """Source value -> composite value, by canonical name (every source name must be a composite label)."""
    unknown = [n for n in source_labels if n not in LABELS]
    if unknown:
        raise DatasetError(f"internal: labels {unknown} have no place in the abdomen composite")
    return {v: LABELS[n] for n, v in source_labels.items()}


def locate_sources(input_dir: Optional[Path], explicit: Dict[str, Optional[Path]]) -> Dict[str, Path]:
    """``{source: folder}`` from explicit paths and folder names under ``input_dir``."""
    return locate_downloads(input_dir, explicit, FOLDER_HINTS, "abdomen")


def _names(values: np.ndarray) -> List[str]:
    inverse = {v: k for k, v in LABELS.items()}
    return [inverse[int(v)] for v in values if int(v) != 0]


def convert(input_dir: Optional[Path], dataset_id: int = DEFAULT_ID, raw_root: Optional[Path] = None,
            modality: str = "both", btcv_dir: Optional[Path] = None, amos_dir: Optional[Path] = None,
            chaos_dir: Optional[Path] = None) -> Path:
    """Convert the located sources into ``$nnUNet_raw/DatasetXXX_AbdomenComposite``."""
    if modality not in ("ct", "mri", "both"):
        raise DatasetError(f"--modality must be ct, mri or both, got '{modality}'")
    folders = locate_sources(input_dir, {"btcv": btcv_dir, "amos": amos_dir, "chaos": chaos_dir})
    # scan everything before writing anything
    scanned = {}
    if "btcv" in folders and modality != "mri":
        scanned["btcv"] = btcv.scan(folders["btcv"])
    if "amos" in folders:
        scanned["amos"] = amos.scan(folders["amos"], modality)
    if "chaos" in folders:
        from dataset_conversion import chaos
        scanned["chaos"] = chaos.scan(folders["chaos"], modality)
    if len(scanned) < 2 and modality != "mri":
        raise DatasetError(f"fewer than two sources hold {modality} cases: {sorted(scanned)}")

    domains, partial = {}, {}
    any_mri = False
    with RawDatasetWriter(nnunet_raw_root(raw_root), dataset_id, DATASET_NAME) as w:
        if "btcv" in scanned:
            lut = source_label_map(btcv.LABELS)
            for split in ("Tr", "Ts"):
                for case, img, lbl in progress(scanned["btcv"][split], f"BTCV images{split}"):
                    convert_nifti_case(w, case, img, lbl, lut, split=split)
                    domains[case] = btcv.domain_record(case)
                    if lbl is not None:
                        partial[case] = [n for n in btcv.LABELS if n != "background"]
        if "amos" in scanned:
            lut = source_label_map(amos.LABELS)
            meta = amos.read_metadata(folders["amos"])
            for split in ("Tr", "Ts"):
                for case, number, img, lbl in progress(scanned["amos"][split], f"AMOS images{split}"):
                    convert_nifti_case(w, case, img, lbl, lut, split=split)
                    mod = amos.modality_of(number)
                    any_mri |= mod == "MRI"
                    domains[case] = {"domain": "amos", "source": "amos", "modality": mod,
                                     "style": amos.STYLES[mod], **meta.get(number, {})}
                    if lbl is not None:
                        partial[case] = [n for n in amos.LABELS if n != "background"]
        if "chaos" in scanned:
            from dataset_conversion import chaos
            lut_map = source_label_map(chaos.LABELS)
            lut = np.zeros(max(lut_map) + 1, dtype=np.uint8)
            for src, dst in lut_map.items():
                lut[src] = dst
            for series in progress(scanned["chaos"], "CHAOS series"):
                image, label = chaos.read_series(series)
                w.write_nifti_image(series.case, 0, image, split=series.split)
                record = dict(chaos.domain_record(series, image), domain="chaos")
                any_mri |= record["modality"] == "MRI"
                domains[series.case] = record
                if label is not None:
                    w.write_nifti_label(series.case, lut[label], like=image, split=series.split)
                    partial[series.case] = list(chaos.labelled_structures(series))
        return w.finish({"0": "CT_or_MRI" if any_mri else "CT"}, LABELS, ".nii.gz",
                        prompts=prompts_for(n for n in LABELS if n != "background"), domains=domains,
                        imaging_family="mri" if modality == "mri" else "ct",
                        partial_labels=partial,
                        description="BTCV + AMOS22 + CHAOS with harmonised organ labels; 'partial_labels' lists "
                                    "the structures annotated in each case",
                        sources={n: str(p) for n, p in folders.items()})


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    add_common_arguments(p, DEFAULT_ID, composite=True)
    p.add_argument("--btcv", type=Path, help="the unpacked BTCV download (RawData or its parent)")
    p.add_argument("--amos", type=Path, help="the unpacked AMOS22 folder")
    p.add_argument("--chaos", type=Path, help="the unpacked CHAOS training set")
    p.add_argument("--modality", choices=("ct", "mri", "both"), default="both",
                   help="keep CT cases, MRI cases or both (default)")


def run(args: argparse.Namespace) -> Path:
    return convert(args.input, args.dataset_id, args.raw_root, args.modality, args.btcv, args.amos, args.chaos)


def main(argv=None) -> int:
    return script_main(add_arguments, run, argv, prog="python -m dataset_conversion.abdomen_composite")


if __name__ == "__main__":
    raise SystemExit(main())
