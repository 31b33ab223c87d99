"""CHAOS (Combined CT-MR Healthy Abdominal Organ Segmentation) -> nnU-Net raw, one case per DICOM series.

Download: https://chaos.grand-challenge.org/ (Zenodo record 3431873: CHAOS_Train_Sets.zip,
CHAOS_Test_Sets.zip). ``-i`` is ``CHAOS_Train_Sets``, ``Train_Sets`` or a folder holding them; a
``Test_Sets`` folder (from CHAOS_Test_Sets.zip, no ``Ground`` masks) beside ``Train_Sets`` or under ``-i``
is converted to imagesTs::

    Train_Sets/CT/<patient>/DICOM_anon/i0000,0000b.dcm ...   Train_Sets/CT/<patient>/Ground/liver_GT_000.png ...
    Train_Sets/MR/<patient>/T1DUAL/DICOM_anon/InPhase/*.dcm, .../OutPhase/*.dcm   T1DUAL/Ground/*.png
    Train_Sets/MR/<patient>/T2SPIR/DICOM_anon/*.dcm                                T2SPIR/Ground/*.png

Masks. MR mask grey values are read as ranges: 55-70 liver (nominally 63), 110-135 right kidney (126),
175-200 left kidney (189), 240-255 spleen (252), 0 background; any other value is an error naming the PNG.
CT masks: 0 background, >= 128 liver; 1..127 is an error. One ``T1DUAL/Ground`` folder serves both the
in-phase and the out-phase series (they are acquired together).

Slices and masks. Following the CHAOS convention (its evaluation code pairs files by name, not by DICOM
position), mask i belongs to DICOM file i in file-name order (natural order: numbers compare as numbers),
and the masks lie in the DICOM pixel grid: mask pixel (row r, column c) = ``pixel_array[r, c]``. The files of
a series folder are then read as one volume by :mod:`nnunet_causal.formats.dicom_series` -- slices ordered
along the slice normal (so the volume never depends on how the files are named; the CHAOS CT files run head
to feet), its grid from ``PixelSpacing`` / ``ImagePositionPatient`` / ``ImageOrientationPatient``, rescale
applied (CT in Hounsfield units), and its refusals (mixed orientation, size or spacing, gantry tilt,
duplicate or missing slices), each naming the series and file -- and every mask follows its slice. The
number of masks must equal the number of DICOM slices.

Cases: ``CHAOS_CT_<p>``, ``CHAOS_T1in_<p>``, ``CHAOS_T1out_<p>``, ``CHAOS_T2_<p>`` (p = patient number, two
digits), single channel (``CT``, ``MRI`` or, with ``--modality both``, ``CT_or_MRI`` so that nnU-Net
z-scores every image). Labels: 1 liver, 2 kidney_right, 3 kidney_left, 4 spleen. With ``--modality both``,
CT cases annotate the liver only and are listed in dataset.json's ``partial_labels``; with ``ct`` the
dataset has the liver label only.

Patients. The T1 in-phase, T1 out-phase and T2-SPIR cases of one MR patient show the same anatomy (the two
T1 phases even share their masks): every domain record carries ``patient`` so that splits can keep a
patient's cases together (a random case-level split would leak anatomy between folds). CT and MR
patients are numbered independently in CHAOS, so records also carry ``subject`` (``chaos_ct_01``,
``chaos_mr_01``), the key to group by.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from dataset_conversion.common import (RawDatasetWriter, add_common_arguments, nnunet_raw_root, progress,
                                       prompts_for, read_gray, require_dir, script_main)
from nnunet_causal.errors import DatasetError

NAME = "chaos"
DEFAULT_ID = 802
LABELS: Dict[str, int] = {"background": 0, "liver": 1, "kidney_right": 2, "kidney_left": 3, "spleen": 4}
CT_LABELS: Dict[str, int] = {"background": 0, "liver": 1}
#: (lowest grey value, highest grey value, label value) of the MR masks
MR_RANGES = ((55, 70, 1), (110, 135, 2), (175, 200, 3), (240, 255, 4))
CT_THRESHOLD = 128
SITE = "Dokuz Eylul University Hospital, Izmir, Turkey"
SEQUENCES = {  # sequence -> (case prefix, modality, domain, style)
    "CT": ("CT", "CT", "chaos_ct", "portal venous phase contrast-enhanced abdominal CT of healthy liver donors"),
    "T1DUAL_InPhase": ("T1in", "MRI", "chaos_mri_t1_inphase", "T1-weighted dual-echo abdominal MRI, in-phase"),
    "T1DUAL_OutPhase": ("T1out", "MRI", "chaos_mri_t1_outphase",
                        "T1-weighted dual-echo abdominal MRI, opposed-phase"),
    "T2SPIR": ("T2", "MRI", "chaos_mri_t2spir", "T2-weighted SPIR fat-suppressed abdominal MRI"),
}
MODALITIES = ("ct", "mri", "both")


@dataclass
class ChaosSeries:
    """One DICOM series of CHAOS = one output case."""

    case: str
    patient: str
    modality: str  # "CT" | "MRI"
    sequence: str  # key of SEQUENCES
    dicom_files: List[Path]  # natural file-name order (= mask order)
    mask_files: Optional[List[Path]]  # None for the test set
    split: str  # "Tr" | "Ts"


# ------------------------------------------------------------------------------------------------ scanning
def natural_key(path: Path) -> tuple:
    """Sort key of a file name with its digit runs compared as numbers (``IMG-2`` before ``IMG-10``)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", path.name) if t)


