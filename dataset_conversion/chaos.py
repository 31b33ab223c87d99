"""CHAOS (Combined CT-MR Healthy Abdominal Organ Segmentation) -> nnU-Net raw, one case per DICOM series.

Download: https://chaos.grand-challenge.org/ (Zenodo record 3431873: CHAOS_Train_Sets.zip,
CHAOS_Test_Sets.zip). ``-i`` is ``CHAOS_Train_Sets``, ``Train_Sets`` or a folder holding them (a
``Test_Sets`` folder beside it is converted to imagesTs)::

    Train_Sets/CT/<patient>/DICOM_anon/*.dcm               Ground/liver_GT_000.png ...   (0/255: liver)
    Train_Sets/MR/<patient>/T1DUAL/DICOM_anon/InPhase/*.dcm, OutPhase/*.dcm, T1DUAL/Ground/*.png
    Train_Sets/MR/<patient>/T2SPIR/DICOM_anon/*.dcm        T2SPIR/Ground/*.png

MR masks hold grey values read as ranges: 55-70 liver (63), 110-135 right kidney (126), 175-200 left
kidney (189), 240-255 spleen (252); anything else is an error naming the PNG. CT masks: 0 background,
>= 128 liver (1..127 is an error).

Slices and masks. Mask i belongs to DICOM file i in file-name order (the CHAOS convention; masks are in
the DICOM pixel grid, row r / column c of the mask = row r / column c of ``pixel_array``). The volume is
then ordered by slice position along the normal (``ImagePositionPatient`` . (row dir x column dir)), so
slice order never depends on file names; spacing is (column spacing, row spacing, distance between
slice positions), origin the first slice's position, direction from ``ImageOrientationPatient``. Slices
with differing orientation or size, or uneven spacing, are errors. CT values get RescaleSlope/Intercept
(Hounsfield units).

Cases: ``CHAOS_CT_<p>``, ``CHAOS_T1in_<p>``, ``CHAOS_T1out_<p>``, ``CHAOS_T2_<p>`` (p = patient, two
digits), single channel. The T1 in-phase and out-phase cases of one patient show the same anatomy: their
domain records carry ``patient`` so that splits can keep a patient together (leave-one-domain-out folds
by sequence or modality do). Labels: 1 liver, 2 kidney_right, 3 kidney_left, 4 spleen; with
``--modality both``, CT cases annotate the liver only and are listed in ``partial_labels``; with ``ct``
the dataset has the liver label only.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from dataset_conversion.common import (RawDatasetWriter, add_common_arguments, nnunet_raw_root, progress,
                                       prompts_for, read_gray, require_dir, script_main)
from nnunet_causal.errors import DatasetError

NAME = "chaos"
DEFAULT_ID = 802
LABELS: Dict[str, int] = {"background": 0, "liver": 1, "kidney_right": 2, "kidney_left": 3, "spleen": 4}
#: (low, high, label) grey-value ranges of the MR masks
MR_RANGES = ((55, 70, 1), (110, 135, 2), (175, 200, 3), (240, 255, 4))
SITE = "Dokuz Eylul University Hospital, Izmir, Turkey"
SEQUENCES = {  # sequence -> (case prefix, modality, domain, style)
    "CT": ("CT", "CT", "chaos_ct", "portal venous phase contrast-enhanced abdominal CT"),
    "T1DUAL_InPhase": ("T1in", "MRI", "chaos_mri_t1_inphase", "T1-weighted dual-echo MRI, in-phase"),
    "T1DUAL_OutPhase": ("T1out", "MRI", "chaos_mri_t1_outphase", "T1-weighted dual-echo MRI, opposed-phase"),
    "T2SPIR": ("T2", "MRI", "chaos_mri_t2spir", "T2-weighted SPIR fat-suppressed MRI"),
}
MODALITIES = ("ct", "mri", "both")


@dataclass
class ChaosSeries:
    case: str
    patient: str
    modality: str  # "CT" | "MRI"
    sequence: str  # key of SEQUENCES
    dicom_files: List[Path]
    mask_files: Optional[List[Path]]
    split: str  # "Tr" | "Ts"


# ------------------------------------------------------------------------------------------------ scanning
def _dicoms(folder: Path) -> List[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".dcm", "")
                   and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"{folder} holds no DICOM files")
    return files


def _masks(folder: Path, n: int, series: Path) -> List[Path]:
    masks = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if len(masks) != n:
        raise DatasetError(f"{folder}: {len(masks)} mask PNG(s) for {n} DICOM slice(s) in {series}")
    return masks


def _series(patient_dir: Path, modality_dir: str, split: str) -> List[ChaosSeries]:
    p = patient_dir.name
    pid = f"{int(p):02d}" if p.isdigit() else p
    labelled = split == "Tr"
    out = []

    def add(sequence: str, dicom_dir: Path, ground: Path):
        files = _dicoms(require_dir(dicom_dir, f"the DICOM folder of CHAOS series {sequence}"))
        masks = None
        if labelled:
            masks = _masks(require_dir(ground, f"the Ground folder with the masks of {dicom_dir}"), len(files),
                           dicom_dir)
        prefix, modality = SEQUENCES[sequence][:2]
        out.append(ChaosSeries(f"CHAOS_{prefix}_{pid}", pid, modality, sequence, files, masks, split))

    if modality_dir == "CT":
        add("CT", patient_dir / "DICOM_anon", patient_dir / "Ground")
    else:
        t1 = patient_dir / "T1DUAL"
        add("T1DUAL_InPhase", t1 / "DICOM_anon" / "InPhase", t1 / "Ground")
        add("T1DUAL_OutPhase", t1 / "DICOM_anon" / "OutPhase", t1 / "Ground")
        add("T2SPIR", patient_dir / "T2SPIR" / "DICOM_anon", patient_dir / "T2SPIR" / "Ground")
    return out


def _has_modalities(folder: Path) -> bool:
    return (folder / "CT").is_dir() or (folder / "MR").is_dir()


def _find_train(root: Path) -> Optional[Path]:
    for c in (root / "Train_Sets", root / "CHAOS_Train_Sets" / "Train_Sets", root / "CHAOS_Train_Sets", root):
        if _has_modalities(c):
            return c
    return None


def _find_test(root: Path, train: Path) -> Optional[Path]:
    for c in (train.parent / "Test_Sets", root / "Test_Sets", root / "CHAOS_Test_Sets" / "Test_Sets",
              root / "CHAOS_Test_Sets"):
        if c.resolve() != train.resolve() and _has_modalities(c):
            return c
    return None


def scan(input_dir: Path, modality: str = "both") -> List[ChaosSeries]:
    """Every series of the chosen modality: training series (with masks), then test series."""
    if modality not in MODALITIES:
        raise DatasetError(f"--modality must be one of {MODALITIES}, got '{modality}'")
    root = require_dir(Path(input_dir), "the unpacked CHAOS download (CHAOS_Train_Sets/Train_Sets)")
    train = _find_train(root)
    if train is None:
        raise DatasetError(f"CHAOS training set not found under {root}: expected Train_Sets/CT/<patient>/DICOM_anon "
                           f"and Train_Sets/MR/<patient>/T1DUAL, T2SPIR")
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
                    raise DatasetError(f"{folder / mod} does not exist: expected CHAOS {mod} patients")
                continue
            for patient in sorted((p for p in (folder / mod).iterdir() if p.is_dir()),
                                  key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)):
                series.extend(_series(patient, mod, split))
    if not any(s.split == "Tr" for s in series):
        raise DatasetError(f"{train}: no CHAOS patient folders")
    return series


# ------------------------------------------------------------------------------------------------ reading
def _read_dicom(path: Path):
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        pixels = ds.pixel_array.astype(np.float32)
        position = np.array([float(v) for v in ds.ImagePositionPatient])
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
        spacing = [float(v) for v in ds.PixelSpacing]
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for a broken file; reported with its name
        raise DatasetError(f"{path}: cannot read the DICOM slice (corrupt file or missing geometry tags): {e}") from e
    slope, intercept = float(getattr(ds, "RescaleSlope", 1) or 1), float(getattr(ds, "RescaleIntercept", 0) or 0)
    return ds, pixels * slope + intercept, position, orientation, spacing


def mask_to_labels(mask: np.ndarray, sequence: str, path: Path) -> np.ndarray:
    """CHAOS mask grey values -> label values (see the module docstring for the ranges)."""
    out = np.zeros(mask.shape, np.uint8)
    if sequence == "CT":
        bad = (mask > 0) & (mask < 128)
        out[mask >= 128] = LABELS["liver"]
    else:
        bad = mask > 0
        for low, high, label in MR_RANGES:
            inside = (mask >= low) & (mask <= high)
            out[inside] = label
            bad &= ~inside
    if bad.any():
        values = np.unique(mask[bad])[:8].tolist()
        raise DatasetError(f"{path}: unexpected mask value(s) {values} (CHAOS {'CT masks are 0/255' if sequence == 'CT' else 'MR masks use 63, 126, 189, 252'})")
    return out


def read_series(series: ChaosSeries):
    """``(SimpleITK image, label array (z, y, x) or None)`` of one series, slices ordered by position."""
    import SimpleITK as sitk

    slices = [_read_dicom(p) for p in series.dicom_files]
    labels = None
    if series.mask_files is not None:
        labels = []
        for (ds, pixels, *_), m in zip(slices, series.mask_files):
            lab = mask_to_labels(read_gray(m), series.sequence, m)
            if lab.shape != pixels.shape:
                raise DatasetError(f"{m}: mask size {lab.shape[::-1]} differs from its DICOM slice "
                                   f"({pixels.shape[::-1]})")
            labels.append(lab)
    first = slices[0]
    row_dir, col_dir = first[3][:3], first[3][3:]
    normal = np.cross(row_dir, col_dir)
    for path, (_, pixels, _, orientation, spacing) in zip(series.dicom_files, slices):
        if not np.allclose(orientation, first[3], atol=1e-4) or pixels.shape != first[1].shape \
                or not np.allclose(spacing, first[4], atol=1e-4):
            raise DatasetError(f"{path}: orientation, size or pixel spacing differs from the series' first slice "
                               f"{series.dicom_files[0]}")
    heights = np.array([float(np.dot(s[2], normal)) for s in slices])
    order = np.argsort(heights, kind="stable")
    heights = heights[order]
    if len(slices) > 1:
        gaps = np.diff(heights)
        if gaps.min() <= 1e-4 or gaps.max() - gaps.min() > 0.01 * max(gaps.mean(), 1e-3) + 1e-3:
            raise DatasetError(f"{series.dicom_files[0].parent}: slices are not evenly spaced along the normal "
                               f"(gaps {np.round(gaps, 3).tolist()[:6]} mm): duplicate or missing slices")
        dz = float(gaps.mean())
    else:
        dz = float(getattr(first[0], "SliceThickness", 1.0) or 1.0)
    volume = np.stack([slices[i][1] for i in order])
    dtype = np.int16 if series.modality == "CT" and volume.min() >= -32768 and volume.max() <= 32767 \
        and np.allclose(volume, np.round(volume)) else np.float32
    image = sitk.GetImageFromArray(volume.astype(dtype))
    image.SetSpacing((first[4][1], first[4][0], dz))  # PixelSpacing = [row spacing (y), column spacing (x)]
    image.SetOrigin(tuple(float(v) for v in slices[order[0]][2]))
    image.SetDirection(tuple(float(v) for v in np.stack([row_dir, col_dir, normal], axis=1).ravel()))
    label = None if labels is None else np.stack([labels[i] for i in order])
    return image, label


def labelled_structures(series: ChaosSeries) -> List[str]:
    """Names of the structures a training series annotates (CT: the liver; MR: all four)."""
    return ["liver"] if series.modality == "CT" else [n for n in LABELS if n != "background"]


def domain_record(series: ChaosSeries, image=None) -> dict:
    """Domain record of a series; scanner from the DICOM tags when they are present."""
    prefix, modality, domain, style = SEQUENCES[series.sequence]
    record = {"domain": domain, "source": "chaos", "modality": modality, "sequence": series.sequence,
              "patient": series.patient, "site": SITE, "style": style}
    try:
        import pydicom

        ds = pydicom.dcmread(str(series.dicom_files[0]), stop_before_pixels=True)
        scanner = " ".join(str(getattr(ds, t, "")).strip() for t in ("Manufacturer", "ManufacturerModelName")).strip()
        if scanner:
            record["scanner"] = scanner
    except Exception:  # noqa: BLE001 - the slice was read successfully before; tags are optional
        pass
    return record


# ------------------------------------------------------------------------------------------------ converting
def convert(input_dir: Path, dataset_id: int = DEFAULT_ID, raw_root: Optional[Path] = None,
            modality: str = "both") -> Path:
    """Convert CHAOS to ``$nnUNet_raw/DatasetXXX_CHAOS[_CT|_MRI]``; return the dataset folder."""
    series = scan(input_dir, modality)
    labels = {"background": 0, "liver": 1} if modality == "ct" else dict(LABELS)
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
        return w.finish({"0": channel}, labels, ".nii.gz", prompts=prompts_for(n for n in labels if n != "background"),
                        domains=domains, imaging_family="ct" if modality == "ct" else "mri",
                        partial_labels=partial or None,
                        description=f"CHAOS abdominal organs, one case per series, modality: {modality}",
                        reference="https://chaos.grand-challenge.org/", licence="CC BY-SA 4.0")


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
