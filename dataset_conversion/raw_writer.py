"""Staging and atomic publication of a converted dataset (steps 2 and 3 of the converters' contract in
:mod:`dataset_conversion.common`), and the copy of one NIfTI case with checked, remapped labels.

A dataset is written into ``$nnUNet_raw/.DatasetXXX_Name.partial-*`` and renamed to ``DatasetXXX_Name`` only
when every case converted; the previous dataset is moved to ``.DatasetXXX_Name.old-*/previous`` first and
deleted only once the new one is in place (moved back if it cannot be). A later run deletes staging folders
of killed runs but never a backup of a completed dataset: it restores it when the dataset folder is
missing, else warns and keeps it.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from dataset_conversion.reading import check_label_values, check_same_grid, read_sitk
from nnunet_causal.data.raw_dataset import make_temp_dir, write_dataset_json
from nnunet_causal.errors import DatasetError

logger = logging.getLogger(__name__)

DATASET_FOLDER = re.compile(r"^Dataset(\d{3})_(.+)$")


def nnunet_raw_root(explicit: Optional[os.PathLike] = None) -> Path:
    """The folder datasets are written to: ``explicit`` or ``$nnUNet_raw`` (error if neither)."""
    root = explicit or os.environ.get("nnUNet_raw")
    if not root:
        raise DatasetError("nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw or pass -o FOLDER")
    return Path(root)


class RawDatasetWriter:
    """Stage a dataset in a hidden sibling folder and publish it with one rename (see module docstring).

    Use as a context manager::

        with RawDatasetWriter(raw_root, 801, "AMOS") as w:
            w.write_nifti_image("amos_0001", 0, image)
            w.write_nifti_label("amos_0001", label_array, like=image)
            w.finish(channel_names=..., labels=..., ...)

    ``finish`` must be called inside the ``with`` block; leaving it by an exception (or without ``finish``)
    deletes the staging folder.
    """

    def __init__(self, raw_root: os.PathLike, dataset_id: int, name: str):
        if not 1 <= int(dataset_id) <= 999:
            raise DatasetError(f"dataset id must be 1..999, got {dataset_id}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name):
            raise DatasetError(f"dataset name '{name}' must be letters, digits, '-' or '_'")
        self.raw_root = Path(raw_root)
        self.dataset_id = int(dataset_id)
        self.folder_name = f"Dataset{self.dataset_id:03d}_{name}"
        self.final = self.raw_root / self.folder_name
        self.staging: Optional[Path] = None
        self.num_training = 0
        self._finished = False

    # -- context
    def __enter__(self) -> "RawDatasetWriter":
        self._check_id_is_free()
        self.raw_root.mkdir(parents=True, exist_ok=True)
        for stale in self.raw_root.glob(f".{self.folder_name}.partial-*"):  # left by a killed earlier run
            logger.warning("removing %s, left behind by an interrupted conversion", stale)
            shutil.rmtree(stale, ignore_errors=True)
        self._recover_backups()
        self.staging = make_temp_dir(self.raw_root, prefix=f".{self.folder_name}.partial-")
        for sub in ("imagesTr", "labelsTr"):
            (self.staging / sub).mkdir()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self._finished:
            shutil.rmtree(self.staging, ignore_errors=True)
            raise RuntimeError("RawDatasetWriter left without finish(): nothing was published")
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)

    def _check_id_is_free(self) -> None:
        if not self.raw_root.is_dir():
            return
        for p in self.raw_root.iterdir():
            m = DATASET_FOLDER.match(p.name)
            if m and int(m.group(1)) == self.dataset_id and p.name != self.folder_name:
                raise DatasetError(f"dataset id {self.dataset_id} is already used by {p}; choose another id with -d")

    # -- files
    def path(self, split: str, case: str, channel: Optional[int], ending: str) -> Path:
        """Staging path of ``case`` in ``images{split}`` (channel given) or ``labels{split}``."""
        if channel is None:
            return self.staging / f"labels{split}" / f"{case}{ending}"
        return self.staging / f"images{split}" / f"{case}_{channel:04d}{ending}"

    def write_nifti_image(self, case: str, channel: int, image, split: str = "Tr") -> Path:
        """Write a SimpleITK image (geometry kept as is) to ``images{split}/{case}_{channel:04d}.nii.gz``."""
        import SimpleITK as sitk

        out = self.path(split, case, channel, ".nii.gz")
        out.parent.mkdir(exist_ok=True)
        sitk.WriteImage(image, str(out), True)
        return out

    def write_nifti_label(self, case: str, label: np.ndarray, like, split: str = "Tr") -> Path:
        """Write a label array ``(z, y, x)`` as uint8 on the grid of the SimpleITK image ``like``."""
        import SimpleITK as sitk

        if label.max(initial=0) > 255:
            raise DatasetError(f"case {case}: label values above 255 cannot be stored as uint8")
        img = sitk.GetImageFromArray(label.astype(np.uint8))
        img.CopyInformation(like)
        out = self.path(split, case, None, ".nii.gz")
        out.parent.mkdir(exist_ok=True)
        sitk.WriteImage(img, str(out), True)
        return out

    def write_png(self, case: str, array: np.ndarray, channel: Optional[int] = 0, split: str = "Tr") -> Path:
        """Write an RGB image (``channel=0``) or a label map (``channel=None``) as PNG."""
        from PIL import Image

        out = self.path(split, case, channel, ".png")
        out.parent.mkdir(exist_ok=True)
        Image.fromarray(np.ascontiguousarray(array.astype(np.uint8))).save(out, format="PNG")
        return out

    # -- publication
    def finish(self, channel_names: Mapping, labels: Mapping, file_ending: str, *,
               prompts: Mapping[str, Sequence[str]], domains: Mapping[str, Mapping], imaging_family: str,
               partial_labels: Optional[Mapping[str, Sequence[str]]] = None, **extra) -> Path:
        """Write dataset.json into the staging folder and publish it as ``DatasetXXX_Name``.

        ``numTraining`` is counted from ``labelsTr``; every training case must have a domain record.
        """
        training = sorted(p.name[: -len(file_ending)] for p in (self.staging / "labelsTr").iterdir()
                          if p.name.endswith(file_ending))
        if not training:
            raise DatasetError(f"no training cases were converted for {self.folder_name}")
        missing = [c for c in training if c not in domains]
        if missing:
            raise DatasetError(f"internal: no domain record for case(s) {missing[:5]}")
        if partial_labels:
            logger.warning("%d case(s) of %s label only some structures (dataset.json 'partial_labels'); "
                           "train them with the text trainers, which mask the loss of unlabelled structures",
                           len(partial_labels), self.folder_name)
            extra["partial_labels"] = {str(c): list(v) for c, v in partial_labels.items()}
        (self.staging / "imagesTs").mkdir(exist_ok=True)
        write_dataset_json(self.staging, channel_names, labels, len(training), file_ending, prompts=prompts,
                           domains=domains, dataset_name=self.folder_name, imaging_family=imaging_family, **extra)
        self._publish()
        self._finished = True
        logger.info("wrote %d training cases to %s", len(training), self.final)
        return self.final

    def _recover_backups(self) -> None:
        """Backups ``.{name}.old-*`` of a completed dataset, left by a publication that did not finish:
        put the dataset back when its folder is missing, otherwise keep the backup and say where it is."""
        for backup in sorted(self.raw_root.glob(f".{self.folder_name}.old-*")):
            previous = backup / "previous"
            if not previous.is_dir():
                if not any(backup.iterdir()):
                    backup.rmdir()  # an empty backup folder holds nothing to keep
                continue
            if not self.final.exists():
                os.replace(previous, self.final)
                backup.rmdir()
                logger.warning("restored %s from %s, left by an interrupted publication", self.final, backup)
            else:
                logger.warning("%s holds an earlier version of %s, left by an interrupted publication; it is "
                               "kept: delete it when you no longer need it", previous, self.final)

    def _publish(self) -> None:
        """Rename the staging folder to the final name; the previous dataset is deleted only afterwards."""
        backup = None
        if self.final.exists():
            backup = make_temp_dir(self.raw_root, prefix=f".{self.folder_name}.old-")
            os.replace(self.final, backup / "previous")
        try:
            os.replace(self.staging, self.final)
        except OSError as e:
            if backup is None:
                raise
            try:
                os.replace(backup / "previous", self.final)
            except OSError as e2:
                raise DatasetError(f"cannot publish {self.final} ({e}) nor put its previous version back "
                                   f"({e2}): the previous dataset is kept in {backup / 'previous'}; move it "
                                   f"back to {self.final} by hand") from e
            backup.rmdir()
            raise DatasetError(f"cannot publish {self.final}: {e}; the previous version is unchanged") from e
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)


def convert_nifti_case(writer: RawDatasetWriter, case: str, image_path: Path, label_path: Optional[Path],
                       label_map: Mapping[int, int], split: str = "Tr") -> Optional[np.ndarray]:
    """Copy one single-channel volume and (if given) its label map, remapping source label values.

    ``label_map`` maps every allowed source value to its output value (``{0: 0, 1: 1, ...}``); any other
    value raises :class:`DatasetError` naming ``label_path``. The label must lie on the image's grid.
    Returns the output label values present (``None`` without a label).
    """
    import SimpleITK as sitk

    image = read_sitk(image_path)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DatasetError(f"{image_path}: expected a single-channel 3D volume, got {image.GetDimension()}D with "
                           f"{image.GetNumberOfComponentsPerPixel()} component(s)")
    writer.write_nifti_image(case, 0, image, split=split)
    if label_path is None:
        return None
    label = read_sitk(label_path)
    check_same_grid(image, label, image_path, label_path)
    values = sitk.GetArrayFromImage(label)
    if not np.all(np.isfinite(values)) or not np.all(np.equal(np.mod(values, 1), 0)):
        raise DatasetError(f"{label_path}: label values must be whole numbers")
    values = values.astype(np.int64)
    check_label_values(values, label_map.keys(), label_path)
    lut = np.zeros(max(label_map) + 1, dtype=np.uint8)
    for src, dst in label_map.items():
        lut[src] = dst
    out = lut[values]
    writer.write_nifti_label(case, out, like=image, split=split)
    return np.unique(out)
