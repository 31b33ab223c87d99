"""Fabricated official-layout data for the converter tests: fabricated volumes with non-trivial geometry, folder snapshots."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

SPACING = (0.8, 0.7, 2.5)
ORIGIN = (-120.0, 35.5, 410.0)
DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # LPS-flipped in-plane, as many CTs are stored


def write_volume(path: Path, array: np.ndarray, spacing=SPACING, origin=ORIGIN, direction=DIRECTION) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), True)
    return img


def label_volume(shape, values, seed=0) -> np.ndarray:
    """A label map holding each of ``values`` in its own slab (so every value is present)."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, dtype=np.uint8)
    flat = lab.reshape(-1)
    idx = rng.permutation(flat.size)
    for k, v in enumerate(values):
        flat[idx[k::len(values) + 1]] = v
    return lab


def snapshot(folder: Path) -> dict:
    """``{relative path: (array, spacing, origin, direction) or text}`` of every file under ``folder``."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_dir():
            continue
        rel = str(p.relative_to(folder))
        if p.name.endswith(".nii.gz"):
            img = sitk.ReadImage(str(p))
            out[rel] = (sitk.GetArrayFromImage(img).tobytes(), img.GetSpacing(), img.GetOrigin(), img.GetDirection())
        else:
            out[rel] = p.read_bytes()
    return out


def assert_nothing_written(raw_root: Path, before=()) -> None:
    left = sorted(p.name for p in raw_root.iterdir() if p.name not in set(before))
    assert left == [], f"left behind after a failed conversion: {left}"


def verify(folder: Path) -> None:
    """nnU-Net's own dataset check (raises on any problem)."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), 1)


# ------------------------------------------------------------------------------------------- DICOM (CHAOS)
def write_dicom(path: Path, pixels: np.ndarray, position, orientation, pixel_spacing=(0.9, 0.7), modality="CT",
                slope=1.0, intercept=-1024.0, instance=1) -> None:
    """One uncompressed DICOM slice with full geometry (pixels stored as uint16)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality = modality
    ds.Manufacturer = "Philips"
    ds.ManufacturerModelName = "Ingenia" if modality == "MR" else "SecuraCT"
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = 3.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
