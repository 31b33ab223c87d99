"""BraTS (brain tumour segmentation, multi-parametric MRI) -> nnU-Net raw with region-based labels.

Download: https://www.synapse.org/brats (BraTS 2021 Task 1, or the BraTS 2023+ adult glioma "GLI" /
BraTS-Africa "SSA" training data; a Synapse account is required). ``-i`` is the folder holding the case
folders, or the folder one level above it (e.g. holding ``TrainingData/``). The layout is recognised per
case folder::

    BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz         labels 0, 1 NCR, 2 ED, 4 ET
    BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz  labels 0, 1 NCR, 2 ED, 3 ET

(NCR necrotic tumour core, ED peritumoural edema, ET enhancing tumour.) Case folders without a ``seg``
file (validation data) go to imagesTs. The case id is the folder name. Channels: 0 T1 (t1 / t1n),
1 T1ce (t1ce / t1c), 2 T2 (t2 / t2w), 3 FLAIR (flair / t2f).

Labels are renumbered as nnU-Net's own BraTS conversion (Dataset137_BraTS21) does: edema -> 1, necrotic
core -> 2, enhancing tumour -> 3; any other value is an error naming the segmentation file. dataset.json
declares the evaluated regions, trained with sigmoid outputs: ``whole_tumor`` = [1, 2, 3], ``tumor_core``
= [2, 3], ``enhancing_tumor`` = [3], ``regions_class_order`` [1, 2, 3]. All four sequences and the
segmentation must share one voxel grid; geometry is kept as is.

Other BraTS 2023+ cohorts (PED, MEN, MET, post-treatment GLI 2024 with a resection-cavity label) number
their labels differently or segment other tumours; they are rejected rather than silently mislabelled.
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
#: source label value -> nnU-Net value, per release (edema 1, necrotic core 2, enhancing 3)
RELABEL = {"brats2021": {0: 0, 1: 2, 2: 1, 4: 3}, "brats2023": {0: 0, 1: 2, 2: 1, 3: 3}}
STYLE = "multi-institutional pre-operative glioma MRI, skull-stripped, 1 mm isotropic"
#: BraTS 2023+ cohorts with the adult-glioma label convention, and the site their name encodes (if any)
COHORTS = {"GLI": None, "SSA": "Sub-Saharan Africa (BraTS-Africa)"}
_CASE_2021 = re.compile(r"^BraTS(20\d\d)?_\d+$")
_CASE_2023 = re.compile(r"^BraTS-([A-Za-z]+)-\d+-\d+$")


@dataclass
class BratsCase:
    """One case folder: its id, release, the four sequence files in channel order and the segmentation."""

    case: str
    release: str  # "brats2021" | "brats2023"
    images: List[Path]
    seg: Optional[Path]
    cohort: Optional[str] = None  # BraTS 2023+: GLI, SSA


def _file(folder: Path, stem: str) -> Optional[Path]:
    for ext in (".nii.gz", ".nii"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def _release_of(folder: Path) -> Optional[tuple]:
    """``(release, cohort)`` when the folder name is a BraTS case id, else ``None``."""
    if _CASE_2021.match(folder.name):
        return "brats2021", None
    m = _CASE_2023.match(folder.name)
    if m is None:
        return None
    cohort = m.group(1).upper()
    if cohort not in COHORTS:
        raise DatasetError(f"{folder}: BraTS cohort '{cohort}' is not supported (its labels differ from the "
                           f"adult glioma convention); supported: {', '.join(COHORTS)} and BraTS 2021")
    return "brats2023", cohort


def read_case_folder(folder: Path) -> Optional[BratsCase]:
    """The :class:`BratsCase` of a case folder (``None`` for a folder that is not one); a missing sequence
    file is an error naming the folder."""
    found = _release_of(folder)
    if found is None:
        return None
    release, cohort = found
    sep = "-" if release == "brats2023" else "_"
    images = []
    for seq in SEQUENCES[release]:
        f = _file(folder, f"{folder.name}{sep}{seq}")
        if f is None:
            raise DatasetError(f"{folder}: no {seq} file ({folder.name}{sep}{seq}.nii.gz); a BraTS case needs "
                               f"{', '.join(SEQUENCES[release])}")
        images.append(f)
    return BratsCase(folder.name, release, images, _file(folder, f"{folder.name}{sep}seg"), cohort)


def _cases_in(folder: Path) -> List[BratsCase]:
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [c for c in map(read_case_folder, subfolders) if c is not None]


def scan(input_dir: Path) -> List[BratsCase]:
    """Every BraTS case folder under ``input_dir`` (or one level below it, e.g. ``TrainingData/``)."""
    root = require_dir(Path(input_dir), "the unpacked BraTS training data (folders BraTS2021_XXXXX or "
                                        "BraTS-GLI-XXXXX-XXX)")
    cases = _cases_in(root)
    if not cases:
        cases = [c for sub in sorted(p for p in root.iterdir() if p.is_dir()) for c in _cases_in(sub)]
    if not cases:
        raise DatasetError(f"{root}: no BraTS case folders (BraTS2021_XXXXX/ or BraTS-GLI-XXXXX-XXX/) found here "
                           f"or one level below")
    ids = [c.case for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DatasetError(f"{root}: case folder(s) {duplicates[:5]} occur more than once")
    return cases


def _read_volume(path: Path):
    image = read_sitk(path)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DatasetError(f"{path}: expected a single-channel 3D volume, got {image.GetDimension()}D with "
                           f"{image.GetNumberOfComponentsPerPixel()} component(s)")
    return image


def convert_segmentation(values: np.ndarray, release: str, path: Path) -> np.ndarray:
    """BraTS label values of ``release`` -> nnU-Net's (edema 1, necrotic core 2, enhancing 3), uint8."""
    if not np.all(np.isfinite(values)) or not np.all(np.mod(values, 1) == 0):
        raise DatasetError(f"{path}: segmentation values must be whole numbers")
    values = values.astype(np.int64)
    mapping = RELABEL[release]
    check_label_values(values, mapping.keys(), path)
    lut = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut[values]


