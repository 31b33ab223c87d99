"""Volumes and DICOM series built in the test (pydicom through the package's series writer), and
header edits that make them bad in one precise way."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def rotation(ax: float, ay: float, az: float) -> tuple:
    from scipy.spatial.transform import Rotation

    return tuple(Rotation.from_euler("xyz", [ax, ay, az], degrees=True).as_matrix().ravel())


def volume(shape=(6, 10, 12), spacing=(0.7, 0.9, 2.5), origin=(10.0, -20.0, 30.5), direction=None, seed=0):
    """A SimpleITK int16 volume ``shape`` (z, y, x) with the given grid (identity direction by default)."""
    import SimpleITK as sitk

    arr = np.random.default_rng(seed).integers(-1000, 1000, shape).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def series(folder: Path, image=None, **kwargs) -> list:
    """Write ``image`` (default :func:`volume`) as a CT series in ``folder``; return its files in slice order."""
    from nnunet_causal.formats.dicom_write import write_ct_series

    return write_ct_series(image if image is not None else volume(), folder, **kwargs)


def edit(path: Path, **attrs) -> None:
    """Set DICOM attributes of one file (``ImagePositionPatient=[...]``...)."""
    import pydicom

    ds = pydicom.dcmread(path)
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.save_as(path)


def position(path: Path) -> list:
    import pydicom

    return [float(v) for v in pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient]
