"""Study outputs from fabricated results: mean ± std tables, results.csv, charts, report, partial labels, overlays."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from nnunet_causal.study.config import TrainerSpec
from nnunet_causal.study.overlays import overlay_figure, pick_slice
from nnunet_causal.study.paths import Run
from nnunet_causal.study.report import markdown_metric_table, result_row, write_study_outputs
from tests.conftest import make_tiny_2d_dataset, make_tiny_3d_dataset, read_json


# --------------------------------------------------------------------------------------------------------------
# tables, charts and report from fabricated results
# --------------------------------------------------------------------------------------------------------------

def _rows():
    rows = []
    values = {("base", "A"): [0.5, 0.6, 0.7], ("base", "B"): [0.2, 0.3, 0.4],
              ("causal", "A"): [0.8, 0.8, 0.8], ("causal", "B"): [0.6, 0.5, None]}
    for (label, dom), dices in values.items():
        for seed, d in enumerate(dices):
            if d is None:
                continue
            rows.append({"trainer": f"T_{label}", "label": label, "heldout_domain": dom, "fold": "AB".index(dom),
                         "seed": seed, "dice": d, "hd95_mm": float("nan") if label == "causal" and dom == "B" else
                         10 * (1 - d), "n_cases": 4, "n_hd95_undefined": 0, "dice_lesion": d})
    return rows


def test_tables_charts_and_report_from_fabricated_results(tmp_path):
    files = write_study_outputs(tmp_path, _rows(), ["base", "causal"], ["A", "B"], title="T",
                                   header_lines=["header line"], runs_table="| runs |\n")
    table = (tmp_path / "table.md").read_text()
    dice_table, hd_table = table.split("## HD95")
    # base: A 0.6 ± 0.1, B 0.3 ± 0.1, per-seed means 0.35/0.45/0.55 -> 0.45 ± 0.1
    assert "| base | 0.600 ± 0.100 | 0.300 ± 0.100 | 0.450 ± 0.100 |" in dice_table
    # causal: B has 2 seeds; the mean column only counts seeds with both domains (0.7, 0.65)
    assert "| causal | **0.800 ± 0.000** | **0.550 ± 0.071** | **0.675 ± 0.035** |" in dice_table
    # HD95: causal's B undefined -> dash, and its mean too; lower is better -> base is bold where it exists
    assert "| causal | **2.00 ± 0.00** | – | – |" in hd_table
    assert "| base | 4.00 ± 1.00 | **7.00 ± 1.00** | **5.50 ± 1.00** |" in hd_table
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 11 and rows[0]["label"] == "base" and rows[-1]["label"] == "causal"
    assert [r["hd95_mm"] for r in rows if r["label"] == "causal" and r["heldout_domain"] == "B"] == ["", ""]
    for key in ("chart_A", "chart_B", "chart_mean"):
        assert files[key].read_bytes()[:4] == b"\x89PNG"
    report = files["report"].read_text()
    assert report.startswith("# T\n\nheader line") and "0.450 ± 0.100" in report
    assert "![A](figures/bars_A.png)" in report and "| runs |" in report


def test_single_seed_cells_have_no_spread(tmp_path):
    rows = [r for r in _rows() if r["seed"] == 0]
    dice = markdown_metric_table(rows, "dice", ["base", "causal"], ["A", "B"], True, 3)
    assert "| base | 0.500 | 0.200 | 0.350 |" in dice and "±" not in dice


def test_partial_labels_leave_unannotated_structures_out():
    evaluation = {"records": [
        {"case": "c1", "structure": "liver", "domain": "d", "dice": 0.9, "hd95_mm": 2.0},
        {"case": "c1", "structure": "spleen", "domain": "d", "dice": 0.0, "hd95_mm": None},
        {"case": "c2", "structure": "liver", "domain": "d", "dice": 0.7, "hd95_mm": 4.0},
        {"case": "c2", "structure": "spleen", "domain": "d", "dice": 0.5, "hd95_mm": 6.0}]}
    run = Run(TrainerSpec("T", "T"), "d", 0, 0, ("c1", "c2"))
    full = result_row(run, evaluation)
    assert full["dice"] == pytest.approx(0.525) and full["n_hd95_undefined"] == 1
    partial = result_row(run, evaluation, {"c1": ["liver"]})
    assert partial["dice"] == pytest.approx(0.7) and partial["dice_spleen"] == pytest.approx(0.5)
    assert partial["hd95_mm"] == pytest.approx(4.0) and partial["n_hd95_undefined"] == 0


def test_overlays_2d_and_3d(tmp_path):
    vol = np.zeros((9, 6, 6), np.uint8)
    vol[2, 1:3, 1:3] = 1
    vol[6, 1:5, 1:5] = 2
    vol[7, 1:5, 1:5] = 1
    assert pick_slice(vol) in (6, 7) and pick_slice(vol) == 6  # tie: nearest the middle (4)
    assert pick_slice(np.zeros((9, 6, 6))) == 4
    for make, ending in ((make_tiny_2d_dataset, ".png"), (make_tiny_3d_dataset, ".nii.gz")):
        raw = make(tmp_path / "raw")
        dj = read_json(raw / "dataset.json")
        cases = sorted(p.name[: -len(ending)] for p in (raw / "labelsTr").iterdir())[:2]
        out = overlay_figure(dj, raw, cases, {"perfect": raw / "labelsTr", "none": tmp_path / "absent"},
                                tmp_path / f"overlay{ending}.png", {"perfect": {cases[0]: 1.0}})
        assert out.read_bytes()[:4] == b"\x89PNG"
