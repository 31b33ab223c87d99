"""Your own labelled folder (images + label maps + a label-names file) -> nnU-Net raw, with prompts and domains.

No download: point ``-i`` at your folder. Layouts recognised (case id = file name without its ending)::

    FOLDER/images/CASE.nii.gz   FOLDER/labels/CASE.nii.gz       (also imagesTr/labelsTr, image(s)/label(s),
    FOLDER/images/CASE_0000.nrrd, CASE_0001.nrrd ...             img/mask(s), .../seg(mentations))
    FOLDER/images/CASE/ (a DICOM series)   FOLDER/labels/CASE.nrrd
    FOLDER/CASE_image.nrrd      FOLDER/CASE_label.nrrd          (flat: _image|_img / _label|_mask|_seg(mentation))

Images: NIfTI, NRRD, MHA/MHD, a folder holding one DICOM series (read with exact geometry by
:mod:`nnunet_causal.formats.dicom_series`), or PNG/JPG/BMP/TIFF for 2D (RGB; every case 2D then). Several
channels: ``CASE_0000``, ``CASE_0001``... Label maps: the same 3D formats on the image's grid, or 2D
PNG/TIFF of label values (palette PNGs by their indices).

``--names`` (required) says which value is which structure: JSON, CSV/TSV or the ``index name ...`` text
atlases ship (AAL's ``aal.nii.txt``; :mod:`nnunet_causal.formats.label_names`). Label values are renumbered
to 0..K in the order of the names file (nnU-Net needs consecutive labels); dataset.json keeps the original
values under ``source_label_values``. ``--domains`` (optional) gives domain records: JSON
``{case: {"domain": ..., "modality": ..., "style": ..., ...}}`` or CSV with a ``case`` column and one
column per key; cases without a record get ``{"domain": <dataset name>, "modality": --modality, "style":
"unspecified"}``.

Checked before anything is published (one-line errors naming the file): an image without a label map and
the reverse, duplicate case ids, a label map off its image's grid (size, spacing, origin, direction),
label values missing from the names file, non-integer label values, a folder holding several DICOM
series, a mix of 2D and 3D cases. Staging and atomic publication as every converter
(:mod:`dataset_conversion.common`).
"""
from __future__ import annotations

import argparse
import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from dataset_conversion.common import (RawDatasetWriter, add_common_arguments, check_label_values, check_same_grid,
                                       nnunet_raw_root, progress, prompts_for, read_rgb, read_sitk, require_dir,
                                       script_main)
from nnunet_causal.errors import DatasetError

NAME = "folder"
DEFAULT_ID = 850
MEDICAL_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
NATURAL_ENDINGS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IMAGE_DIRS = ("images", "imagesTr", "image", "img", "imgs")
LABEL_DIRS = ("labels", "labelsTr", "label", "masks", "mask", "segmentations", "seg")
_FLAT = re.compile(r"^(?P<case>.+?)_(?P<kind>image|img|label|labels|mask|seg|segmentation)$", re.IGNORECASE)
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")
_SIDED = re.compile(r"^(?P<base>.+)_(?P<side>[LR])$")


@dataclass
class Case:
    case_id: str
    images: List[Path]  # one per channel (a file, or a folder holding a DICOM series)
    label: Path


def _ending(path: Path) -> Optional[str]:
    name = path.name.lower()
    return next((e for e in MEDICAL_ENDINGS + NATURAL_ENDINGS if name.endswith(e)), None)


def _entries(folder: Path) -> Dict[str, Path]:
    """``{stem: path}`` of the image files and DICOM-series sub-folders of ``folder``; duplicates refused."""
    from nnunet_causal.formats.dicom_series import is_dicom_folder

    out: Dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        ending = _ending(p) if p.is_file() else None
        stem = p.name[: -len(ending)] if ending else (p.name if p.is_dir() and is_dicom_folder(p) else None)
        if stem is None:
            continue
        if stem in out:
            raise DatasetError(f"{p}: duplicate case id '{stem}' (also {out[stem]})")
        out[stem] = p
    return out


def _case_id(stem: str, where: Path) -> str:
    case = re.sub(r"[^A-Za-z0-9-]+", "_", stem).strip("_")
    if not case:
        raise DatasetError(f"{where}: cannot make a case id from '{stem}'")
    return case


def _group_channels(images: Dict[str, Path]) -> Dict[str, List[Path]]:
    """Stems ``CASE_0000``, ``CASE_0001``... are channels of ``CASE`` (all of a folder's stems or none)."""
    if images and all(_CHANNEL.match(s) for s in images):
        grouped: Dict[str, Dict[int, Path]] = {}
        for s, p in images.items():
            m = _CHANNEL.match(s)
            grouped.setdefault(m.group("case"), {})[int(m.group("ch"))] = p
        out = {}
        for case, chans in grouped.items():
            if sorted(chans) != list(range(len(chans))):
                raise DatasetError(f"{chans[min(chans)].parent}: case '{case}' has channels {sorted(chans)}, expected "
                                   f"0..{len(chans) - 1}")
            out[case] = [chans[i] for i in range(len(chans))]
        return out
    return {s: [p] for s, p in images.items()}


