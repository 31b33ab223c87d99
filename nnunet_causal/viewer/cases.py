"""The cases of an images folder in nnU-Net's naming, read with the model's reader, cut into PNG slices.

Geometry: every image is held as nnU-Net's reader returns it, ``(C, Z, Y, X)`` (2D images have ``Z == 1``), and
label maps as ``(Z, Y, X)`` -- the arrays nnU-Net predicts on and writes back, so a mask pixel sits on its
image pixel without any resampling in the browser. Views: ``axial`` cuts ``Z`` (a ``Y x X`` picture),
``coronal`` cuts ``Y`` (``Z x X``, top row = last ``Z``), ``sagittal`` cuts ``X`` (``Z x Y``, likewise); 2D
images have the axial view only. Display contrast is fixed per channel from the whole image (0.5 / 99.5
percentiles; one window for all three channels of a 2D RGB photo, which is shown in colour) so it does not
flicker while scrolling. Multi-channel volumes show their first channel.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_causal.errors import DatasetError

VIEWS = ("axial", "coronal", "sagittal")


@dataclass(frozen=True)
class CaseFiles:
    """One case: its identifier and its channel files (``CASE_0000<ending>``, ``CASE_0001<ending>``, ...)."""
    case: str
    files: Tuple[str, ...]


def list_cases(folder: Path, file_ending: str) -> List[CaseFiles]:
    """Cases of ``folder`` in nnU-Net's naming, sorted, each with its channel files ``_0000`` ... ``_000k``
    (numbers without gaps; a case with a gap is left out). Whether the count fits the model is checked when a
    case is predicted (an RGB PNG is one file holding three channels). The listing is the only source of the
    paths the viewer opens. A folder of DICOM series lists one case per series (staged with exact geometry)."""
    from nnunet_causal.formats.dicom_cases import staged_dicom_folder
    folder = staged_dicom_folder(Path(folder), file_ending)
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(file_ending) + r"$")
    found: Dict[str, Dict[int, Path]] = {}
    for p in sorted(Path(folder).iterdir()):
        m = pattern.match(p.name)
        if m and p.is_file():
            found.setdefault(m.group(1), {})[int(m.group(2))] = p.resolve()
    return [CaseFiles(case, tuple(str(ch[i]) for i in range(len(ch))))
            for case, ch in sorted(found.items()) if sorted(ch) == list(range(len(ch)))]


class CaseImage:
    """A case's image ``(C, Z, Y, X)`` with its display window; renders slices as PNG bytes."""

    def __init__(self, image: np.ndarray, properties: dict, is_2d: bool):
        if image.ndim != 4:
            raise DatasetError(f"expected an image of shape (C, Z, Y, X), got {image.shape}")
        self.image = image
        self.properties = properties   # the reader's, handed back to its write_seg when a mask is saved
        self.spacing = [float(s) for s in properties.get("spacing", [1.0] * 3)]
        self.is_2d = is_2d
        self.rgb = is_2d and image.shape[0] == 3
        # one window for the three channels of a photo (keeps its colours), one per channel otherwise
        flat = image.reshape(1 if self.rgb else image.shape[0], -1)
        lo, hi = np.percentile(flat, 0.5, axis=1), np.percentile(flat, 99.5, axis=1)
        window = [(float(a), float(b) if b > a else float(a) + 1.0) for a, b in zip(lo, hi)]
        self.window = window * 3 if self.rgb else window

    @classmethod
    def read(cls, files: Sequence[str], reader_writer_class) -> "CaseImage":
        try:
            image, props = reader_writer_class().read_images(list(files))
        except Exception as e:  # noqa: BLE001 - any reader failure is reported with the file names
            raise DatasetError(f"cannot read {', '.join(files)}: {e}") from e
        return cls(np.asarray(image, dtype=np.float32), props, image.shape[1] == 1)

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(int(s) for s in self.image.shape[1:])

    def views(self) -> List[str]:
        return ["axial"] if self.is_2d else list(VIEWS)

    def view_info(self) -> Dict[str, dict]:
        """Per view: number of slices, picture size (height, width) and pixel aspect (height / width)."""
        z, y, x = self.shape
        sz, sy, sx = self.spacing[-3:] if len(self.spacing) >= 3 and not self.is_2d else (1.0, 1.0, 1.0)
        info = {"axial": {"slices": z, "size": [y, x], "aspect": sy / sx}}
        if not self.is_2d:
            info["coronal"] = {"slices": y, "size": [z, x], "aspect": sz / sx}
            info["sagittal"] = {"slices": x, "size": [z, y], "aspect": sz / sy}
        return info

    def slice_png(self, view: str, index: int) -> bytes:
        channels = [self._scaled(c, cut(self.image[c], view, index)) for c in (range(3) if self.rgb else [0])]
        return to_png(np.stack(channels, -1) if self.rgb else channels[0])

    def _scaled(self, c: int, a: np.ndarray) -> np.ndarray:
        lo, hi = self.window[c]
        return (np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def check_view(view: str, index: int, shape: Tuple[int, int, int], is_2d: bool) -> None:
    if view not in VIEWS or (is_2d and view != "axial"):
        raise DatasetError(f"unknown view '{view}' (this case has: {'axial' if is_2d else ', '.join(VIEWS)})")
    n = shape[VIEWS.index(view)]
    if not 0 <= index < n:
        raise DatasetError(f"slice {index} is outside 0..{n - 1} of the {view} view")


def cut(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    """The ``view`` picture at ``index`` of a ``(Z, Y, X)`` array (see the module docstring for orientation)."""
    if view == "axial":
        return volume[index]
    if view == "coronal":
        return volume[::-1, index, :]
    return volume[::-1, :, index]


def label_slice_png(seg: np.ndarray, view: str, index: int) -> bytes:
    """8-bit PNG whose pixel values are the label values (the page colours them); labels above 255 clip."""
    return to_png(np.clip(cut(seg, view, index), 0, 255).astype(np.uint8))


def to_png(a: np.ndarray, mode: Optional[str] = None) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), mode).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
