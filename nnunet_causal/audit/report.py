"""Tables, plot and overlays of a causal audit (Markdown + CSV + JSON, PNG)."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Dict, List

import numpy as np

from nnunet_causal.files import atomic_path

SUMMARY_FIELDS = ("model", "rank", "entry", "line", "strength", "sensitivity", "dice_change", "fp_created_per_image",
                  "n_images")


def summarise(model: str, rows: List[dict], entries, has_reference: bool) -> List[dict]:
    """Per (entry, strength): mean over structures, cases and draws; ranked by sensitivity at the highest
    strength (rank 1 = the confounder that moves the prediction most)."""
    out = []
    keys = sorted({(r["entry"], r["strength"]) for r in rows})
    for e, s in keys:
        sel = [r for r in rows if r["entry"] == e and r["strength"] == s]
        out.append({"model": model, "entry": entries[e].description, "line": entries[e].where,
                    "strength": s, "sensitivity": float(np.mean([1 - r["consistency"] for r in sel])),
                    "dice_change": float(np.mean([r["dice_change"] for r in sel])) if has_reference else None,
                    "fp_created_per_image": float(np.mean([r["fp_created"] for r in sel])),
                    "n_images": len({(r["case"], r["draw"]) for r in sel})})
    top = max(s for _, s in keys) if keys else None
    ranked = sorted((r for r in out if r["strength"] == top), key=lambda r: -r["sensitivity"])
    rank = {r["entry"]: i + 1 for i, r in enumerate(ranked)}
    for r in out:
        r["rank"] = rank[r["entry"]]
    return sorted(out, key=lambda r: (r["rank"], r["strength"]))


def markdown(summaries: Dict[str, List[dict]], strengths) -> str:
    top = max(strengths)
    lines = ["# Causal audit", "",
             "Sensitivity = 1 - Dice(prediction of the image, prediction of its counterfactual do(z)), mean over "
             "structures and images; dice change = Dice against the reference after do(z) minus before; FP = voxels "
             "do(z) adds outside the factual prediction (and the reference), per image.", ""]
    for model, summary in summaries.items():
        lines += [f"## {model}", "", "| rank | confounder | strength | sensitivity | dice change | FP / image |",
                  "|---|---|---|---|---|---|"]
        for r in summary:
            dc = "" if r["dice_change"] is None else f"{r['dice_change']:+.3f}"
            lines.append(f"| {r['rank']} | {r['entry']} | {r['strength']:g} | {r['sensitivity']:.3f} | {dc} | "
                         f"{r['fp_created_per_image']:.1f} |")
        lines.append("")
    if len(summaries) > 1:
        models = list(summaries)
        lines += [f"## Side by side (sensitivity at strength {top:g})", "",
                  "| confounder | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        entries = [r["entry"] for r in summaries[models[0]] if r["strength"] == top]
        for e in entries:
            cells = []
            for m in models:
                r = next((r for r in summaries[m] if r["entry"] == e and r["strength"] == top), None)
                cells.append("" if r is None else f"{r['sensitivity']:.3f} (#{r['rank']})")
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_tables(out: Path, summaries: Dict[str, List[dict]], rows: Dict[str, List[dict]], strengths) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "audit.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
            w.writeheader()
            for summary in summaries.values():
                for r in summary:
                    w.writerow({k: ("" if r[k] is None else r[k]) for k in SUMMARY_FIELDS})
    with atomic_path(out / "audit.json") as tmp:
        Path(tmp).write_text(json.dumps({"summary": summaries, "per_case": rows}, indent=1))
    with atomic_path(out / "audit.md") as tmp:
        Path(tmp).write_text(markdown(summaries, strengths))


def plot_sensitivity(out: Path, summaries: Dict[str, List[dict]], strengths) -> Path:
    """One bar group per confounder, one bar per model (sensitivity at the highest strength)."""
    import matplotlib

    matplotlib.use("agg")
    from matplotlib import pyplot as plt

    top = max(strengths)
    models = list(summaries)
    entries = [r["entry"] for r in summaries[models[0]] if r["strength"] == top]
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(entries) * max(1, len(models) / 2)), 5))
    for i, m in enumerate(models):
        vals = [next((r["sensitivity"] for r in summaries[m] if r["entry"] == e and r["strength"] == top), 0.0)
                for e in entries]
        ax.bar(np.arange(len(entries)) + i * width, vals, width, label=m)
    ax.set_xticks(np.arange(len(entries)) + 0.4 - width / 2)
    ax.set_xticklabels([e if len(e) < 40 else e[:37] + "..." for e in entries], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"sensitivity (1 - Dice factual vs do(z)), strength {top:g}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "sensitivity.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _to_rgb(x: np.ndarray) -> np.ndarray:
    """(C, H, W) normalised image -> (H, W, 3) uint8 (first three channels, or grey)."""
    img = x[:3] if x.shape[0] >= 3 else np.repeat(x[:1], 3, 0)
    lo, hi = np.percentile(img, (1, 99))
    return (np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)


def _outline(rgb: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    from scipy import ndimage

    edge = mask & ~ndimage.binary_erosion(mask)
    rgb = rgb.copy()
    rgb[edge] = colour
    return rgb


def write_overlays(out: Path, model: str, examples: dict, entries, top_entries: List[int]) -> List[Path]:
    """factual image + prediction | counterfactual image + prediction, for the worst cases of the top entries
    (middle slice for 3D). Green: prediction; yellow: reference."""
    from PIL import Image

    folder = out / "overlays" / model.replace(os.sep, "_")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for e in top_entries:
        for j, (worst, case, x, xs, fp, cp, ref) in enumerate(examples.get(e, [])):
            if x.ndim == 4:  # (C, D, H, W): middle slice
                z = x.shape[1] // 2
                x, xs, fp, cp = x[:, z], xs[:, z], fp[z], cp[z]
                ref = None if ref is None else ref[z]
            panels = []
            for img, pred in ((x, fp), (xs, cp)):
                rgb = _to_rgb(img)
                if ref is not None:
                    rgb = _outline(rgb, ref > 0, (255, 220, 0))
                panels.append(_outline(rgb, pred > 0, (0, 255, 0)))
            both = np.concatenate([panels[0], np.zeros((panels[0].shape[0], 2, 3), np.uint8), panels[1]], 1)
            scale = max(1, 256 // both.shape[0])
            path = folder / f"{e:02d}_{case}_{j}.png"
            with atomic_path(path) as tmp:
                Image.fromarray(both).resize((both.shape[1] * scale, both.shape[0] * scale), Image.NEAREST).save(
                    tmp, format="PNG")
            paths.append(path)
    return paths
