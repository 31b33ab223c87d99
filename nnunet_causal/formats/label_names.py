"""Label-names files: which label value of a label map is which structure.

Read by :func:`read_label_names` as ``{value: name}``, from the layouts labs and atlases ship:

- **JSON**: ``{"liver": 1, ...}`` (nnU-Net's ``labels``), ``{"1": "liver", ...}``, or a list of
  ``{"value"|"index"|"label"|"id": 1, "name": "liver"}``;
- **CSV / TSV**: two columns value and name (a header row is recognised when its first cell is not a
  number; further columns are ignored);
- **text**, as atlases ship it: one ``index name [anything...]`` per line, whitespace-separated (AAL's
  ``aal.nii.txt`` ``1 Precentral_L 2001``, FreeSurfer's ``index name R G B A``), ``#`` comments and blank
  lines skipped; ITK-SNAP label descriptions (``value R G B A vis mesh "name"``) by their quoted name.

Value 0 is the background: named ``background`` whatever the file calls it (or if it is not listed).
Values must be whole numbers >= 0, each given once, names unique and non-empty; otherwise a
:class:`~nnunet_causal.errors.DatasetError` names the file and line.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Dict, List, Tuple

from nnunet_causal.errors import DatasetError

_QUOTED = re.compile(r'"([^"]*)"')
_VALUE_KEYS = ("value", "index", "label", "id", "label_value")
_NAME_KEYS = ("name", "label_name", "structure")


def _int(text, path: Path, where: str) -> int:
    try:
        f = float(str(text).strip())
    except ValueError:
        raise DatasetError(f"{path}: {where}: label value '{text}' is not a number") from None
    if not f.is_integer() or f < 0:
        raise DatasetError(f"{path}: {where}: label value '{text}' is not a whole number >= 0")
    return int(f)


def _json_pairs(path: Path, data) -> List[Tuple[int, str, str]]:
    if isinstance(data, dict) and "labels" in data and isinstance(data["labels"], (dict, list)):
        data = data["labels"]
    pairs = []
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                pairs.append((_int(v, path, f"entry '{k}'"), str(k), f"entry '{k}'"))
            elif str(k).strip().lstrip("-").isdigit() and isinstance(v, str):
                pairs.append((_int(k, path, f"entry '{k}'"), v, f"entry '{k}'"))
            else:
                raise DatasetError(f"{path}: entry '{k}': expected name -> value or value -> name, got {v!r}")
    elif isinstance(data, list):
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                raise DatasetError(f"{path}: item {i}: expected an object with a value and a name")
            vk = next((k for k in _VALUE_KEYS if k in item), None)
            nk = next((k for k in _NAME_KEYS if k in item), None)
            if vk is None or nk is None:
                raise DatasetError(f"{path}: item {i}: needs one of {_VALUE_KEYS} and one of {_NAME_KEYS}")
            pairs.append((_int(item[vk], path, f"item {i}"), str(item[nk]), f"item {i}"))
    else:
        raise DatasetError(f"{path}: expected a JSON object or list of label names")
    return pairs


def _csv_pairs(path: Path, text: str) -> List[Tuple[int, str, str]]:
    dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t") if text.strip() else csv.excel
    pairs = []
    for n, row in enumerate(csv.reader(text.splitlines(), dialect), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) < 2:
            raise DatasetError(f"{path}: line {n}: expected two columns, value and name")
        if n == 1 and not re.fullmatch(r"-?\d+(\.0*)?", cells[0]):
            continue  # header row
        pairs.append((_int(cells[0], path, f"line {n}"), cells[1], f"line {n}"))
    return pairs


def _text_pairs(path: Path, text: str) -> List[Tuple[int, str, str]]:
    pairs = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        quoted = _QUOTED.search(line)
        fields = line.split()
        if quoted:
            pairs.append((_int(fields[0], path, f"line {n}"), quoted.group(1), f"line {n}"))
        elif len(fields) >= 2:
            pairs.append((_int(fields[0], path, f"line {n}"), fields[1], f"line {n}"))
        else:
            raise DatasetError(f"{path}: line {n}: expected 'value name ...', got '{line}'")
    return pairs


def read_label_names(path: Path) -> Dict[int, str]:
    """``{value: name}`` of a label-names file (formats and checks: module docstring), 0 = background."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the label-names file: {e}") from e
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            pairs = _json_pairs(path, json.loads(text))
        except ValueError as e:
            if isinstance(e, DatasetError):
                raise
            raise DatasetError(f"{path}: not valid JSON: {e}") from e
    elif suffix in (".csv", ".tsv"):
        pairs = _csv_pairs(path, text)
    else:
        pairs = _text_pairs(path, text)
    names: Dict[int, str] = {}
    seen: Dict[str, str] = {}
    for value, name, where in pairs:
        name = name.strip()
        if not name:
            raise DatasetError(f"{path}: {where}: empty name for label value {value}")
        if value in names:
            raise DatasetError(f"{path}: {where}: label value {value} is given twice ('{names[value]}', '{name}')")
        if value != 0 and name in seen:
            raise DatasetError(f"{path}: {where}: name '{name}' is given twice (also at {seen[name]})")
        names[value] = "background" if value == 0 else name
        seen[name] = where
    if not [v for v in names if v != 0]:
        raise DatasetError(f"{path}: no label names found (expected 'value name' entries)")
    names.setdefault(0, "background")
    return dict(sorted(names.items()))
