"""RTSTRUCT (RT Structure Set) of one case's prompts, written with pydicom.

One ROI per prompt, numbered by prompt order (1..K, the label values): ROI Name = the canonical structure
name, ROI Description = the prompt text, RT ROI Identification Code = the structure's SNOMED CT code
(:func:`~nnunet_causal.formats.anatomy_codes.structure_code`; the side is in the name), RT ROI Interpreted
Type ORGAN for anatomy and empty otherwise, generation algorithm AUTOMATIC. The structure set references the
source series (its frame of reference, study, series and every image) and each contour names the image it
lies on.

Contours. Each slice of a mask is traced with marching squares at level 0.5
(``skimage.measure.find_contours`` on the zero-padded slice), so contour vertices lie half-way between an
inside and an outside pixel centre: the polygons run along the pixel edges (corners cut diagonally) and
never through a pixel centre. Rasterising them back with the even-odd rule (XOR of all contours of a
slice; holes are separate contours) gives the mask back voxel for voxel (:func:`read_rtstruct`).
Collinear vertices are dropped. Coordinates are patient coordinates (mm) computed from each slice's own
ImagePositionPatient, ImageOrientationPatient and PixelSpacing.

Zero-voxel prompts keep their ROI, with no contour (the ROI Contour item has no Contour Sequence), for the
reason given in :mod:`~nnunet_causal.formats.dicom_seg`.

Written by hand: highdicom has no RT Structure Set writer, and rt-utils (the RTSTRUCT writer on PyPI) reads
every file under a folder as one series, multiplies the column index by PixelSpacing[0] (wrong for
non-square pixels) and contours pixel centres (half a voxel inside the mask).
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from nnunet_causal.files import atomic_path
from nnunet_causal.errors import DatasetError
from nnunet_causal.formats.anatomy_codes import structure_code
from nnunet_causal.formats.segments import (MANUFACTURER, SEGMENT_COLOURS, PromptMask, add_edit_history, check_masks,
                                            dicom_text, software_version)

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
#: the Referenced SOP Class of the RT Referenced Study Sequence (DICOM PS3.3 C.8.8.5)
STUDY_COMPONENT_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"


def _slice_frame(ds) -> tuple:
    """``(origin, row direction, column direction, [row spacing, column spacing])`` of one slice."""
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    return (np.asarray(ds.ImagePositionPatient, dtype=np.float64), iop[:3], iop[3:],
            np.asarray(ds.PixelSpacing, dtype=np.float64))


def slice_contours(mask2d: np.ndarray) -> List[np.ndarray]:
    """Closed contours ``(N, 2)`` in (row, column) pixel coordinates around the pixels of ``mask2d``."""
    from skimage.measure import find_contours

    padded = np.pad(mask2d.astype(np.float32), 1)
    out = []
    for c in find_contours(padded, 0.5):
        c = c[:-1] - 1.0 if np.allclose(c[0], c[-1]) else c - 1.0
        prev, nxt = np.roll(c, 1, axis=0), np.roll(c, -1, axis=0)
        cross = (c[:, 0] - prev[:, 0]) * (nxt[:, 1] - c[:, 1]) - (c[:, 1] - prev[:, 1]) * (nxt[:, 0] - c[:, 0])
        keep = np.abs(cross) > 1e-9
        if keep.sum() >= 3:
            out.append(c[keep])
    return out


def _ds_values(points: np.ndarray) -> list:
    from pydicom.valuerep import DSfloat

    return [DSfloat(float(v), auto_format=True) for v in points.ravel()]


def _contours_of(mask: np.ndarray, source: Sequence) -> list:
    from pydicom import Dataset

    items = []
    for k in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)):
        ds = source[int(k)]
        origin, row_dir, col_dir, (dr, dc) = _slice_frame(ds)
        for c in slice_contours(mask[k]):
            pts = origin + np.outer(c[:, 1] * dc, row_dir) + np.outer(c[:, 0] * dr, col_dir)
            image = Dataset()
            image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
            item = Dataset()
            item.ContourImageSequence = [image]
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(pts)
            item.ContourData = _ds_values(pts)
            items.append(item)
    return items


def _code_item(code):
    from pydicom import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


def write_rtstruct(masks: Sequence[PromptMask], source: Sequence, path: Path, *,
                   series_description: str = "nnunet_causal structures", series_number: int = 901,
                   label: str = "nnunet_causal", edit_history: Optional[dict] = None) -> Path:
    """Write the prompts' masks as one RTSTRUCT file referencing ``source`` (the series' datasets in slice
    order, as :func:`~nnunet_causal.formats.dicom_series.read_series_headers` returns them). An edited result's
    ``edit_history`` goes into the private block of :func:`~nnunet_causal.formats.segments.add_edit_history`."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, UID, generate_uid

    path = Path(path)
    check_masks(masks, source, str(path))
    if not masks:
        raise DatasetError(f"{path}: no prompts to write")
    ref = source[0]
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = UID(RT_STRUCTURE_SET_STORAGE), sop_uid
    meta.TransferSyntaxUID, meta.ImplementationClassUID = ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = RT_STRUCTURE_SET_STORAGE, sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    for attr in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                 "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription"):
        if attr in ref or attr not in ("StudyDescription",):
            setattr(ds, attr, getattr(ref, attr, ""))
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "RTSTRUCT", generate_uid(), int(series_number)
    ds.SeriesDescription, ds.OperatorsName = dicom_text(series_description), ""
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = MANUFACTURER, "nnunet_causal", software_version()
    ds.InstanceNumber = 1
    ds.StructureSetLabel, ds.StructureSetName = dicom_text(label, 16), dicom_text(label)
    ds.StructureSetDate, ds.StructureSetTime = date, time
    frame_uid = str(ref.FrameOfReferenceUID)
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = getattr(ref, "PositionReferenceIndicator", "")
    images = []
    for s in source:
        item = pydicom.Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = s.SOPClassUID, s.SOPInstanceUID
        images.append(item)
    series = pydicom.Dataset()
    series.SeriesInstanceUID, series.ContourImageSequence = ref.SeriesInstanceUID, images
    study = pydicom.Dataset()
    study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = STUDY_COMPONENT_MANAGEMENT, ref.StudyInstanceUID
    study.RTReferencedSeriesSequence = [series]
    frame = pydicom.Dataset()
    frame.FrameOfReferenceUID, frame.RTReferencedStudySequence = frame_uid, [study]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    rois, contours, observations = [], [], []
    for number, m in enumerate(masks, start=1):
        code = structure_code(m.structures or [m.prompt])
        roi = pydicom.Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID = number, frame_uid
        roi.ROIName, roi.ROIDescription = dicom_text(m.name), dicom_text(m.prompt, 1024)
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        rois.append(roi)
        contour = pydicom.Dataset()
        contour.ReferencedROINumber = number
        contour.ROIDisplayColor = list(SEGMENT_COLOURS[(number - 1) % len(SEGMENT_COLOURS)])
        items = _contours_of(m.mask.astype(bool), source)
        if items:
            contour.ContourSequence = items
        contours.append(contour)
        obs = pydicom.Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.RTROIInterpretedType = "ORGAN" if code.category.value == "91723000" and not code.generic else ""
        obs.ROIInterpreter = ""
        obs.RTROIIdentificationCodeSequence = [_code_item(code.type)]  # laterality: in the ROI name
        observations.append(obs)
    ds.StructureSetROISequence, ds.ROIContourSequence = rois, contours
    ds.RTROIObservationsSequence = observations
    ds.ApprovalStatus = "UNAPPROVED"
    if edit_history is not None:
        add_edit_history(ds, edit_history)
    with atomic_path(path, suffix=".dcm") as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def read_rtstruct(path: Path, source: Sequence) -> Dict[int, tuple]:
    """``{ROI number: (name, description, mask (z, y, x) bool)}`` of an RTSTRUCT on ``source``: each contour
    is put on the slice whose plane holds it and rasterised at the pixel centres, XOR over a slice's
    contours (the even-odd rule; see the module docstring)."""
    import pydicom
    from skimage.draw import polygon

    st = pydicom.dcmread(str(path))
    shape = (len(source), int(source[0].Rows), int(source[0].Columns))
    frames = [_slice_frame(ds) for ds in source]
    normal = np.cross(frames[0][1], frames[0][2])
    heights = np.asarray([f[0] @ normal for f in frames])
    by_uid = {str(ds.SOPInstanceUID): k for k, ds in enumerate(source)}
    names = {int(r.ROINumber): (str(r.ROIName), str(getattr(r, "ROIDescription", "")))
             for r in st.StructureSetROISequence}
    out = {}
    for rc in st.ROIContourSequence:
        number = int(rc.ReferencedROINumber)
        mask = np.zeros(shape, dtype=bool)
        for c in getattr(rc, "ContourSequence", []):
            pts = np.asarray(c.ContourData, dtype=np.float64).reshape(-1, 3)
            refs = getattr(c, "ContourImageSequence", None)
            k = by_uid.get(str(refs[0].ReferencedSOPInstanceUID)) if refs else None
            if k is None:
                k = int(np.argmin(np.abs(heights - float(np.mean(pts @ normal)))))
            origin, row_dir, col_dir, (dr, dc) = frames[k]
            rel = pts - origin
            cols, rows = rel @ row_dir / dc, rel @ col_dir / dr
            rr, cc = polygon(rows, cols, shape[1:])
            filled = np.zeros(shape[1:], dtype=bool)
            filled[rr, cc] = True
            mask[k] ^= filled
        name, desc = names.get(number, ("", ""))
        out[number] = (name, desc, mask)
    return out
