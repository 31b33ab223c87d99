"""AMOS22 (multi-modality abdominal organ segmentation, CT and MRI) -> nnU-Net raw.

Download: https://zenodo.org/records/7262581 (amos22.zip). Expected layout (``-i`` is the ``amos22``
folder)::

    imagesTr/amos_0001.nii.gz   labelsTr/amos_0001.nii.gz    labelled training cases
    imagesVa/amos_0008.nii.gz   labelsVa/amos_0008.nii.gz    labelled validation cases (also training here)
    imagesTs/amos_0002.nii.gz                                 unlabelled test cases -> imagesTs
    dataset.json                                              AMOS' own (optional; checked when present)
    labeled_data_meta_0000_0599.csv                           optional scanner metadata (amos_id, Manufacturer, ...)

Case ids up to 500 are CT, above 500 MRI (the AMOS convention); ``--modality`` keeps CT, MRI or both. With
both, the channel is named ``CT_or_MRI`` so nnU-Net z-scores each image (CT's global Hounsfield
normalisation would be wrong for MRI). 15 organs with canonical names, values kept: 1 spleen, 2
kidney_right, 3 kidney_left, 4 gallbladder, 5 esophagus, 6 liver, 7 stomach, 8 aorta, 9 inferior_vena_cava
(AMOS "postcava"), 10 pancreas, 11 adrenal_gland_right, 12 adrenal_gland_left, 13 duodenum,
14 urinary_bladder, 15 prostate_or_uterus. Domain records: ``amos_ct`` / ``amos_mri`` with the scanner from
the metadata CSV where it lists the case.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from dataset_conversion.common import (RawDatasetWriter, add_common_arguments, convert_nifti_case,
                                       nnunet_raw_root, progress, prompts_for, require_dir, script_main)
from nnunet_causal.errors import DatasetError

logger = logging.getLogger(__name__)

NAME = "amos"
DEFAULT_ID = 801
LABELS: Dict[str, int] = {
    "background": 0, "spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "esophagus": 5,
    "liver": 6, "stomach": 7, "aorta": 8, "inferior_vena_cava": 9, "pancreas": 10, "adrenal_gland_right": 11,
    "adrenal_gland_left": 12, "duodenum": 13, "urinary_bladder": 14, "prostate_or_uterus": 15,
}
MRI_FIRST_ID = 501
MODALITIES = ("ct", "mri", "both")
STYLES = {"CT": "abdominal CT from Chinese hospitals, mixed scanners and contrast phases",
          "MRI": "abdominal MRI from Chinese hospitals, mixed scanners and sequences"}
_CASE = re.compile(r"^amos_(\d+)\.nii(\.gz)?$")


def modality_of(number: int) -> str:
    """``"CT"`` for AMOS case numbers up to 500, ``"MRI"`` above."""
    return "MRI" if number >= MRI_FIRST_ID else "CT"


def _cases(root: Path, images: str, labels: Optional[str]) -> List[Tuple[str, int, Path, Optional[Path]]]:
    out = []
    if not (root / images).is_dir():
        return out
    for p in sorted((root / images).iterdir()):
        m = _CASE.match(p.name)
        if not m:
            continue
        label = None
        if labels is not None:
            label = root / labels / p.name
            if not label.is_file():
                raise DatasetError(f"{p}: no label file {label}")
        out.append((f"amos_{int(m.group(1)):04d}", int(m.group(1)), p, label))
    return out


def read_metadata(root: Path) -> Dict[int, dict]:
    """Scanner metadata per case number from AMOS' ``*meta*.csv`` files (empty if there are none)."""
    meta: Dict[int, dict] = {}
    for path in sorted(root.glob("*meta*.csv")):
        with open(path, newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                if not row.get("amos_id", "").isdigit():
                    continue
                model = row.get("manufacturer's model name", "")
                maker = row.get("manufacturer", "")
                scanner = " ".join(x for x in (maker, model) if x)
                meta[int(row["amos_id"])] = {k: v for k, v in (("scanner", scanner), ("site", row.get("site", "")))
                                             if v}
    return meta


def scan(input_dir: Path, modality: str = "both") -> Dict[str, list]:
    """Training (Tr + Va) and test cases of the chosen modality: ``{"Tr": [...], "Ts": [...]}``."""
    if modality not in MODALITIES:
        raise DatasetError(f"--modality must be one of {MODALITIES}, got '{modality}'")
    root = require_dir(Path(input_dir), "the unpacked AMOS22 folder (amos22/ with imagesTr, labelsTr, ...)")
    require_dir(root / "imagesTr", "AMOS22's imagesTr folder")
    require_dir(root / "labelsTr", "AMOS22's labelsTr folder")
    own = root / "dataset.json"
    if own.is_file():
        try:
            labels = json.loads(own.read_text()).get("labels", {})
        except json.JSONDecodeError as e:
            raise DatasetError(f"{own} is not valid JSON: {e}") from e
        if len(labels) != len(LABELS):
            raise DatasetError(f"{own} lists {len(labels)} labels; AMOS22 has {len(LABELS)} (background + 15 "
                               "organs): is this the AMOS22 release?")
    training = _cases(root, "imagesTr", "labelsTr") + _cases(root, "imagesVa", "labelsVa")
    test = _cases(root, "imagesTs", None)
    keep = (lambda n: True) if modality == "both" else (lambda n: modality_of(n).lower() == modality)
    found = {"Tr": [c for c in training if keep(c[1])], "Ts": [c for c in test if keep(c[1])]}
    if not found["Tr"]:
        raise DatasetError(f"{root}: no labelled {modality if modality != 'both' else ''} amos_XXXX.nii.gz cases "
                           f"in imagesTr/imagesVa")
    return found


def convert(input_dir: Path, dataset_id: int = DEFAULT_ID, raw_root: Optional[Path] = None,
            modality: str = "both") -> Path:
    """Convert AMOS22 to ``$nnUNet_raw/DatasetXXX_AMOS[_CT|_MRI]``; return the dataset folder."""
    found = scan(input_dir, modality)
    meta = read_metadata(Path(input_dir))
    name = {"both": "AMOS", "ct": "AMOS_CT", "mri": "AMOS_MRI"}[modality]
    channel = {"both": "CT_or_MRI", "ct": "CT", "mri": "MRI"}[modality]
    identity = {v: v for v in LABELS.values()}
    domains = {}
    with RawDatasetWriter(nnunet_raw_root(raw_root), dataset_id, name) as w:
        for split in ("Tr", "Ts"):
            for case, number, img, lbl in progress(found[split], f"AMOS images{split}"):
                convert_nifti_case(w, case, img, lbl, identity, split=split)
                mod = modality_of(number)
                domains[case] = {"domain": f"amos_{mod.lower()}", "source": "amos", "modality": mod,
                                 "style": STYLES[mod], **meta.get(number, {})}
        return w.finish({"0": channel}, LABELS, ".nii.gz", prompts=prompts_for(n for n in LABELS if n != "background"),
                        domains=domains, imaging_family="mri" if modality == "mri" else "ct",
                        description=f"AMOS22 abdominal organs (15), modality: {modality}",
                        reference="https://zenodo.org/records/7262581", licence="CC BY 4.0")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    add_common_arguments(p, DEFAULT_ID)
    p.add_argument("--modality", choices=MODALITIES, default="both",
                   help="keep CT cases (ids <= 500), MRI cases (ids > 500) or both (default)")


def run(args: argparse.Namespace) -> Path:
    return convert(args.input, args.dataset_id, args.raw_root, args.modality)


def main(argv=None) -> int:
    return script_main(add_arguments, run, argv, prog="python -m dataset_conversion.amos")


if __name__ == "__main__":
    raise SystemExit(main())