def scan(input_dir: Path) -> List[Case]:
    """Pair every image with its label map (layouts: module docstring)."""
    root = require_dir(Path(input_dir), "your labelled folder (images and label maps)")
    img_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    lbl_dir = next((root / d for d in LABEL_DIRS if (root / d).is_dir()), None)
    if img_dir is not None and lbl_dir is not None:
        images, labels = _group_channels(_entries(img_dir)), _entries(lbl_dir)
        where_img, where_lbl = img_dir, lbl_dir
    else:
        images, labels = {}, {}
        for stem, p in _entries(root).items():
            m = _FLAT.match(stem)
            if not m:
                continue
            kind = m.group("kind").lower()
            target = images if kind in ("image", "img") else labels
            if m.group("case") in target:
                raise DatasetError(f"{p}: duplicate case id '{m.group('case')}' (also {target[m.group('case')]})")
            target[m.group("case")] = [p] if target is images else p
        where_img = where_lbl = root
        if not images:
            raise DatasetError(f"{root}: no images found: expected images/ and labels/ sub-folders "
                               f"({'|'.join(IMAGE_DIRS)} and {'|'.join(LABEL_DIRS)}) or CASE_image.* with CASE_label.*")
    cases, seen = [], {}
    for stem, paths in sorted(images.items()):
        if stem not in labels:
            raise DatasetError(f"{paths[0]}: no label map for this image (looked for {where_lbl}/{stem}.*)")
        case = _case_id(stem, paths[0])
        if case in seen:
            raise DatasetError(f"{paths[0]}: duplicate case id '{case}' (also {seen[case]})")
        seen[case] = paths[0]
        cases.append(Case(case, paths, labels[stem]))
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise DatasetError(f"{labels[orphans[0]]}: no image for this label map (looked for {where_img}/{orphans[0]}.*)")
    return cases


def _read_volume(path: Path):
    """A 3D SimpleITK image from a file or a DICOM-series folder."""
    if path.is_dir():
        from nnunet_causal.formats.dicom_series import read_series_image, scan_dicom_folder

        series = scan_dicom_folder(path)
        if len(series) != 1:
            raise DatasetError(f"{path}: holds {len(series)} DICOM series; put one series per case folder")
        return read_series_image(series[0])
    image = read_sitk(path)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DatasetError(f"{path}: expected a single-channel 3D volume, got {image.GetDimension()}D with "
                           f"{image.GetNumberOfComponentsPerPixel()} component(s)")
    return image


def _read_label_2d(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im if im.mode in ("P", "L", "I", "I;16") else im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise DatasetError(f"{path}: cannot read the label map: {e}") from e
    if arr.ndim == 3:
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise DatasetError(f"{path}: a colour label map; store label values as grey levels or a palette PNG")
        arr = arr[..., 0]
    return arr


def _whole(values: np.ndarray, path: Path) -> np.ndarray:
    if not np.all(np.isfinite(values)) or not np.all(np.equal(np.mod(values, 1), 0)):
        raise DatasetError(f"{path}: label values must be whole numbers")
    return values.astype(np.int64)


def read_domains(path: Optional[Path]) -> Dict[str, dict]:
    """``{case: record}`` from a JSON object or a CSV with a ``case`` column (module docstring)."""
    if path is None:
        return {}
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the domain records: {e}") from e
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise DatasetError(f"{path}: not valid JSON: {e}") from e
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise DatasetError(f"{path}: expected {{case: {{'domain': ..., 'modality': ..., 'style': ...}}}}")
        return {str(k): dict(v) for k, v in data.items()}
    rows = list(csv.DictReader(text.splitlines(), dialect=csv.Sniffer().sniff(text[:4096], delimiters=",;\t")))
    if not rows or "case" not in rows[0]:
        raise DatasetError(f"{path}: expected a CSV with a 'case' column and one column per record key")
    return {r["case"]: {k: v for k, v in r.items() if k != "case" and v not in (None, "")} for r in rows}


def _prompts(names: Sequence[str]) -> Dict[str, List[str]]:
    """Prompts per name; atlas names ending in _L / _R also get "left ..." / "right ..." first."""
    out = prompts_for(names)
    for name in names:
        m = _SIDED.match(name)
        if m:
            side = "left" if m.group("side") == "L" else "right"
            text = f"{side} {m.group('base').replace('_', ' ').lower()}"
            out[name] = [text] + [t for t in out[name] if t != text]
    return out


def convert(input_dir: Path, names_file: Path, dataset_id: int = DEFAULT_ID, raw_root: Optional[Path] = None,
            dataset_name: Optional[str] = None, modality: str = "unspecified", domains_file: Optional[Path] = None,
            imaging_family: Optional[str] = None) -> Path:
    """Convert a labelled folder to ``$nnUNet_raw/DatasetXXX_<dataset_name>``; return the dataset folder."""
    from nnunet_causal.formats.label_names import read_label_names

    cases = scan(input_dir)
    names = read_label_names(names_file)
    records = read_domains(domains_file)
    unknown = sorted(set(records) - {c.case_id for c in cases})
    if unknown:
        raise DatasetError(f"{domains_file}: records for case(s) not in {input_dir}: {unknown[:5]}")
    dataset_name = dataset_name or re.sub(r"[^A-Za-z0-9_-]+", "_", Path(input_dir).resolve().name).strip("_")
    kinds = {"2d" if c.images[0].is_file() and _ending(c.images[0]) in NATURAL_ENDINGS else "3d" for c in cases}
    if len(kinds) > 1:
        raise DatasetError(f"{input_dir}: mixes 2D images (PNG/JPG...) and 3D volumes; convert them separately")
    two_d = kinds == {"2d"}
    values = sorted(names)
    lut = np.zeros(max(values) + 1, dtype=np.uint8)
    if len(values) > 256:
        raise DatasetError(f"{names_file}: {len(values) - 1} structures; at most 255 fit a uint8 label map")
    for new, old in enumerate(values):
        lut[old] = new
    labels = {names[old]: new for new, old in enumerate(values)}
    family = imaging_family or ("endoscopy" if two_d else {"CT": "ct", "MR": "mri", "MRI": "mri"}.get(modality.upper()))
    domains: Dict[str, dict] = {}
    n_channels = {len(c.images) for c in cases}
    if len(n_channels) > 1:
        raise DatasetError(f"{input_dir}: cases have different numbers of channels {sorted(n_channels)}")
    with RawDatasetWriter(nnunet_raw_root(raw_root), dataset_id, dataset_name) as w:
        for c in progress(cases, f"{dataset_name} imagesTr"):
            if two_d:
                _convert_2d(w, c, lut, names)
            else:
                _convert_3d(w, c, lut, names)
            domains[c.case_id] = {"domain": dataset_name.lower(), "modality": modality, "style": "unspecified",
                                  "source": str(Path(input_dir).name), **records.get(c.case_id, {})}
        if two_d:
            channel_names, ending = {"0": "R", "1": "G", "2": "B"}, ".png"
        else:
            channel_names = {str(i): (modality if modality != "unspecified" else "image")
                             for i in range(n_channels.pop())}
            ending = ".nii.gz"
        return w.finish(channel_names, labels, ending, prompts=_prompts([n for n in labels if n != "background"]),
                        domains=domains, imaging_family=family, description=f"converted from {Path(input_dir).name}",
                        source_label_values={names[v]: v for v in values})


def _convert_3d(w: RawDatasetWriter, c: Case, lut: np.ndarray, names: Dict[int, str]) -> None:
    import SimpleITK as sitk

    images = [_read_volume(p) for p in c.images]
    for i, (img, p) in enumerate(zip(images, c.images)):
        if i:
            check_same_grid(images[0], img, c.images[0], p)
        w.write_nifti_image(c.case_id, i, img)
    label = _read_volume(c.label)
    check_same_grid(images[0], label, c.images[0], c.label)
    values = _whole(sitk.GetArrayFromImage(label), c.label)
    check_label_values(values, names.keys(), c.label)
    w.write_nifti_label(c.case_id, lut[values], like=images[0])


def _convert_2d(w: RawDatasetWriter, c: Case, lut: np.ndarray, names: Dict[int, str]) -> None:
    if len(c.images) != 1:
        raise DatasetError(f"{c.images[0]}: 2D cases are one RGB image each")
    image = read_rgb(c.images[0])
    values = _whole(_read_label_2d(c.label), c.label)
    if values.shape != image.shape[:2]:
        raise DatasetError(f"{c.label}: size {values.shape[::-1]} differs from its image {c.images[0]} "
                           f"({image.shape[1::-1]})")
    check_label_values(values, names.keys(), c.label)
    w.write_png(c.case_id, image, channel=0)
    w.write_png(c.case_id, lut[values], channel=None)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    add_common_arguments(p, DEFAULT_ID)
    p.add_argument("--names", required=True, type=Path, help="label-names file (JSON, CSV/TSV or 'index name' text)")
    p.add_argument("--domains", type=Path, default=None, help="domain records (JSON or CSV with a 'case' column)")
    p.add_argument("--name", dest="dataset_name", default=None,
                   help="dataset name (DatasetXXX_NAME; default: the folder's name)")
    p.add_argument("--modality", default="unspecified",
                   help="modality of the images (CT uses nnU-Net's CT normalisation; default unspecified)")
    p.add_argument("--family", dest="imaging_family", default=None, choices=("ct", "mri", "endoscopy"),
                   help="imaging family (confounder dictionary; default from --modality, endoscopy for 2D)")
    p.epilog = ("Example:\n  nnunet_causal convert folder -i ~/data/colin27 --names ~/data/aal.nii.txt -d 850 "
                "--modality MR --name Colin27AAL\n  nnUNetv2_plan_and_preprocess -d 850 --verify_dataset_integrity")


def run(args: argparse.Namespace) -> Path:
    return convert(args.input, args.names, args.dataset_id, args.raw_root, args.dataset_name, args.modality,
                   args.domains, args.imaging_family)


def main(argv=None) -> int:
    return script_main(add_arguments, run, argv, prog="python -m dataset_conversion.folder")


if __name__ == "__main__":
    raise SystemExit(main())