def _dicoms(folder: Path) -> List[Path]:
    """The DICOM slices of a series folder (``*.dcm`` or extension-less files), natural name order."""
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
             and (p.suffix.lower() == ".dcm" or (p.suffix == "" and p.name.upper() != "DICOMDIR"))]
    if not files:
        raise DatasetError(f"{folder} holds no DICOM files (*.dcm)")
    return sorted(files, key=natural_key)


def _masks(folder: Path, n_slices: int, dicom_folder: Path) -> List[Path]:
    """The PNG masks of a series in natural name order; their number must equal the slice count."""
    masks = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png"
                    and not p.name.startswith(".")), key=natural_key)
    if len(masks) != n_slices:
        raise DatasetError(f"{folder}: {len(masks)} mask PNG(s) for {n_slices} DICOM slice(s) in {dicom_folder}; "
                           f"CHAOS pairs mask i with slice i, so the counts must match")
    return masks


def _patient_id(folder: Path) -> str:
    return f"{int(folder.name):02d}" if folder.name.isdigit() else folder.name


def _make_series(sequence: str, patient: str, dicom_dir: Path, ground: Optional[Path], split: str) -> ChaosSeries:
    files = _dicoms(require_dir(dicom_dir, f"the DICOM folder of the CHAOS {sequence} series"))
    masks = None
    if split == "Tr":
        masks = _masks(require_dir(ground, f"the Ground folder with the masks of {dicom_dir}"), len(files), dicom_dir)
    prefix, modality = SEQUENCES[sequence][:2]
    return ChaosSeries(f"CHAOS_{prefix}_{patient}", patient, modality, sequence, files, masks, split)


def _patient_series(patient_dir: Path, modality_dir: str, split: str) -> List[ChaosSeries]:
    """The series of one patient folder: CT, or T1 in-phase, T1 out-phase and T2-SPIR."""
    pid = _patient_id(patient_dir)
    if modality_dir == "CT":
        return [_make_series("CT", pid, patient_dir / "DICOM_anon", patient_dir / "Ground", split)]
    t1, t2 = patient_dir / "T1DUAL", patient_dir / "T2SPIR"
    return [_make_series("T1DUAL_InPhase", pid, t1 / "DICOM_anon" / "InPhase", t1 / "Ground", split),
            _make_series("T1DUAL_OutPhase", pid, t1 / "DICOM_anon" / "OutPhase", t1 / "Ground", split),
            _make_series("T2SPIR", pid, t2 / "DICOM_anon", t2 / "Ground", split)]


def _has_modalities(folder: Path) -> bool:
    return (folder / "CT").is_dir() or (folder / "MR").is_dir()


def _find_train(root: Path) -> Optional[Path]:
    for c in (root / "Train_Sets", root / "CHAOS_Train_Sets" / "Train_Sets", root / "CHAOS_Train_Sets", root):
        if _has_modalities(c) and "test" not in c.name.lower():
            return c
    return None


