"""Study results: rows per run, mean ± std tables, bar charts, overlays and the Markdown report."""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nnunet_causal.data.raw_dataset import atomic_path
from nnunet_causal.evaluation.study_config import StudyError

if TYPE_CHECKING:  # annotations only: the runner imports this module
    from nnunet_causal.evaluation.study import Run, StudyPaths

logger = logging.getLogger(__name__)


def safe_name(text: str) -> str:
    """``text`` reduced to characters safe in file names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StudyError(f"cannot read {path}: {e}") from e


# ----------------------------------------------------------------------------------------------------------------
# results, tables, charts, report
# ----------------------------------------------------------------------------------------------------------------

RESULT_FIELDS = ("trainer", "label", "heldout_domain", "fold", "seed", "dice", "hd95_mm", "n_cases",
                 "n_hd95_undefined")


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def scored_records(evaluation: Mapping, partial_labels: Optional[Mapping[str, Sequence[str]]] = None
                   ) -> List[dict]:
    """The evaluation's per-case, per-structure records (``None`` metrics as NaN), without the structures a
    case does not annotate (dataset.json ``"partial_labels"``: ``{case: [annotated structures]}``)."""
    partial = partial_labels or {}
    out = []
    for r in evaluation["records"]:
        if r["case"] in partial and r["structure"] not in partial[r["case"]]:
            continue
        out.append({**r, "dice": _num(r["dice"]), "hd95_mm": _num(r["hd95_mm"])})
    return out


def result_row(run: Run, evaluation: Mapping, partial_labels: Optional[Mapping[str, Sequence[str]]] = None) -> dict:
    """One results.csv row from a run and its evaluation JSON: mean over cases and (annotated) structures,
    plus per structure ``dice_<name>`` / ``hd95_mm_<name>``."""
    from nnunet_causal.evaluation.evaluate_folder import summarise

    records = scored_records(evaluation, partial_labels)
    if not records:
        raise StudyError(f"{run.run_id}: the evaluation holds no annotated structure to score")
    summary = summarise(records)
    row = {"trainer": run.trainer.name, "label": run.trainer.label, "heldout_domain": run.domain, "fold": run.fold,
           "seed": run.seed, "dice": _num(summary["mean"]["dice"]), "hd95_mm": _num(summary["mean"]["hd95_mm"]),
           "n_cases": len({r["case"] for r in records}),
           "n_hd95_undefined": summary["mean"]["n_hd95_undefined"]}
    for name, agg in summary["per_structure"].items():
        row[f"dice_{name}"] = _num(agg["dice"])
        row[f"hd95_mm_{name}"] = _num(agg["hd95_mm"])
    return row


def collect_rows(paths: StudyPaths, runs: Sequence[Run], partial_labels: Optional[Mapping] = None) -> List[dict]:
    """Rows of every run that has an evaluation (this invocation's or an earlier one's)."""
    rows = []
    for run in runs:
        ev = paths.evaluation_json(run)
        if ev.is_file():
            rows.append(result_row(run, _read_json(ev), partial_labels))
    return rows


def write_results_csv(rows: Sequence[dict], path: Path) -> Path:
    """results.csv: :data:`RESULT_FIELDS` then the per-structure columns; NaN written as empty."""
    fields = list(RESULT_FIELDS) + sorted({k for r in rows for k in r} - set(RESULT_FIELDS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()})
    with atomic_path(path) as tmp:
        Path(tmp).write_text(buf.getvalue())
    return path


@dataclass(frozen=True)
class Cell:
    """Mean and sample standard deviation of one metric over seeds (``n`` finite values)."""
    mean: float
    std: float
    n: int


def _cell(values: Iterable[float]) -> Cell:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return Cell(float("nan"), float("nan"), 0)
    return Cell(float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals))


def aggregate(rows: Sequence[dict], metric: str, labels: Sequence[str], domains: Sequence[str]
              ) -> Dict[str, Dict[str, Cell]]:
    """``{label: {domain or "mean": Cell}}`` over seeds. The mean column averages, per seed, over all
    ``domains`` (a seed missing a domain, or with an undefined value, does not count there)."""
    out = {}
    for label in labels:
        mine = [r for r in rows if r["label"] == label]
        cells = {d: _cell(r[metric] for r in mine if r["heldout_domain"] == d) for d in domains}
        per_seed = []
        for seed in sorted({r["seed"] for r in mine}):
            vals = {r["heldout_domain"]: r[metric] for r in mine if r["seed"] == seed}
            if all(d in vals and math.isfinite(vals[d]) for d in domains):
                per_seed.append(float(np.mean([vals[d] for d in domains])))
        cells["mean"] = _cell(per_seed)
        out[label] = cells
    return out


def _fmt(cell: Cell, digits: int, bold: bool) -> str:
    if cell.n == 0:
        return "–"
    text = f"{cell.mean:.{digits}f}" + (f" ± {cell.std:.{digits}f}" if cell.n > 1 else "")
    return f"**{text}**" if bold else text


def markdown_metric_table(rows: Sequence[dict], metric: str, labels: Sequence[str], domains: Sequence[str],
                          higher_is_better: bool, digits: int) -> str:
    """Rows: methods; columns: held-out domains and their mean; cells mean ± std over seeds, best in bold."""
    table = aggregate(rows, metric, labels, domains)
    columns = list(domains) + ["mean"]
    best = {}
    for col in columns:
        means = [table[lb][col].mean for lb in labels if table[lb][col].n]
        if means and len(labels) > 1:
            best[col] = max(means) if higher_is_better else min(means)
    head = "| method | " + " | ".join(f"held out: {_md(d)}" for d in domains) + " | mean |"
    lines = [head, "|---|" + "---|" * len(columns)]
    for lb in labels:
        cells = [_fmt(table[lb][c], digits, table[lb][c].n > 0 and best.get(c) == table[lb][c].mean)
                 for c in columns]
        lines.append(f"| {_md(lb)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def write_tables(rows: Sequence[dict], labels: Sequence[str], domains: Sequence[str], path: Path) -> Tuple[str, str]:
    """table.md with the Dice and the HD95 table; returns both tables."""
    n_seeds = len({r["seed"] for r in rows})
    dice = markdown_metric_table(rows, "dice", labels, domains, True, 3)
    hd95 = markdown_metric_table(rows, "hd95_mm", labels, domains, False, 2)
    text = (f"## Dice on the held-out domain (mean ± std over {n_seeds} seed(s))\n\n{dice}\n"
            f"## HD95 (mm) on the held-out domain (mean ± std over {n_seeds} seed(s); lower is better)\n\n{hd95}")
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return dice, hd95


def write_bar_charts(rows: Sequence[dict], labels: Sequence[str], domains: Sequence[str], folder: Path
                     ) -> Dict[str, Path]:
    """One PNG per held-out domain (and one for the mean): Dice and HD95 bars per method, std error bars."""
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    dice, hd95 = aggregate(rows, "dice", labels, domains), aggregate(rows, "hd95_mm", labels, domains)
    out = {}
    for col in list(domains) + ["mean"]:
        fig = Figure(figsize=(max(6.0, 2.0 + 1.6 * len(labels)), 3.6), dpi=110)
        for ax, table, title in ((fig.add_subplot(1, 2, 1), dice, "Dice (higher = better)"),
                                 (fig.add_subplot(1, 2, 2), hd95, "HD95 in mm (lower = better)")):
            _bars(ax, [table[lb][col] for lb in labels], labels, title)
        fig.suptitle("mean over held-out domains" if col == "mean" else f"held-out domain: {col}", fontsize=10)
        fig.tight_layout()
        path = folder / f"bars_{safe_name(col)}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp)
        out[col] = path
    return out


def _bars(ax, cells: Sequence[Cell], labels: Sequence[str], title: str) -> None:
    x = np.arange(len(labels))
    means = [c.mean if c.n else 0.0 for c in cells]
    errs = [c.std if c.n > 1 else 0.0 for c in cells]
    ax.bar(x, means, yerr=errs, capsize=3, color=[f"C{i % 10}" for i in range(len(labels))])
    for xi, c in zip(x, cells):
        if c.n == 0:
            ax.text(xi, 0, "n/a", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)


def write_study_outputs(output: Path, rows: Sequence[dict], labels: Sequence[str], domains: Sequence[str], *,
                        title: str = "Out-of-domain study", header_lines: Sequence[str] = (),
                        overlays: Optional[Mapping[str, Path]] = None, runs_table: Optional[str] = None
                        ) -> Dict[str, Path]:
    """results.csv, table.md, bar charts and report.md (embedding tables, charts and ``overlays``)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    order = {lb: i for i, lb in enumerate(labels)}
    dom_order = {d: i for i, d in enumerate(domains)}
    rows = sorted(rows, key=lambda r: (order.get(r["label"], 1e9), dom_order.get(r["heldout_domain"], 1e9),
                                       r["seed"]))
    files = {"results": write_results_csv(rows, output / "results.csv")}
    files["table"] = output / "table.md"
    dice, hd95 = write_tables(rows, labels, domains, files["table"])
    charts = write_bar_charts(rows, labels, domains, output / "figures")
    files.update({f"chart_{k}": v for k, v in charts.items()})
    files["report"] = write_report(output, title, header_lines, dice, hd95, charts, overlays or {}, runs_table,
                                   n_seeds=len({r["seed"] for r in rows}))
    return files