def convert_case(writer: RawDatasetWriter, c: BratsCase) -> None:
    """Write the four sequences (channels 0-3) and the renumbered segmentation of one case."""
    import SimpleITK as sitk

    images = [_read_volume(p) for p in c.images]
    for img, path in zip(images[1:], c.images[1:]):
        check_same_grid(images[0], img, c.images[0], path)
    seg = None
    if c.seg is not None:
        seg = _read_volume(c.seg)
        check_same_grid(images[0], seg, c.images[0], c.seg)
        seg = convert_segmentation(sitk.GetArrayFromImage(seg), c.release, c.seg)
    split = "Tr" if seg is not None else "Ts"
    for channel, img in enumerate(images):
        writer.write_nifti_image(c.case, channel, img, split=split)
    if seg is not None:
        writer.write_nifti_label(c.case, seg, like=images[0])


def domain_record(c: BratsCase) -> dict:
    """Domain record of a case (``site`` only where the case name encodes one: BraTS-Africa)."""
    record = {"domain": "brats", "source": c.release, "modality": "MRI", "style": STYLE}
    if c.cohort and COHORTS.get(c.cohort):
        record["site"] = COHORTS[c.cohort]
    return record


def convert(input_dir: Path, dataset_id: int = DEFAULT_ID, raw_root: Optional[Path] = None) -> Path:
    """Convert BraTS to ``$nnUNet_raw/DatasetXXX_BraTS``; return the dataset folder."""
    cases = scan(input_dir)
    domains: Dict[str, dict] = {}
    with RawDatasetWriter(nnunet_raw_root(raw_root), dataset_id, DATASET_NAME) as w:
        for c in progress(cases, "BraTS cases"):
            convert_case(w, c)
            domains[c.case] = domain_record(c)
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
