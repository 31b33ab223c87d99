"""Voxel grids and their comparison: the one description of "where the voxels are" that every format
reader and writer in :mod:`nnunet_causal.formats` speaks.

A :class:`Grid` is SimpleITK's (and ITK's) convention, in LPS patient coordinates (mm):

- ``size``: voxels along each index axis, ``(x, y, z)`` (numpy arrays of the image are ``(z, y, x)``);
- ``spacing``: mm between voxel centres along each index axis;
- ``origin``: physical position of the centre of voxel ``(0, 0, 0)``;
- ``direction``: the ``D x D`` matrix, row-major, whose column ``j`` is the unit vector of index axis ``j``.

The physical point of index ``i`` is ``origin + direction @ (spacing * i)``. For a DICOM series the
columns are the row direction, the column direction (ImageOrientationPatient) and the slice normal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from nnunet_causal.errors import DatasetError

#: agreement required of two grids said to be the same (mm for spacing and origin, unitless for direction)
GRID_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Grid:
    """Where an image's voxels are (see the module docstring for the convention)."""
    size: Tuple[int, ...]
    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]

    @property
    def ndim(self) -> int:
        return len(self.size)

    @property
    def matrix(self) -> np.ndarray:
        """Direction as a ``(D, D)`` array (columns: index axes)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(self.ndim, self.ndim)

    @classmethod
    def of(cls, image) -> "Grid":
        """The grid of a SimpleITK image."""
        return cls(tuple(int(s) for s in image.GetSize()), tuple(float(s) for s in image.GetSpacing()),
                   tuple(float(o) for o in image.GetOrigin()), tuple(float(d) for d in image.GetDirection()))

    def apply(self, image) -> None:
        """Give the SimpleITK ``image`` (same size) this grid's spacing, origin and direction."""
        if tuple(image.GetSize()) != self.size:
            raise ValueError(f"image size {image.GetSize()} differs from the grid's {self.size}")
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)

    def index_to_physical(self, index: Sequence[float]) -> np.ndarray:
        """Physical point (mm) of a continuous index ``(x, y, z)``; ``index`` may be ``(N, D)``."""
        idx = np.asarray(index, dtype=np.float64)
        return np.asarray(self.origin) + (idx * np.asarray(self.spacing)) @ self.matrix.T

    def physical_to_index(self, point: Sequence[float]) -> np.ndarray:
        """Continuous index ``(x, y, z)`` of a physical point (mm); ``point`` may be ``(N, D)``."""
        p = np.asarray(point, dtype=np.float64) - np.asarray(self.origin)
        return (p @ np.linalg.inv(self.matrix).T) / np.asarray(self.spacing)


def grid_differences(a: Grid, b: Grid, tolerance: float = GRID_TOLERANCE) -> List[str]:
    """Human-readable differences between two grids (empty: the same grid within ``tolerance``)."""
    out = []
    if a.size != b.size:
        out.append(f"size {b.size} vs {a.size}")
    for what in ("spacing", "origin", "direction"):
        x, y = np.asarray(getattr(a, what)), np.asarray(getattr(b, what))
        if x.shape != y.shape or not np.allclose(x, y, rtol=0, atol=tolerance):
            out.append(f"{what} {tuple(np.round(y, 6))} vs {tuple(np.round(x, 6))}")
    return out


def check_same_grid(expected: Grid, found: Grid, found_name: str, expected_name: str,
                    tolerance: float = GRID_TOLERANCE) -> None:
    """Raise :class:`DatasetError` naming ``found_name`` when its grid is not ``expected``'s."""
    diff = grid_differences(expected, found, tolerance)
    if diff:
        raise DatasetError(f"{found_name}: not on the grid of {expected_name}: {'; '.join(diff)}")


def orthonormal_direction(row: Sequence[float], column: Sequence[float], where: str,
                          tolerance: float = 1e-4) -> np.ndarray:
    """The ``3 x 3`` direction whose columns are ``row``, ``column`` and their cross product.

    ``row`` and ``column`` (DICOM ImageOrientationPatient) must be unit vectors at a right angle within
    ``tolerance``; they are normalised (DICOM stores them as decimal strings), ``where`` names the source in
    the error.
    """
    r, c = np.asarray(row, dtype=np.float64), np.asarray(column, dtype=np.float64)
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    if abs(nr - 1) > tolerance or abs(nc - 1) > tolerance or abs(float(r @ c)) > tolerance:
        raise DatasetError(f"{where}: ImageOrientationPatient {tuple(r)} {tuple(c)} is not two orthogonal unit "
                           f"vectors")
    r, c = r / nr, c / nc
    return np.stack([r, c, np.cross(r, c)], axis=1)
