"""Shared pieces of the dataset converters: staging, atomic publication, checked reading, prompts, CLI.

Every converter follows the same contract:

1. **Scan first.** The download is scanned and every case paired with its label before anything is written;
   a missing folder, a case without its label or an unreadable file raises :class:`DatasetError` naming
   the path.
2. **Write into a staging folder** ``$nnUNet_raw/.DatasetXXX_Name.partial-*`` beside the final one. Label
   values and image/label grids are checked per case while writing.
3. **Publish atomically.** Only when every case converted is the staging folder renamed to
   ``$nnUNet_raw/DatasetXXX_Name`` (an existing folder of the same name is replaced, so re-runs are
   idempotent). On any error the staging folder is deleted: nothing half-written is left behind.
   The previous dataset is first moved to a backup ``$nnUNet_raw/.DatasetXXX_Name.old-*/previous`` and
   deleted only once the new one is in place; if the new one cannot be put in place, the previous one is
   moved back. A backup is never deleted by a later run's clean-up (it holds a completed dataset): a run
   that finds one restores it when the dataset folder is missing, else warns and leaves it alone.

Label names are the canonical TotalSegmentator-style names of :mod:`nnunet_causal.text.vocabulary`
(``kidney_left``, ``portal_vein_and_splenic_vein``...), so models trained on different sources share
prompts; dataset.json carries ``prompts`` for each label, a ``domains`` record per case and
``imaging_family``.

Partial labels. A case whose label map covers only some of the dataset's structures (CHAOS CT labels the
liver only; composites mix sources) is listed in dataset.json's ``"partial_labels"``:
``{case_id: [names of the structures labelled in this case]}``. Zero in such a case means "background or
not annotated" for the structures it does not list. The text trainers read this key and mask the loss of
the unlisted structures for that case (nnU-Net's single ignore label cannot say "unlabelled for the
spleen but labelled for the liver" at the same voxel, so it is not used for this). Stock softmax trainers
ignore the key and would learn the unlabelled structures as background; the converters log a warning.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from nnunet_causal.data.raw_dataset import make_temp_dir, write_dataset_json
from nnunet_causal.errors import DatasetError, NnunetCausalError

logger = logging.getLogger(__name__)

DATASET_FOLDER = re.compile(r"^Dataset(\d{3})_(.+)$")


# --------------------------------------------------------------------------------------------- prompts
_ADJECTIVE_ENDINGS = ("ic", "al", "ar", "ous")


def prompts_for(names: Iterable[str], max_synonyms: int = 3) -> Dict[str, List[str]]:
    """``{label name: [readable name, synonym, ...]}`` from the anatomical vocabulary.

    The first prompt is the label name as text (``kidney_left`` -> ``left kidney``); up to ``max_synonyms``
    more come from the vocabulary entry of the name (a sided entry puts its side before its base organ's
    synonyms, e.g. ``left renal organ``).
    """
    from nnunet_causal.text.label_text import label_to_text
    from nnunet_causal.text.vocabulary import load_vocabulary

    vocabulary = load_vocabulary()
    out: Dict[str, List[str]] = {}
    for name in names:
        texts = [label_to_text(name)]
        term = vocabulary.terms.get(name)
        if term is not None:
            extra = list(term.synonyms)
            if term.side and term.base:
                extra += [f"{term.side} {b}" for b in vocabulary.bases.get(term.base, [])]
            for t in extra:
                if t.split()[-1].endswith(_ADJECTIVE_ENDINGS) or t.split()[-1] in ("ren", "hepar"):
                    continue  # "hepatic", "left renal": adjectives and Latin stems name no structure alone
                if t not in texts and len(texts) <= max_synonyms:
                    texts.append(t)
        out[name] = texts
    return out


# --------------------------------------------------------------------------------------------- reading
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


# --------------------------------------------------------------------------------------------- writing
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


# --------------------------------------------------------------------------------------------- CLI
def add_common_arguments(p: argparse.ArgumentParser, default_id: int, composite: bool = False) -> None:
    """``-i RAW_DOWNLOAD``, ``-d ID``, ``-o NNUNET_RAW`` shared by every converter.

    For a composite ``-i`` is optional (each source may be given with its own option) and names the folder
    holding the downloads.
    """
    if composite:
        p.add_argument("-i", dest="input", type=Path, default=None,
                       help="folder holding the unpacked downloads (found by folder name)")
    else:
        p.add_argument("-i", dest="input", required=True, type=Path, help="the unpacked download (see above)")
    p.add_argument("-d", dest="dataset_id", type=int, default=default_id,
                   help=f"nnU-Net dataset id of the output (default {default_id})")
    p.add_argument("-o", dest="raw_root", type=Path, default=None,
                   help="nnU-Net raw folder to write DatasetXXX_Name into (default: $nnUNet_raw)")


def script_main(build: Callable[[argparse.ArgumentParser], None], run: Callable[[argparse.Namespace], Path],
                argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point of ``python -m dataset_conversion.NAME``: parse, run, turn our errors into exit 2."""
    import sys

    p = argparse.ArgumentParser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter)
    build(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = run(args)
    except NnunetCausalError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def progress(items: Sequence, desc: str):
    """tqdm over ``items`` (quiet for fewer than 20 items, e.g. in tests)."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, disable=len(items) < 20, unit="case")


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
