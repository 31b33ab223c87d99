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