def write_report(output: Path, title: str, header_lines: Sequence[str], dice: str, hd95: str,
                 charts: Mapping[str, Path], overlays: Mapping[str, Path], runs_table: Optional[str],
                 n_seeds: int) -> Path:
    """report.md: header, Dice and HD95 tables, bar charts, overlays and the run list."""
    rel = lambda p: Path(p).relative_to(output).as_posix()  # noqa: E731 - report-relative links
    lines = [f"# {title}", "", *header_lines, "",
             f"## Dice on the held-out domain (mean ± std over {n_seeds} seed(s))", "", dice,
             "## HD95 (mm) on the held-out domain (lower is better)", "", hd95,
             "## Per held-out domain", ""]
    for col, path in charts.items():
        lines += [f"![{col}]({rel(path)})", ""]
    if overlays:
        lines += ["## Overlays (green: reference, red: prediction; first seed)", ""]
        for domain, path in overlays.items():
            lines += [f"### held out: {domain}", "", f"![overlays {domain}]({rel(path)})", ""]
    if runs_table:
        lines += ["## Runs", "", runs_table]
    lines += ["Raw numbers: `results.csv` (one row per trainer, held-out domain and seed); per-case metrics: "
              "`runs/<run>/evaluation.csv`; command output: `runs/<run>/commands.log`.", ""]
    path = output / "report.md"
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines))
    return path


