"""Read a folder of DICOM series as volumes with exact geometry, refusing what would be silently wrong.

One series (SeriesInstanceUID) is one volume; a folder (searched recursively) may hold several. Slices are
ordered by the projection of ImagePositionPatient on the slice normal (the cross product of the two
ImageOrientationPatient vectors), never by file name or InstanceNumber. The volume's grid
(:class:`~nnunet_causal.formats.geometry.Grid`, LPS): spacing ``(PixelSpacing[1], PixelSpacing[0],
slice step)``, origin the first slice's ImagePositionPatient, direction ``[row, column, normal]``.
RescaleSlope / RescaleIntercept are applied per slice (``int16`` when every slope and intercept is a whole
number and the values fit, else ``float32``).

Refused, with a one-line :class:`~nnunet_causal.errors.DatasetError` naming the folder, series and file
(nothing is resampled: a corrected volume would no longer be the one a reader sees in the PACS):

- a folder without DICOM files (files carrying the ``DICM`` preamble; DICOMDIR, non-image objects such
  as SEG, RTSTRUCT and SR, and localizer (scout) images, ImageType ``LOCALIZER``, are skipped);
- a series of one slice, multi-frame (enhanced) images, colour images;
- orientation, matrix size, pixel spacing or frame of reference that differ within a series ("mixed");
- two slices at the same position (duplicated), a gap of a missing slice, steps that differ by more than
  ``SPACING_TOLERANCE`` of the median step (non-uniform);
- gantry tilt: slice positions that drift across the slice normal by more than ``TILT_TOLERANCE`` of the
  in-plane pixel spacing;
- a compressed transfer syntax without an installed decoder (the error names the syntax and the extra to
  install).

Only pydicom is needed for uncompressed data; compressed syntaxes use pydicom's decoder plugins
(``pip install 'nnunet_causal[dicom]'``: pylibjpeg, pylibjpeg-openjpeg, pylibjpeg-rle, python-gdcm).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from nnunet_causal.errors import DatasetError
from nnunet_causal.formats.geometry import Grid, orthonormal_direction

logger = logging.getLogger(__name__)

#: largest allowed difference of a slice step from the median step, as a fraction of the median step
SPACING_TOLERANCE = 0.01
#: largest allowed drift of slice positions across the slice normal, as a fraction of the pixel spacing
TILT_TOLERANCE = 0.1
#: ImageOrientationPatient components of the slices of one series must agree within this
ORIENTATION_TOLERANCE = 1e-4
#: SOP classes and modalities that are not image slices (skipped when scanning a folder)
NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SR", "PR", "KO", "REG", "DOC", "RAW"}
DICOM_EXTRA = "pip install 'nnunet_causal[dicom]'"


@dataclass(frozen=True)
class DicomSeries:
    """One series found in a folder: its files in slice order and the grid of the volume they make."""
    folder: Path
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    modality: str
    description: str
    files: Tuple[Path, ...]
    grid: Grid

    @property
    def case_id(self) -> str:
        """nnU-Net case identifier: the SeriesInstanceUID with '.' made '_'."""
        return "S_" + self.series_uid.replace(".", "_")

    def record(self) -> dict:
        """JSON-ready description (UIDs, files, grid) for the outputs' provenance."""
        return {"series_instance_uid": self.series_uid, "study_instance_uid": self.study_uid,
                "frame_of_reference_uid": self.frame_of_reference_uid, "modality": self.modality,
                "series_description": self.description, "folder": str(self.folder),
                "files": [str(f) for f in self.files], "size": list(self.grid.size),
                "spacing": list(self.grid.spacing), "origin": list(self.grid.origin),
                "direction": list(self.grid.direction)}


def dicom_files(folder: Path) -> List[Path]:
    """Files under ``folder`` (recursively, sorted) that carry the DICOM preamble."""
    from pydicom.misc import is_dicom

    return [p for p in sorted(Path(folder).rglob("*")) if p.is_file() and not p.name.startswith(".") and is_dicom(p)]


def is_dicom_folder(folder: Path) -> bool:
    """Whether ``folder`` holds at least one DICOM file (searched recursively)."""
    from pydicom.misc import is_dicom

    return Path(folder).is_dir() and any(p.is_file() and is_dicom(p) for p in Path(folder).rglob("*"))


