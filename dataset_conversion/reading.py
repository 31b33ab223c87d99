"""Checked reading of downloads for the converters: images and masks whose errors name the file, label value
and grid checks, and finding the expected folders of an official layout (scan first, before anything is
written; see :mod:`dataset_conversion.common`)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence

import numpy as np

from nnunet_causal.errors import DatasetError

logger = logging.getLogger(__name__)


def read_sitk(path: Path):
    """Read an image with SimpleITK; a corrupt or unsupported file raises :class:`DatasetError` naming it."""
    import SimpleITK as sitk

    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        raise DatasetError(f"{path}: cannot read the image (corrupt or not a medical image file): {first}") from e


def read_rgb(path: Path) -> np.ndarray:
    """Read a 2D colour image (JPEG, PNG, TIFF) as ``(H, W, 3)`` uint8; errors name the file."""
    arr = _read_2d(path)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DatasetError(f"{path}: expected an RGB image, got an array of shape {arr.shape}")
    return np.ascontiguousarray(arr[..., :3])


def read_gray(path: Path) -> np.ndarray:
    """Read a 2D mask image as ``(H, W)`` uint8 (colour masks are averaged over their channels)."""
    arr = _read_2d(path)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=2)
    if arr.ndim != 2:
        raise DatasetError(f"{path}: expected a 2D mask, got an array of shape {arr.shape}")
    return arr


def _read_2d(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I", "F"):
                arr = np.asarray(im)
            else:
                arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB", "RGBA") else im)
        return arr
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if path.suffix.lower() in (".tif", ".tiff"):
            try:  # scientific TIFF flavours PIL does not decode
                import tifffile

                return np.asarray(tifffile.imread(str(path)))
            except Exception as e2:  # noqa: BLE001 - reported with the file name below
                e = e2
        raise DatasetError(f"{path}: cannot read the image (corrupt or unsupported format): {e}") from e


def binarize_mask(mask: np.ndarray, path: Path, threshold: int = 128) -> np.ndarray:
    """``mask >= threshold`` as uint8 {0, 1} (JPEG masks carry compression noise around 0 and 255)."""
    if mask.max() > 255 or mask.min() < 0:
        raise DatasetError(f"{path}: mask values must lie in 0..255, found {mask.min()}..{mask.max()}")
    return (mask >= threshold).astype(np.uint8)


def check_label_values(values: np.ndarray, allowed: Iterable[int], path: Path) -> None:
    """Raise :class:`DatasetError` naming ``path`` when the label map holds values outside ``allowed``."""
    present = np.unique(values)
    bad = sorted(set(int(v) for v in present) - set(int(a) for a in allowed))
    if bad:
        raise DatasetError(f"{path}: unexpected label value(s) {bad}; this dataset's labels are "
                           f"{sorted(set(int(a) for a in allowed))}")


def check_same_grid(image, label, image_path: Path, label_path: Path, tolerance: float = 1e-3) -> None:
    """The label must lie on the image's voxel grid (size, spacing, origin, direction)."""
    if image.GetSize() != label.GetSize():
        raise DatasetError(f"{label_path}: size {label.GetSize()} differs from its image {image_path} "
                           f"({image.GetSize()})")
    for what in ("GetSpacing", "GetOrigin", "GetDirection"):
        a, b = np.array(getattr(image, what)()), np.array(getattr(label, what)())
        scale = max(1.0, float(np.abs(a).max(initial=0.0)))
        if not np.allclose(a, b, atol=tolerance * scale):
            raise DatasetError(f"{label_path}: {what[3:].lower()} {tuple(b)} differs from its image {image_path} "
                               f"({tuple(a)})")


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise an error that says which part of the layout is missing."""
    if not path.is_dir():
        raise DatasetError(f"{path} does not exist: expected {what}")
    return path


def find_first_dir(root: Path, candidates: Sequence[str], what: str) -> Path:
    """First of ``root/c`` (c in ``candidates``, relative paths) that is a folder; error lists all tried."""
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    tried = ", ".join(str(root / c) for c in candidates)
    raise DatasetError(f"{what} not found under {root} (looked for {tried})")


def locate_downloads(input_dir: Optional[Path], explicit: Mapping[str, Optional[Path]],
                     hints: Mapping[str, Sequence[str]], what: str, minimum: int = 2) -> Dict[str, Path]:
    """``{source: folder}`` for a composite: explicit paths first, then sub-folders of ``input_dir`` whose
    lower-cased name contains one of the source's ``hints``. Sources come back in the order of ``hints``.

    Raises :class:`DatasetError` for a missing folder or fewer than ``minimum`` sources (naming what was
    found, what is missing and how to point at it).
    """
    found: Dict[str, Path] = {k: Path(v) for k, v in explicit.items() if v is not None}
    if input_dir is not None:
        input_dir = Path(input_dir)
        if not input_dir.is_dir():
            raise DatasetError(f"{input_dir} does not exist: expected a folder holding the {what} downloads")
        for child in sorted(p for p in input_dir.iterdir() if p.is_dir()):
            for name, words in hints.items():
                if name not in found and any(h in child.name.lower() for h in words):
                    found[name] = child
                    break
    for name, folder in found.items():
        if not folder.is_dir():
            raise DatasetError(f"{folder} (given for {name}) does not exist")
    if len(found) < minimum:
        missing = [n for n in hints if n not in found]
        options = "/".join(f"--{n}" for n in hints)
        count = {2: "two", 3: "three"}.get(minimum, str(minimum))
        raise DatasetError(f"the {what} composite needs at least {count} sources; found {sorted(found) or 'none'}"
                           f"{' under ' + str(input_dir) if input_dir else ''}, missing {missing} (folder names "
                           f"must contain {dict(hints)}, or use {options})")
    logger.info("sources: %s", ", ".join(f"{n} <- {p}" for n, p in found.items()))
    return {n: found[n] for n in hints if n in found}
