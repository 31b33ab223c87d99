"""Report sources for MGCL pretraining, mapped to the cases of an nnU-Net dataset.

Two formats:

* **CT-RATE-style CSV** (``.csv``): columns ``VolumeName``, ``Findings_EN``, ``Impressions_EN`` (further
  columns are ignored); the report of a row is its findings followed by its impression;
* **JSONL** (``.jsonl``): one object per line, ``{"image": ..., "report": ...}`` (further keys ignored;
  ``nnunet_causal synth --reports`` writes this format).

An image name maps to a case by its file name without folders, endings (``.nii.gz``, ``.png``, ...) and
nnU-Net's channel suffix (``_0000``): ``/data/train_1_a_1.nii.gz`` -> ``train_1_a_1``,
``imagesTr/scannerA_0003_0000.nii.gz`` -> ``scannerA_0003``.

Errors (one :class:`~nnunet_causal.errors.DatasetError` naming the file and line): a missing column or key,
an empty report, an unreadable line, the same case twice, or no row matching any case. Rows naming images
that are not cases of the dataset are counted and logged (a CT-RATE table covers many more volumes).
"""
from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Dict, Iterable, Tuple

from nnunet_causal.errors import DatasetError

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("VolumeName", "Findings_EN", "Impressions_EN")
JSONL_KEYS = ("image", "report")
_ENDINGS = re.compile(r"(\.nii\.gz|\.nii|\.nrrd|\.mha|\.mhd|\.png|\.jpg|\.jpeg|\.tif|\.tiff|\.b2nd|\.npz|\.npy)$",
                      re.IGNORECASE)
_CHANNEL = re.compile(r"_\d{4}$")


def case_of_image(name: str, cases: Iterable[str] = ()) -> str:
    """The case id an image name stands for (see the module docstring). A name that is a case as it is
    (after removing the ending) is kept, so a case id that happens to end in four digits is not cut."""
    stem = _ENDINGS.sub("", Path(str(name).strip()).name)
    if stem in set(cases):
        return stem
    return _CHANNEL.sub("", stem)


def _rows(path: Path) -> Iterable[Tuple[int, str, str]]:
    """``(line number, image name, report text)`` for every row of a CSV or JSONL report file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise DatasetError(f"{path}: missing column(s) {', '.join(missing)} (a CT-RATE-style table "
                                       f"needs {', '.join(CSV_COLUMNS)}; it has {', '.join(reader.fieldnames or [])})")
                for row in reader:
                    findings = (row.get("Findings_EN") or "").strip()
                    impression = (row.get("Impressions_EN") or "").strip()
                    yield reader.line_num, row.get("VolumeName") or "", " ".join(t for t in (findings, impression) if t)
        elif suffix in (".jsonl", ".ndjson"):
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DatasetError(f"{path}, line {n}: not a JSON object ({e.msg})") from e
                    missing = [k for k in JSONL_KEYS if not isinstance(obj, dict) or k not in obj]
                    if missing:
                        raise DatasetError(f"{path}, line {n}: missing key(s) {', '.join(missing)} (each line "
                                           f"needs {{\"image\": ..., \"report\": ...}})")
                    yield n, str(obj["image"]), str(obj["report"] or "").strip()
        else:
            raise DatasetError(f"{path}: unknown report format '{suffix}' (use a CT-RATE-style .csv or a .jsonl)")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read the report file ({e})") from e


def load_reports(path, cases: Iterable[str]) -> Dict[str, str]:
    """``{case: report}`` for the ``cases`` of a dataset that ``path`` has a report for."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"report file {path} does not exist")
    cases = set(cases)
    reports: Dict[str, str] = {}
    lines: Dict[str, int] = {}
    unmatched = 0
    for line, image, text in _rows(path):
        case = case_of_image(image, cases)
        if case not in cases:
            unmatched += 1
            continue
        if not text:
            raise DatasetError(f"{path}, line {line}: the report of '{image}' (case {case}) is empty")
        if case in reports:
            raise DatasetError(f"{path}, line {line}: a second report for case {case} (first on line {lines[case]})")
        reports[case], lines[case] = text, line
    if not reports:
        raise DatasetError(f"{path}: no row matches a case of the dataset ({unmatched} row(s) name other images; "
                           f"cases look like {', '.join(sorted(cases)[:3])})")
    if unmatched:
        logger.warning("%s: %d row(s) name images that are not training cases of the dataset (ignored)", path,
                       unmatched)
    return reports
