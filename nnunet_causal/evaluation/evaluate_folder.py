"""Dice and HD95 per case, structure and domain for a folder of predictions against references.

Reads any nnU-Net file format through the reader/writer that dataset.json selects; structures are the
dataset.json labels (region-based labels such as BraTS' ``[1, 2, 3]`` included, as nnU-Net evaluates
them); domains come from dataset.json ``"domains"`` (a case without a record counts as domain
``"unknown"``, with a warning). All checks run before any metric: missing cases (listed), then per
case shape / spacing mismatches and label values absent from dataset.json.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections import defaultdict
from multiprocessing import get_context
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from nnunet_causal.files import atomic_path, write_json_atomic
from nnunet_causal.errors import DatasetError
from nnunet_causal.evaluation.metrics import dice, hd95

logger = logging.getLogger(__name__)


def _structures(dataset_json: dict) -> List[Tuple[str, Tuple[int, ...]]]:
    out = []
    for name, value in dataset_json["labels"].items():
        if name in ("background", "ignore"):
            continue
        values = tuple(value) if isinstance(value, (list, tuple)) else (int(value),)
        out.append((name, values))
    return out


def _allowed_values(dataset_json: dict) -> set:
    vals = set()
    for v in dataset_json["labels"].values():
        vals.update(v if isinstance(v, (list, tuple)) else [v])
    return {int(v) for v in vals}


def _case_ids(folder: Path, ending: str) -> List[str]:
    return sorted(p.name[: -len(ending)] for p in folder.iterdir() if p.name.endswith(ending))


def _read(rw, path: Path):
    try:
        seg, props = rw.read_seg(str(path))
    except Exception as e:  # noqa: BLE001 - any reader failure is reported with the file name
        raise DatasetError(f"cannot read {path}: {e}") from e
    return seg[0], [float(s) for s in props["spacing"]]


def _evaluate_case(args) -> List[dict]:
    case, ref_path, pred_path, dataset_json, domain = args
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    rw = determine_reader_writer_from_dataset_json(dataset_json, str(ref_path))()
    ref, sp_ref = _read(rw, ref_path)
    pred, sp_pred = _read(rw, pred_path)
    if ref.shape != pred.shape:
        raise DatasetError(f"case {case}: prediction shape {pred.shape} differs from reference {ref.shape}")
    if not np.allclose(sp_ref, sp_pred, rtol=1e-3):
        raise DatasetError(f"case {case}: prediction spacing {sp_pred} differs from reference {sp_ref}")
    allowed = _allowed_values(dataset_json)
    for what, arr in (("prediction", pred), ("reference", ref)):
        extra = sorted(set(np.unique(arr).astype(int).tolist()) - allowed)
        if extra:
            raise DatasetError(f"case {case}: {what} has label values {extra} that dataset.json does not define")
    spacing = list(sp_ref)
    if ref.shape[0] == 1 and ref.ndim == 3:  # 2D images are stored as one-slice volumes
        ref, pred, spacing = ref[0], pred[0], spacing[1:]
    ignore = dataset_json["labels"].get("ignore")
    valid = ref != ignore if ignore is not None else None
    rows = []
    for name, values in _structures(dataset_json):
        r, p = np.isin(ref, values), np.isin(pred, values)
        if valid is not None:
            r, p = r & valid, p & valid
        rows.append({"case": case, "structure": name, "domain": domain, "dice": dice(r, p),
                     "hd95_mm": hd95(r, p, spacing), "reference_voxels": int(r.sum()),
                     "predicted_voxels": int(p.sum())})
    return rows


def _mean(values) -> Optional[float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


def summarise(records: List[dict]) -> dict:
    """Means per structure, per domain and structure, per domain, and overall (NaNs excluded, counted)."""
    by_struct, by_dom, by_dom_struct = defaultdict(list), defaultdict(list), defaultdict(list)
    for r in records:
        by_struct[r["structure"]].append(r)
        by_dom[r["domain"]].append(r)
        by_dom_struct[(r["domain"], r["structure"])].append(r)

    def agg(rs):
        return {"dice": _mean(r["dice"] for r in rs), "hd95_mm": _mean(r["hd95_mm"] for r in rs), "n": len(rs),
                "n_hd95_undefined": sum(1 for r in rs if math.isnan(r["hd95_mm"]))}

    per_domain = {d: {"mean": agg(rs), "structures": {s: agg(by_dom_struct[(d, s)]) for s in by_struct
                                                      if by_dom_struct[(d, s)]}} for d, rs in sorted(by_dom.items())}
    return {"mean": agg(records), "per_structure": {s: agg(rs) for s, rs in by_struct.items()},
            "per_domain": per_domain}


def markdown_table(summary: dict) -> str:
    structures = list(summary["per_structure"])
    head = "| domain | " + " | ".join(f"{s} Dice / HD95 (mm)" for s in structures) + " | mean Dice |"
    lines = [head, "|" + "---|" * (len(structures) + 2)]

    def fmt(a):
        if a is None:
            return "-"
        d = "-" if a["dice"] is None else f"{a['dice']:.3f}"
        h = "-" if a["hd95_mm"] is None else f"{a['hd95_mm']:.1f}"
        return f"{d} / {h}"

    for dom, val in summary["per_domain"].items():
        cells = [fmt(val["structures"].get(s)) for s in structures]
        md = val["mean"]["dice"]
        lines.append(f"| {dom} | " + " | ".join(cells) + f" | {'-' if md is None else f'{md:.3f}'} |")
    allm = summary["mean"]["dice"]
    lines.append("| **all** | " + " | ".join(fmt(summary["per_structure"][s]) for s in structures)
                 + f" | {'-' if allm is None else f'{allm:.3f}'} |")
    return "\n".join(lines) + "\n"


def evaluate_folders(ref_folder, pred_folder, dataset_json_path, output_prefix: Optional[str] = None,
                     json_file: Optional[str] = None, num_processes: int = 2) -> dict:
    """Evaluate ``pred_folder`` against ``ref_folder``; writes ``<prefix>.csv``, ``.json`` and ``.md``
    (prefix default ``PRED_FOLDER/evaluation``) and, with ``json_file``, the ``{"records", "summary"}``
    JSON there. Returns that dict."""
    ref_folder, pred_folder = Path(ref_folder), Path(pred_folder)
    for f in (ref_folder, pred_folder):
        if not f.is_dir():
            raise DatasetError(f"folder {f} does not exist")
    try:
        dataset_json = json.loads(Path(dataset_json_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"cannot read {dataset_json_path}: {e}") from e
    ending = dataset_json["file_ending"]
    refs, preds = _case_ids(ref_folder, ending), _case_ids(pred_folder, ending)
    missing_pred = sorted(set(refs) - set(preds))
    missing_ref = sorted(set(preds) - set(refs))
    if missing_pred or missing_ref:
        parts = []
        if missing_pred:
            parts.append(f"no prediction for {', '.join(missing_pred)}")
        if missing_ref:
            parts.append(f"no reference for {', '.join(missing_ref)}")
        raise DatasetError(f"{pred_folder} vs {ref_folder}: " + "; ".join(parts))
    if not refs:
        raise DatasetError(f"{ref_folder} has no *{ending} files")
    domains = dataset_json.get("domains") or {}
    unknown = [c for c in refs if c not in domains]
    if unknown:
        logger.warning("%d case(s) have no domain record and count as domain 'unknown' (e.g. %s)", len(unknown),
                       unknown[0])
    jobs = [(c, ref_folder / f"{c}{ending}", pred_folder / f"{c}{ending}", dataset_json,
             domains.get(c, {}).get("domain", "unknown")) for c in refs]
    records: List[dict] = []
    if num_processes > 1 and len(jobs) > 1:
        with get_context("spawn").Pool(num_processes) as pool:
            for rows in tqdm(pool.imap(_evaluate_case, jobs), total=len(jobs), desc="evaluating"):
                records.extend(rows)
    else:
        for job in tqdm(jobs, desc="evaluating"):
            records.extend(_evaluate_case(job))
    result = {"records": records, "summary": summarise(records)}
    prefix = Path(output_prefix) if output_prefix else pred_folder / "evaluation"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)
    with atomic_path(prefix.with_suffix(".csv")) as tmp:
        Path(tmp).write_text(buf.getvalue())
    write_json_atomic(prefix.with_suffix(".json"), _json_safe(result))
    with atomic_path(prefix.with_suffix(".md")) as tmp:
        Path(tmp).write_text(markdown_table(result["summary"]))
    if json_file:
        write_json_atomic(json_file, _json_safe(result))
    return result


def _json_safe(obj):
    """NaN -> None (JSON has no NaN)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj
