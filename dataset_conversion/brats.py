"""BraTS (brain tumour segmentation, multi-parametric MRI) -> nnU-Net raw with region-based labels.

Download: https://www.synapse.org/brats (BraTS 2021 Task 1 or BraTS 2023+ GLI training data; a Synapse
account is required). ``-i`` is the folder holding the case folders (or one level above it); both layouts
are recognised per case::

    BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz         labels 0, 1 NCR, 2 ED, 4 ET
    BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz  labels 0, 1 NCR, 2 ED, 3 ET

Case folders without a ``seg`` file (validation data) go to imagesTs. Channels: 0 T1, 1 T1ce, 2 T2, 3 FLAIR.
Labels are renumbered as nnU-Net's own BraTS conversion does (edema -> 1, necrotic core -> 2, enhancing
tumour -> 3) and dataset.json declares the evaluated regions, trained with sigmoid outputs:
``whole_tumor`` = {1, 2, 3}, ``tumor_core`` = {2, 3}, ``enhancing_tumor`` = {3}, ``regions_class_order``
[1, 2, 3]. All four sequences and the segmentation must share one voxel grid.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from dataset_conversion.common import (RawDatasetWriter, add_common_arguments, check_label_values,
                                       check_same_grid, nnunet_raw_root, progress, prompts_for, read_sitk,
                                       require_dir, script_main)
from nnunet_causal.errors import DatasetError

NAME = "brats"
DEFAULT_ID = 803
DATASET_NAME = "BraTS"
CHANNELS = {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
LABELS = {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing_tumor": [3]}
REGIONS_CLASS_ORDER = [1, 2, 3]
#: file suffixes of the four sequences in channel order, per release
SEQUENCES = {"brats2021": ("t1", "t1ce", "t2", "flair"), "brats2023": ("t1n", "t1c", "t2w", "t2f")}
#: source label value -> nnU-Net value, per release
RELABEL = {"brats2021": {0: 0, 1: 2, 2: 1, 4: 3}, "brats2023": {0: 0, 1: 2, 2: 1, 3: 3}}
STYLE = "multi-institutional pre-operative glioma MRI, co-registered, skull-stripped, 1 mm isotropic"


@dataclass
class BratsCase:
    case: str
    release: str
    images: List[Path]
    seg: Optional[Path]


def _file(folder: Path, stem: str) -> Optional[Path]:
    for ext in (".nii.gz", ".nii"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def _case(folder: Path) -> Optional[BratsCase]:
    name = folder.name
    release = "brats2023" if re.match(r"^BraTS-[A-Z]+-\d+-\d+$", name) else (
        "brats2021" if re.match(r"^BraTS(20\d\d)?_\d+$", name) else None)
    if release is None:
        return None
    sep = "-" if release == "brats2023" else "_"
    images = []
    for seq in SEQUENCES[release]:
        f = _file(folder, f"{name}{sep}{seq}")
        if f is None:
            raise DatasetError(f"{folder}: no {seq} file ({name}{sep}{seq}.nii.gz); a BraTS case needs "
                               f"{', '.join(SEQUENCES[release])}")
        images.append(f)
    return BratsCase(name, release, images, _file(folder, f"{name}{sep}seg"))


def scan(input_dir: Path) -> List[BratsCase]:
    """Every BraTS case folder under ``input_dir`` (or one level below it)."""
    root = require_dir(Path(input_dir), "the unpacked BraTS training data (folders BraTS2021_XXXXX or "
                                        "BraTS-GLI-XXXXX-XXX)")
    candidates = [p for p in sorted(root.iterdir()) if p.is_dir()]
    cases = [c for c in map(_case, candidates) if c is not None]
    if not cases:  # e.g. -i points at the folder that holds "TrainingData/"
        cases = [c for p in candidates for c in map(_case, sorted(q for q in p.iterdir() if q.is_dir()))
                 if c is not None]
    if not cases:
        raise DatasetError(f"{root}: no BraTS case folders (BraTS2021_XXXXX/ or BraTS-GLI-XXXXX-XXX/) found")
    return cases


def convert_case(writer: RawDatasetWriter, c: BratsCase) -> None:
    """Write the four sequences and the renumbered segmentation of one case."""
    import SimpleITK as sitk

    images = [read_sitk(p) for p in c.images]
    for img, path in zip(images[1:], c.images[1:]):
        check_same_grid(images[0], img, c.images[0], path)
    split = "Tr" if c.seg is not None else "Ts"
    for channel, img in enumerate(images):
        writer.write_nifti_image(c.case, channel, img, split=split)
    if c.seg is None:
        return
    seg = read_sitk(c.seg)
    check_same_grid(images[0], seg, c.images[0], c.seg)
    values = sitk.GetArrayFromImage(seg).astype(np.int64)
    mapping = RELABEL[c.release]
    check_label_values(values, mapping.keys(), c.seg)
    lut = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    writer.write_nifti_label(c.case, lut[values], like=images[0])


def convert(input_dir: Path, dataset_id: int = DEFAULT_ID, raw_root: Optional[Path] = None) -> Path:
    """Convert BraTS to ``$nnUNet_raw/DatasetXXX_BraTS``; return the dataset folder."""
    cases = scan(input_dir)
    domains: Dict[str, dict] = {}
    with RawDatasetWriter(nnunet_raw_root(raw_root), dataset_id, DATASET_NAME) as w:
        for c in progress(cases, "BraTS cases"):
            convert_case(w, c)
            domains[c.case] = {"domain": "brats", "source": c.release, "modality": "MRI", "style": STYLE}
        return w.finish(CHANNELS, LABELS, ".nii.gz", prompts=prompts_for(n for n in LABELS if n != "background"),
                        domains=domains, imaging_family="mri", regions_class_order=REGIONS_CLASS_ORDER,
                        description="BraTS glioma MRI: whole tumour, tumour core, enhancing tumour (regions)",
                        reference="https://www.synapse.org/brats")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    add_common_arguments(p, DEFAULT_ID)


def run(args: argparse.Namespace) -> Path:
    return convert(args.input, args.dataset_id, args.raw_root)


def main(argv=None) -> int:
    return script_main(add_arguments, run, argv, prog="python -m dataset_conversion.brats")


if __name__ == "__main__":
    raise SystemExit(main())
