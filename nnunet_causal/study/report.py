"""Study results: one row per run, mean ± std tables over seeds, bar charts and the Markdown report.

Cells are the mean over seeds of each run's mean over held-out cases and annotated structures, with the
sample standard deviation (``ddof=1``) over seeds; the ``mean`` column averages a seed's domains first and
counts only seeds that have every domain.
"""
from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nnunet_causal.files import atomic_path
from nnunet_causal.study.config import StudyError
from nnunet_causal.study.paths import Run, StudyPaths, read_json, safe_name

logger = logging.getLogger(__name__)


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
            rows.append(result_row(run, read_json(ev), partial_labels))
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