def _find_test(root: Path, train: Path) -> Optional[Path]:
    for c in (train.parent / "Test_Sets", root / "Test_Sets", root / "CHAOS_Test_Sets" / "Test_Sets",
              root / "CHAOS_Test_Sets"):
        if c.resolve() != train.resolve() and _has_modalities(c):
            return c
    return None


def _patients(folder: Path) -> List[Path]:
    """Patient folders, numerically ordered."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def scan(input_dir: Path, modality: str = "both") -> List[ChaosSeries]:
    """Every series of the chosen modality (``ct``, ``mri``, ``both``): training series (with their masks)
    first, then test series. Raises :class:`DatasetError` for a missing folder or a series without masks."""
    if modality not in MODALITIES:
        raise DatasetError(f"--modality must be one of {MODALITIES}, got '{modality}'")
    root = require_dir(Path(input_dir), "the unpacked CHAOS download (CHAOS_Train_Sets/Train_Sets)")
    train = _find_train(root)
    if train is None:
        raise DatasetError(f"CHAOS training set not found under {root}: expected Train_Sets/CT/<patient>/DICOM_anon "
                           f"and Train_Sets/MR/<patient>/T1DUAL, T2SPIR (CHAOS_Train_Sets.zip)")
    sets = [(train, "Tr")]
    test = _find_test(root, train)
    if test is not None:
        sets.append((test, "Ts"))
    wanted = {"ct": ("CT",), "mri": ("MR",), "both": ("CT", "MR")}[modality]
    series: List[ChaosSeries] = []
    for folder, split in sets:
        for mod in wanted:
            if not (folder / mod).is_dir():
                if split == "Tr":
                    raise DatasetError(f"{folder / mod} does not exist: expected the CHAOS {mod} patients "
                                       f"(or choose --modality {'mri' if mod == 'CT' else 'ct'})")
                continue
            for patient in _patients(folder / mod):
                series.extend(_patient_series(patient, mod, split))
    if not any(s.split == "Tr" for s in series):
        raise DatasetError(f"{train}: no CHAOS patient folders")
    return series


# ------------------------------------------------------------------------------------------------ reading
def mask_to_labels(mask: np.ndarray, sequence: str, path: Path) -> np.ndarray:
    """CHAOS mask grey values -> label values (CT: >= 128 liver; MR: the grey ranges of :data:`MR_RANGES`)."""
    out = np.zeros(mask.shape, np.uint8)
    if sequence == "CT":
        bad = ((mask > 0) & (mask < CT_THRESHOLD)) | (mask > 255) | (mask < 0)
        out[mask >= CT_THRESHOLD] = LABELS["liver"]
        expected = "CT masks are 0 (background) or 128..255 (liver)"
    else:
        bad = mask != 0
        for low, high, label in MR_RANGES:
            inside = (mask >= low) & (mask <= high)
            out[inside] = label
            bad &= ~inside
        expected = ("MR masks use 0 and the ranges 55-70 liver, 110-135 right kidney, 175-200 left kidney, "
                    "240-255 spleen")
    if bad.any():
        values = [round(float(v), 2) if float(v) % 1 else int(v) for v in np.unique(mask[bad])[:8]]
        raise DatasetError(f"{path}: unexpected mask grey value(s) {values} ({expected})")
    return out


def read_series(series: ChaosSeries):
    """``(SimpleITK image, label array (z, y, x) uint8 in LABELS values, or None)`` of one series.

    The volume is read by :mod:`nnunet_causal.formats.dicom_series` (slices ordered along the normal, its
    checks and errors); mask i belongs to DICOM file i in file-name order and moves with its slice.
    """
    from nnunet_causal.formats.dicom_series import read_series_image, series_from_files

    folder = series.dicom_files[0].parent
    volume = series_from_files(folder, series.dicom_files)
    image = read_series_image(volume)
    if series.mask_files is None:
        return image, None
    if len(series.mask_files) != len(series.dicom_files):
        raise DatasetError(f"{series.mask_files[0].parent if series.mask_files else folder}: "
                           f"{len(series.mask_files)} masks for {len(series.dicom_files)} DICOM slices in {folder}")
    mask_of = dict(zip(series.dicom_files, series.mask_files))
    size = (volume.grid.size[1], volume.grid.size[0])  # (rows, columns)
    return image, np.stack([_read_mask(mask_of[f], f, size, series.sequence) for f in volume.files])


def _read_mask(path: Path, dicom: Path, size: Tuple[int, int], sequence: str) -> np.ndarray:
    lab = mask_to_labels(read_gray(path), sequence, path)
    if lab.shape != size:
        raise DatasetError(f"{path}: mask size {lab.shape[1]}x{lab.shape[0]} differs from its DICOM slice "
                           f"{dicom} ({size[1]}x{size[0]})")
    return lab


def labelled_structures(series: ChaosSeries) -> List[str]:
    """Names of the structures a training series annotates (CT: the liver; MR: all four organs)."""
    return ["liver"] if series.modality == "CT" else [n for n in LABELS if n != "background"]


def domain_record(series: ChaosSeries, image=None) -> dict:
    """Domain record of a series; ``scanner`` from the DICOM Manufacturer/ManufacturerModelName tags if set."""
    import pydicom

    _, modality, domain, style = SEQUENCES[series.sequence]
    record = {"domain": domain, "source": "chaos", "modality": modality, "sequence": series.sequence,
              "patient": series.patient, "subject": f"chaos_{'ct' if modality == 'CT' else 'mr'}_{series.patient}",
              "site": SITE, "style": style}
    try:
        ds = pydicom.dcmread(str(series.dicom_files[0]), stop_before_pixels=True)
    except Exception as e:  # noqa: BLE001 - reported with the file name
        raise DatasetError(f"{series.dicom_files[0]}: cannot read the DICOM header: {e}") from e
    scanner = " ".join(str(ds.get(t, "") or "").strip() for t in ("Manufacturer", "ManufacturerModelName")).strip()
    if scanner:
        record["scanner"] = scanner
    return record


# ------------------------------------------------------------------------------------------------ converting
def convert(input_dir: Path, dataset_id: int = DEFAULT_ID, raw_root: Optional[Path] = None,
            modality: str = "both") -> Path:
    """Convert CHAOS to ``$nnUNet_raw/DatasetXXX_CHAOS`` (``_CHAOS_CT``/``_CHAOS_MRI`` for one modality)."""
    series = scan(input_dir, modality)
    labels = CT_LABELS if modality == "ct" else LABELS
    name = {"both": "CHAOS", "ct": "CHAOS_CT", "mri": "CHAOS_MRI"}[modality]
    channel = {"both": "CT_or_MRI", "ct": "CT", "mri": "MRI"}[modality]
    domains, partial = {}, {}
    with RawDatasetWriter(nnunet_raw_root(raw_root), dataset_id, name) as w:
        for s in progress(series, "CHAOS series"):
            image, label = read_series(s)
            w.write_nifti_image(s.case, 0, image, split=s.split)
            if label is not None:
                w.write_nifti_label(s.case, label, like=image, split=s.split)
                if modality == "both" and s.modality == "CT":
                    partial[s.case] = labelled_structures(s)
            domains[s.case] = domain_record(s, image)
        return w.finish({"0": channel}, labels, ".nii.gz",
                        prompts=prompts_for(n for n in labels if n != "background"), domains=domains,
                        imaging_family="ct" if modality == "ct" else "mri", partial_labels=partial or None,
                        description=f"CHAOS abdominal organs, one case per DICOM series, modality: {modality}",
                        reference="https://chaos.grand-challenge.org/ (Zenodo 3431873)", licence="CC BY-SA 4.0")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    add_common_arguments(p, DEFAULT_ID)
    p.add_argument("--modality", choices=MODALITIES, default="both",
                   help="keep CT series, MR series (T1 in/out-phase, T2-SPIR) or both (default)")


def run(args: argparse.Namespace) -> Path:
    return convert(args.input, args.dataset_id, args.raw_root, args.modality)


def main(argv=None) -> int:
    return script_main(add_arguments, run, argv, prog="python -m dataset_conversion.chaos")


if __name__ == "__main__":
    raise SystemExit(main())