# ----------------------------------------------------------------------------------------------------------------
# overlays
# ----------------------------------------------------------------------------------------------------------------

def pick_slice(reference: np.ndarray) -> int:
    """Index along axis 0 with the most foreground; ties go to the slice nearest the middle (middle if empty)."""
    counts = (reference.reshape(reference.shape[0], -1) > 0).sum(1)
    middle = reference.shape[0] // 2
    if counts.max() == 0:
        return middle
    candidates = np.flatnonzero(counts == counts.max())
    return int(candidates[np.argmin(np.abs(candidates - middle))])


def _display_image(image: np.ndarray, z: int) -> np.ndarray:
    """(C, Z, Y, X) -> an RGB (Y, X, 3) picture for RGB data, else channel 0 as grey in [0, 1]."""
    if image.shape[0] == 3:
        rgb = np.moveaxis(image[:, z], 0, -1).astype(np.float32)
        return np.clip(rgb / 255.0 if rgb.max() > 1.0 else rgb, 0, 1)
    grey = image[0, z].astype(np.float32)
    lo, hi = np.percentile(grey, (0.5, 99.5))
    return np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1)


def _draw_contours(ax, seg: np.ndarray, colour: str, style: str) -> None:
    for value in np.unique(seg):
        if value == 0:
            continue
        mask = (seg == value).astype(np.float32)
        ax.contour(mask, levels=[0.5], colors=[colour], linewidths=1.0, linestyles=style)


def _case_dice(evaluation_json: Path, partial_labels: Optional[Mapping] = None) -> Dict[str, float]:
    per_case: Dict[str, List[float]] = {}
    for r in scored_records(_read_json(evaluation_json), partial_labels):
        per_case.setdefault(r["case"], []).append(r["dice"])
    return {c: float(np.mean(v)) for c, v in per_case.items()}


def overlay_figure(dataset_json: Mapping, raw: Path, cases: Sequence[str], columns: Mapping[str, Path],
                   out: Path, dice: Optional[Mapping[str, Mapping[str, float]]] = None) -> Optional[Path]:
    """Grid PNG: one row per case, one column per method (``{label: prediction folder}``); reference contour
    green, prediction red. 3D cases show the slice with the most reference foreground."""
    from matplotlib.figure import Figure
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    ending = dataset_json["file_ending"]
    if not cases or not columns:
        return None
    rw = determine_reader_writer_from_dataset_json(dict(dataset_json), str(raw / "labelsTr" / f"{cases[0]}{ending}"))()
    fig = Figure(figsize=(2.4 * len(columns), 2.5 * len(cases)), dpi=100)
    for i, case in enumerate(cases):
        image, props = rw.read_images([str(raw / "imagesTr" / f"{case}_0000{ending}")])
        ref = rw.read_seg(str(raw / "labelsTr" / f"{case}{ending}"))[0][0]
        z = pick_slice(ref)
        spacing = [float(s) for s in props["spacing"]]
        for j, (label, folder) in enumerate(columns.items()):
            ax = fig.add_subplot(len(cases), len(columns), i * len(columns) + j + 1)
            ax.imshow(_display_image(image, z), cmap="gray", aspect=spacing[-2] / spacing[-1], interpolation="nearest")
            _draw_contours(ax, ref[z], "lime", "solid")
            pred_file = folder / f"{case}{ending}"
            if pred_file.is_file():
                _draw_contours(ax, rw.read_seg(str(pred_file))[0][0][z], "red", "solid")
            d = (dice or {}).get(label, {}).get(case)
            ax.set_title(f"{label}" + (f"\nDice {d:.2f}" if d is not None else ""), fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(case + (f" (z={z})" if ref.shape[0] > 1 else ""), fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp)
    return out


def _spread(items: Sequence[str], k: int) -> List[str]:
    if k <= 0 or not items:
        return []
    idx = np.unique(np.linspace(0, len(items) - 1, min(k, len(items))).round().astype(int))
    return [items[i] for i in idx]