def scan_dicom_folder(folder: Path) -> List[DicomSeries]:
    """Every image series under ``folder``, checked (module docstring), sorted by SeriesInstanceUID."""
    import pydicom

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} does not exist or is not a folder")
    files = dicom_files(folder)
    if not files:
        raise DatasetError(f"{folder}: no DICOM files found (looked for files with the DICM preamble, recursively)")
    by_series: Dict[str, list] = {}
    skipped, localizers = 0, set()
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception as e:  # noqa: BLE001 - pydicom raises many types for damaged files
            raise DatasetError(f"{f}: cannot read the DICOM header: {e}") from e
        if str(getattr(ds, "Modality", "")).upper() in NON_IMAGE_MODALITIES or \
                str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")) == "1.2.840.10008.1.3.10":
            skipped += 1
            continue
        if "LOCALIZER" in [str(t).upper() for t in (getattr(ds, "ImageType", None) or [])]:
            localizers.add(str(getattr(ds, "SeriesInstanceUID", "")))
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
        if not uid:
            raise DatasetError(f"{f}: no SeriesInstanceUID")
        by_series.setdefault(uid, []).append((f, ds))
    if localizers:
        logger.info("%s: skipped %d localizer (scout) series", folder, len(localizers))
    if not by_series:
        raise DatasetError(f"{folder}: no DICOM image series found ({skipped} non-image DICOM object(s) and "
                           f"{len(localizers)} localizer series skipped)")
    return [_checked_series(folder, uid, items) for uid, items in sorted(by_series.items())]


def series_from_files(folder: Path, files: Sequence[Path]) -> DicomSeries:
    """``files`` as one series, checked as :func:`scan_dicom_folder` checks each series, whatever their
    SeriesInstanceUID says: for layouts in which a folder is one series (CHAOS's ``DICOM_anon``). A file that
    is not DICOM is an error naming it."""
    import pydicom

    if not files:
        raise DatasetError(f"{folder}: no DICOM files")
    items = []
    for f in files:
        try:
            items.append((Path(f), pydicom.dcmread(f, stop_before_pixels=True)))
        except Exception as e:  # noqa: BLE001 - pydicom raises many types for damaged files
            raise DatasetError(f"{f}: cannot read the DICOM header: {e}") from e
    uid = str(getattr(items[0][1], "SeriesInstanceUID", "") or "") or Path(folder).name
    return _checked_series(Path(folder), uid, items)


def _require(ds, path: Path, *names: str) -> None:
    missing = [n for n in names if getattr(ds, n, None) in (None, "")]
    if missing:
        raise DatasetError(f"{path}: missing {', '.join(missing)} (needed to place the slice in space)")


def _checked_series(folder: Path, uid: str, items: Sequence[tuple]) -> DicomSeries:
    where = f"{folder}: series {uid}"
    first_path, first = items[0]
    for path, ds in items:
        _require(ds, path, "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise DatasetError(f"{where}: {path} is a multi-frame (enhanced) image; only single-frame series are read")
        if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
            raise DatasetError(f"{where}: {path} is a colour image (SamplesPerPixel {ds.SamplesPerPixel}); only "
                               f"grey-level series are read")
        _check_decoder(ds, path)
    if len(items) == 1:
        raise DatasetError(f"{where}: only one slice ({first_path}); a volume needs at least two")
    iop0 = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
    for path, ds in items[1:]:
        iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        if iop.shape != iop0.shape or not np.allclose(iop, iop0, atol=ORIENTATION_TOLERANCE):
            raise DatasetError(f"{where}: inconsistent orientation within the series: {path} has "
                               f"ImageOrientationPatient {tuple(iop)}, {first_path} has {tuple(iop0)}")
        for attr in ("Rows", "Columns", "PixelSpacing", "FrameOfReferenceUID"):
            a, b = getattr(first, attr, None), getattr(ds, attr, None)
            same = np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), atol=1e-6) \
                if attr == "PixelSpacing" else a == b
            if not same:
                raise DatasetError(f"{where}: mixed series: {attr} is {b} in {path} but {a} in {first_path}")
    direction = orthonormal_direction(iop0[:3], iop0[3:], f"{where}: {first_path}")
    normal = direction[:, 2]
    ipp = np.asarray([np.asarray(ds.ImagePositionPatient, dtype=np.float64) for _, ds in items])
    along = ipp @ normal
    order = np.argsort(along, kind="stable")
    along, ipp = along[order], ipp[order]
    paths = [items[i][0] for i in order]
    steps = np.diff(along)
    median = float(np.median(steps))
    dup = np.flatnonzero(steps <= max(1e-4, SPACING_TOLERANCE * median))
    if dup.size:
        i = int(dup[0])
        raise DatasetError(f"{where}: duplicated slice position {along[i]:.4f} mm along the normal: {paths[i]} and "
                           f"{paths[i + 1]}")
    gaps = np.flatnonzero(steps > 1.5 * median)
    if gaps.size:
        i = int(gaps[0])
        raise DatasetError(f"{where}: missing slice(s): a gap of {steps[i]:.4f} mm between {paths[i]} and "
                           f"{paths[i + 1]} where the other slices are {median:.4f} mm apart")
    if np.abs(steps - median).max() > SPACING_TOLERANCE * median:
        raise DatasetError(f"{where}: non-uniform slice spacing: steps from {steps.min():.4f} to {steps.max():.4f} mm "
                           f"(more than {SPACING_TOLERANCE:.0%} apart); resample the series before using it")
    pixel = np.asarray(first.PixelSpacing, dtype=np.float64)  # [between rows, between columns]
    drift = ipp - ipp[0]
    across = drift - np.outer(drift @ normal, normal)
    worst = int(np.argmax(np.linalg.norm(across, axis=1)))
    if np.linalg.norm(across[worst]) > TILT_TOLERANCE * pixel.min():
        angle = np.degrees(np.arctan2(np.linalg.norm(across[worst]), abs(drift[worst] @ normal)))
        drift_mm = float(np.linalg.norm(across[worst]))
        raise DatasetError(f"{where}: gantry tilt or sheared slices: positions drift {drift_mm:.3f} "
                           f"mm across the slice normal ({angle:.2f} degrees); resample the series to an "
                           f"orthogonal grid first")
    step = float((along[-1] - along[0]) / (len(along) - 1))
    grid = Grid((int(first.Columns), int(first.Rows), len(paths)), (float(pixel[1]), float(pixel[0]), step),
                tuple(float(v) for v in ipp[0]), tuple(float(v) for v in direction.ravel()))
    return DicomSeries(folder, uid, str(getattr(first, "StudyInstanceUID", "")),
                       str(getattr(first, "FrameOfReferenceUID", "")), str(getattr(first, "Modality", "")),
                       str(getattr(first, "SeriesDescription", "")), tuple(paths), grid)


def _check_decoder(ds, path: Path) -> None:
    """A compressed transfer syntax needs a pydicom decoder plugin: say which syntax and what to install."""
    from pydicom.pixels import get_decoder

    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is None or not ts.is_compressed:
        return
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as e:
        raise DatasetError(f"{path}: transfer syntax {ts.name} ({ts}) cannot be decoded by pydicom") from e
    if not decoder.is_available:
        raise DatasetError(f"{path}: pixel data is compressed as {ts.name} ({ts}) and no decoder for it is installed: "
                           f"{DICOM_EXTRA} (pydicom's options: {'; '.join(decoder.missing_dependencies)})")


def read_series_image(series: DicomSeries):
    """The series as a SimpleITK image on ``series.grid``, rescale slope and intercept applied."""
    import SimpleITK as sitk
    import pydicom

    slices, slopes, intercepts = [], [], []
    rows, cols = series.grid.size[1], series.grid.size[0]
    for f in series.files:
        try:
            ds = pydicom.dcmread(f)
            arr = ds.pixel_array
        except Exception as e:  # noqa: BLE001 - decoder plugins raise many types
            raise DatasetError(f"{f}: cannot decode the pixel data: {e}") from e
        if arr.shape != (rows, cols):
            raise DatasetError(f"{f}: pixel data of shape {arr.shape}, expected ({rows}, {cols})")
        slices.append(arr)
        slopes.append(float(getattr(ds, "RescaleSlope", 1) or 1))
        intercepts.append(float(getattr(ds, "RescaleIntercept", 0) or 0))
    whole = all(float(s).is_integer() for s in slopes + intercepts)
    out = np.empty((len(slices), rows, cols), dtype=np.float64 if not whole else np.int64)
    for k, (arr, s, i) in enumerate(zip(slices, slopes, intercepts)):
        out[k] = arr.astype(out.dtype) * (int(s) if whole else s) + (int(i) if whole else i)
    if whole and out.min(initial=0) >= -32768 and out.max(initial=0) <= 32767:
        out = out.astype(np.int16)
    elif whole and out.min(initial=0) >= -2 ** 31 and out.max(initial=0) < 2 ** 31:
        out = out.astype(np.int32)
    else:
        out = out.astype(np.float32)
    image = sitk.GetImageFromArray(out)
    series.grid.apply(image)
    return image


def read_series_headers(series: DicomSeries) -> list:
    """The series' datasets in slice order, without pixel data (the references of DICOM-SEG / RTSTRUCT)."""
    import pydicom

    return [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files]
