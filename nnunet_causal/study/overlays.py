"""Overlay figures of a study: per held-out domain a grid of cases x methods, reference contour green and
prediction red; 3D cases show the slice with the most reference foreground."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from nnunet_causal.files import atomic_path
from nnunet_causal.study.checks import StudyContext
from nnunet_causal.study.paths import Run, StudyPaths, read_json, safe_name
from nnunet_causal.study.report import scored_records

logger = logging.getLogger(__name__)


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
    for r in scored_records(read_json(evaluation_json), partial_labels):
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


def write_overlays(ctx: StudyContext, paths: StudyPaths, runs: Sequence[Run]) -> Dict[str, Path]:
    """One overlay grid per held-out domain from each method's first evaluated seed."""
    out = {}
    for domain in ctx.domains:
        columns, dice, cases = {}, {}, ()
        for run in runs:
            if run.domain != domain or run.trainer.label in columns or not paths.evaluation_json(run).is_file():
                continue
            columns[run.trainer.label] = paths.predictions(run)
            dice[run.trainer.label] = _case_dice(paths.evaluation_json(run),
                                                 ctx.dataset.dataset_json.get("partial_labels"))
            cases = run.cases
        picked = _spread(list(cases), ctx.config.overlay_cases)
        try:
            fig = overlay_figure(ctx.dataset.dataset_json, ctx.dataset.raw, picked, columns,
                                 paths.figures / f"overlay_{safe_name(domain)}.png", dice)
        except Exception as e:  # noqa: BLE001 - a figure must not sink a finished study
            logger.warning("overlays for domain %s failed: %s", domain, e)
            fig = None
        if fig is not None:
            out[domain] = fig
    return out
