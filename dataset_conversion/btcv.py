"""BTCV (Multi-Atlas Labeling Beyond the Cranial Vault, MICCAI 2015 abdomen challenge) -> nnU-Net raw.

Download: https://www.synapse.org/#!Synapse:syn3193805/wiki/217789 ("Abdomen", RawData.zip; a Synapse
account is required). Expected layout after unpacking (``-i`` may point at ``RawData`` or the folder
holding it)::

    RawData/Training/img/img0001.nii.gz     30 contrast-enhanced (portal venous) abdominal CT volumes
    RawData/Training/label/label0001.nii.gz 13 organs, values 0..13
    RawData/Testing/img/img0061.nii.gz      20 unlabelled volumes -> imagesTs

Labels are renamed to the canonical names (1 spleen, 2 kidney_right, 3 kidney_left, 4 gallbladder,
5 esophagus, 6 liver, 7 stomach, 8 aorta, 9 inferior_vena_cava, 10 portal_vein_and_splenic_vein,
11 pancreas, 12 adrenal_gland_right, 13 adrenal_gland_left); values are kept. Images and labels keep
their geometry (spacing, origin, direction) exactly.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from dataset_conversion.common import (RawDatasetWriter, add_common_arguments, convert_nifti_case,
                                       find_first_dir, nnunet_raw_root, progress, prompts_for, require_dir,
                                       script_main)
from nnunet_causal.errors import DatasetError

NAME = "btcv"
DEFAULT_ID = 800
DATASET_NAME = "BTCV"
LABELS: Dict[str, int] = {
    "background": 0, "spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "esophagus": 5,
    "liver": 6, "stomach": 7, "aorta": 8, "inferior_vena_cava": 9, "portal_vein_and_splenic_vein": 10,
    "pancreas": 11, "adrenal_gland_right": 12, "adrenal_gland_left": 13,
}
STYLE = "portal venous phase contrast-enhanced abdominal CT"
SITE = "Vanderbilt University Medical Center"
_IMG = re.compile(r"^img(\d+)\.nii(\.gz)?$")


def _pairs(folder: Path, with_labels: bool) -> List[Tuple[str, Path, Optional[Path]]]:
    img_dir = require_dir(folder / "img", f"the BTCV image folder {folder.name}/img with imgXXXX.nii.gz files")
    out = []
    for p in sorted(img_dir.iterdir()):
        m = _IMG.match(p.name)
        if not m:
            continue
        label = None
        if with_labels:
            label = next((folder / "label" / f"label{m.group(1)}{ext}" for ext in (".nii.gz", ".nii")
                          if (folder / "label" / f"label{m.group(1)}{ext}").is_file()), None)
            if label is None:
                raise DatasetError(f"{p}: no label file {folder / 'label' / f'label{m.group(1)}.nii.gz'}")
        out.append((f"BTCV_{m.group(1)}", p, label))
    if not out:
        raise DatasetError(f"{img_dir} holds no imgXXXX.nii.gz files")
    return out


def scan(input_dir: Path) -> Dict[str, list]:
    """Locate the training (and, if present, testing) cases: ``{"Tr": [...], "Ts": [...]}``."""
    input_dir = require_dir(Path(input_dir), "the unpacked BTCV download (RawData)")
    training = find_first_dir(input_dir, ["RawData/Training", "Training", "Abdomen/RawData/Training"],
                              "the BTCV training folder (RawData/Training with img/ and label/)")
    found = {"Tr": _pairs(training, with_labels=True), "Ts": []}
    testing = training.parent / "Testing"
    if (testing / "img").is_dir():
        found["Ts"] = _pairs(testing, with_labels=False)
    return found


def domain_record(case: str) -> dict:
    return {"domain": "btcv", "source": "btcv", "modality": "CT", "site": SITE, "style": STYLE}


def convert(input_dir: Path, dataset_id: int = DEFAULT_ID, raw_root: Optional[Path] = None) -> Path:
    """Convert BTCV to ``$nnUNet_raw/DatasetXXX_BTCV``; return the dataset folder."""
    found = scan(input_dir)
    identity = {v: v for v in LABELS.values()}
    domains = {}
    with RawDatasetWriter(nnunet_raw_root(raw_root), dataset_id, DATASET_NAME) as w:
        for split in ("Tr", "Ts"):
            for case, img, lbl in progress(found[split], f"BTCV images{split}"):
                convert_nifti_case(w, case, img, lbl, identity, split=split)
                domains[case] = domain_record(case)
        return w.finish({"0": "CT"}, LABELS, ".nii.gz", prompts=prompts_for(n for n in LABELS if n != "background"),
                        domains=domains, imaging_family="ct",
                        description="BTCV multi-atlas abdomen: 13 organs, portal venous CT (Vanderbilt)",
                        reference="https://www.synapse.org/#!Synapse:syn3193805", licence="see Synapse terms")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    add_common_arguments(p, DEFAULT_ID)


def run(args: argparse.Namespace) -> Path:
    return convert(args.input, args.dataset_id, args.raw_root)


def main(argv=None) -> int:
    return script_main(add_arguments, run, argv, prog="python -m dataset_conversion.btcv")


if __name__ == "__main__":
    raise SystemExit(main())
