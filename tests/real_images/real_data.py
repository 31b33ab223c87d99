"""Where the real images of these tests live, and readers of their headers that do not use SimpleITK.

``scripts/fetch_real_data.sh`` puts them there (CI runs it before the tests):

* the pyradiomics 3.0.1 source distribution (PyPI) in ``$NNUNET_CAUSAL_DATA_CACHE`` (default
  ``~/.cache/nnunet_causal/downloads``): brain MR, chest CT and breast MR cases with lesion labels, NRRD in
  LPS space with anisotropic spacing;
* Debian's mricron-data in ``/usr/share/mricron/templates``: the Colin27 T1 brain (``ch2.nii.gz``) and the
  AAL atlas on its grid (``aal.nii.gz``, names in ``aal.nii.txt``).

A missing one skips the test with the command that fetches it; under ``CI=true`` that skip is a failure
(tests/conftest.py).
"""
from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest

CACHE = Path(os.environ.get("NNUNET_CAUSAL_DATA_CACHE", Path.home() / ".cache" / "nnunet_causal" / "downloads"))
PYRADIOMICS_SDIST = CACHE / "pyradiomics-3.0.1.tar.gz"
TEMPLATES = Path("/usr/share/mricron/templates")
COLIN27, AAL, AAL_NAMES = TEMPLATES / "ch2.nii.gz", TEMPLATES / "aal.nii.gz", TEMPLATES / "aal.nii.txt"
PYRADIOMICS_CASES = ("brain1", "brain2", "breast1", "lung1", "lung2")
FETCH = "run scripts/fetch_real_data.sh"


def require(*paths: Path) -> None:
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        pytest.skip(f"real data missing ({', '.join(missing)}): {FETCH}")


def extract_pyradiomics(dest: Path) -> Path:
    """The sdist's ``data/*.nrrd`` cases (not its baselines) extracted under ``dest``; returns the data folder."""
    require(PYRADIOMICS_SDIST)
    with tarfile.open(PYRADIOMICS_SDIST) as tar:
        members = [m for m in tar.getmembers() if re.fullmatch(r"pyradiomics-3\.0\.1/data/[a-z0-9]+_(image|label)\.nrrd",
                                                                 m.name)]
        tar.extractall(dest, members=members, filter="data")
    return dest / "pyradiomics-3.0.1" / "data"


def nrrd_geometry(path: Path) -> Dict[str, np.ndarray]:
    """Size, spacing, origin and direction (ITK's LPS convention, direction columns = index axes) of an NRRD
    file, read from its text header by hand -- the reference the product's readers are checked against."""
    header = {}
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("latin-1").rstrip("\r\n")
            if not line:
                break
            if line.startswith("#") or ":" not in line:
                continue
            key, value = line.split(":", 1)
            header[key.strip().lower()] = value.lstrip("=").strip()
    vectors = [np.array([float(x) for x in v.split(",")]) for v in re.findall(r"\(([^)]*)\)", header["space directions"])]
    origin = np.array([float(x) for x in re.findall(r"\(([^)]*)\)", header["space origin"])[0].split(",")])
    directions = np.stack(vectors, 1)                         # column i = step along index axis i, in mm
    space = header["space"].lower()
    flip = {"left-posterior-superior": (1, 1, 1), "lps": (1, 1, 1),
            "right-anterior-superior": (-1, -1, 1), "ras": (-1, -1, 1)}[space]
    directions, origin = directions * np.array(flip)[:, None], origin * np.array(flip)
    spacing = np.linalg.norm(directions, axis=0)
    return {"size": np.array([int(s) for s in header["sizes"].split()]), "spacing": spacing, "origin": origin,
            "direction": directions / spacing}


def nifti_geometry(path: Path) -> Dict[str, np.ndarray]:
    """The same from a NIfTI file through nibabel's affine (RAS), converted to ITK's LPS."""
    import nibabel as nib

    img = nib.load(str(path))
    affine = img.affine.copy()
    affine[:2] *= -1                                          # RAS -> LPS
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return {"size": np.array(img.shape[:3]), "spacing": spacing, "origin": affine[:3, 3],
            "direction": affine[:3, :3] / spacing}


def sitk_geometry(image) -> Dict[str, np.ndarray]:
    return {"size": np.array(image.GetSize()), "spacing": np.array(image.GetSpacing()),
            "origin": np.array(image.GetOrigin()), "direction": np.array(image.GetDirection()).reshape(3, 3)}


def assert_same_geometry(got: Dict[str, np.ndarray], want: Dict[str, np.ndarray], where: str,
                         atol: float = 1e-4) -> None:
    assert np.array_equal(got["size"], want["size"]), f"{where}: size {got['size']} != {want['size']}"
    for key in ("spacing", "origin", "direction"):
        assert np.allclose(got[key], want[key], atol=atol), f"{where}: {key} {got[key]} != {want[key]}"


def physical_centroid(label: np.ndarray, geometry: Dict[str, np.ndarray]) -> np.ndarray:
    """Centre of the non-zero voxels of ``label`` (numpy order z, y, x) in mm, LPS."""
    index = np.argwhere(label)[:, ::-1].mean(0)               # (x, y, z) index
    return geometry["origin"] + geometry["direction"] @ (geometry["spacing"] * index)


def grid_of(path: Path) -> Tuple[tuple, tuple, tuple, tuple]:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection()
