"""Write a 3D volume as a DICOM CT image series (pydicom), one file per slice, with exact geometry.

Used to give a NIfTI / NRRD / MHA volume a DICOM reference series (so that DICOM-SEG and RTSTRUCT can
point at it) and by the tests to build series. Slice ``k`` gets ImagePositionPatient = the physical point
of voxel ``(0, 0, k)``, ImageOrientationPatient = the first two columns of the direction, PixelSpacing =
``(spacing[1], spacing[0])``: reading the folder back with
:func:`~nnunet_causal.formats.dicom_series.scan_dicom_folder` gives the same grid. Values are stored as
``int16`` with RescaleSlope 1 / RescaleIntercept 0 when they are whole numbers that fit, otherwise scaled
linearly into ``int16`` (slope and intercept recorded, precision ``range / 65535``).

pydicom has no series writer, so the CT Image IOD's attributes are set here by hand (the mandatory ones
of the Patient, General Study, General Series, Frame of Reference, General Equipment, General / CT Image,
Image Plane, Image Pixel and SOP Common modules).
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import List, Optional

import numpy as np

from nnunet_causal.files import atomic_path
from nnunet_causal.errors import DatasetError
from nnunet_causal.formats.geometry import Grid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _int16_scaling(values: np.ndarray):
    """``(stored int16 array, slope, intercept)`` with ``values ~= stored * slope + intercept``."""
    lo, hi = float(values.min()), float(values.max())
    if np.all(np.mod(values, 1) == 0) and lo >= -32768 and hi <= 32767:
        return values.astype(np.int16), 1.0, 0.0
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    intercept = lo + 32768 * slope
    stored = np.clip(np.round((values - intercept) / slope), -32768, 32767).astype(np.int16)
    return stored, slope, intercept


def write_ct_series(image, folder: Path, *, patient_id: str = "ANONYMOUS", patient_name: str = "Anonymous^",
                    study_uid: Optional[str] = None, series_uid: Optional[str] = None,
                    frame_of_reference_uid: Optional[str] = None, series_description: str = "",
                    series_number: int = 1, transfer_syntax: Optional[str] = None) -> List[Path]:
    """Write the SimpleITK 3D ``image`` as ``folder/IM_0000.dcm``... (slice order); return the files.

    ``transfer_syntax``: a pydicom UID to compress with (e.g. RLE Lossless; needs the matching encoder);
    default Explicit VR Little Endian.
    """
    import SimpleITK as sitk
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, UID, generate_uid
    from pydicom.valuerep import DSfloat

    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DatasetError("a DICOM series is written from a single-channel 3D volume")
    grid = Grid.of(image)
    values = sitk.GetArrayFromImage(image).astype(np.float64)
    stored, slope, intercept = _int16_scaling(values)
    study_uid, series_uid = study_uid or generate_uid(), series_uid or generate_uid()
    frame_of_reference_uid = frame_of_reference_uid or generate_uid()
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    m = grid.matrix
    iop = [DSfloat(float(v), auto_format=True) for v in np.concatenate([m[:, 0], m[:, 1]])]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(stored.shape[0]):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, sop_uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient_name, patient_id, "", "O"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study_uid, date, time
        ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "CT", series_uid, int(series_number)
        ds.SeriesDescription, ds.Laterality, ds.PatientPosition = series_description[:64], "", ""
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_of_reference_uid, ""
        ds.Manufacturer = "nnunet_causal"
        ds.InstanceNumber = k + 1
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.ContentDate, ds.ContentTime, ds.AcquisitionNumber, ds.KVP = date, time, 1, ""
        ds.PatientOrientation = ""
        ds.ImagePositionPatient = [DSfloat(float(v), auto_format=True) for v in grid.index_to_physical((0, 0, k))]
        ds.ImageOrientationPatient = iop
        ds.PixelSpacing = [DSfloat(float(grid.spacing[i]), auto_format=True) for i in (1, 0)]
        ds.SliceThickness = DSfloat(float(grid.spacing[2]), auto_format=True)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(stored.shape[1]), int(stored.shape[2])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{intercept:.10g}", f"{slope:.10g}", "HU"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        if transfer_syntax is not None:
            ds.compress(UID(transfer_syntax))
        path = folder / f"IM_{k:04d}.dcm"
        with atomic_path(path, suffix=".dcm") as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        out.append(path)
    return out
