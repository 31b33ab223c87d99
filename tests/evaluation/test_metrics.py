"""Dice and HD95: conventions, agreement with nnU-Net (Dice) and independent implementations (HD95)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.distance import cdist

from nnunet_causal.errors import DatasetError
from nnunet_causal.evaluation.evaluate_folder import evaluate_folders
from nnunet_causal.evaluation.metrics import _surface, dice, hd95


def blob(shape, rng):
    m = np.zeros(shape, bool)
    c = [rng.integers(s // 4, 3 * s // 4) for s in shape]
    r = [rng.integers(2, max(3, s // 4)) for s in shape]
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    m[sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, r)) <= 1] = True
    return m


def brute_force_pooled_hd95(a, b, spacing):
    pa = np.argwhere(_surface(a)) * np.asarray(spacing)
    pb = np.argwhere(_surface(b)) * np.asarray(spacing)
    d = cdist(pa, pb)
    return np.percentile(np.concatenate([d.min(1), d.min(0)]), 95)


def test_empty_conventions():
    z = np.zeros((5, 5), bool)
    one = z.copy()
    one[2, 2] = True
    assert dice(z, z) == 1.0 and hd95(z, z, (1, 1)) == 0.0
    assert dice(z, one) == 0.0 and math.isnan(hd95(z, one, (1, 1)))


@pytest.mark.parametrize("shape,spacing", [((24, 30), (0.7, 1.3)), ((12, 16, 14), (3.0, 0.8, 0.8))])
def test_hd95_against_medpy_and_brute_force(shape, spacing):
    from medpy.metric.binary import hd95 as medpy_hd95
    rng = np.random.default_rng(0)
    for _ in range(4):
        a, b = blob(shape, rng), blob(shape, rng)
        assert hd95(a, b, spacing) == pytest.approx(medpy_hd95(b, a, voxelspacing=spacing), rel=1e-6)
        assert hd95(a, b, spacing) == pytest.approx(brute_force_pooled_hd95(a, b, spacing), rel=1e-6)


def write_case(folder, name, arr, spacing):
    im = sitk.GetImageFromArray(arr.astype(np.uint8))
    im.SetSpacing(tuple(reversed(spacing)))
    sitk.WriteImage(im, str(folder / f"{name}.nii.gz"))


@pytest.fixture
def folders(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir(), pred.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        r = blob((10, 20, 20), rng).astype(np.uint8) + 2 * blob((10, 20, 20), rng)
        p = blob((10, 20, 20), rng).astype(np.uint8) + 2 * blob((10, 20, 20), rng)
        write_case(ref, f"c{i}", np.minimum(r, 2), (2.0, 1.0, 1.0))
        write_case(pred, f"c{i}", np.minimum(p, 2), (2.0, 1.0, 1.0))
    dj = {"labels": {"background": 0, "liver": 1, "spleen": 2}, "file_ending": ".nii.gz",
          "channel_names": {"0": "CT"}, "numTraining": 4,
          "domains": {"c0": {"domain": "A"}, "c1": {"domain": "A"}, "c2": {"domain": "B"}}}
    (tmp_path / "dataset.json").write_text(json.dumps(dj))
    return ref, pred, tmp_path / "dataset.json"


def test_dice_agrees_with_nnunet(folders, tmp_path):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    ref, pred, dj = folders
    ours = evaluate_folders(ref, pred, dj, json_file=str(tmp_path / "m.json"), num_processes=1)
    theirs = compute_metrics_on_folder(str(ref), str(pred), str(tmp_path / "nn.json"), SimpleITKIO(), ".nii.gz",
                                       [1, 2], None, num_processes=1)
    for case in theirs["metric_per_case"]:
        name = Path(case["reference_file"]).name.replace(".nii.gz", "")
        for label, structure in ((1, "liver"), (2, "spleen")):
            want = case["metrics"][label]["Dice"]
            got = next(r["dice"] for r in ours["records"] if r["case"] == name and r["structure"] == structure)
            if not math.isnan(want):
                assert abs(got - want) < 1e-6
    data = json.loads((tmp_path / "m.json").read_text())
    assert set(data) == {"records", "summary"}
    assert set(data["records"][0]) >= {"case", "structure", "domain", "dice", "hd95_mm"}
    assert set(data["summary"]["per_domain"]) == {"A", "B", "unknown"}
    assert (pred / "evaluation.csv").exists() and (pred / "evaluation.md").exists()


def test_bad_input(folders, tmp_path):
    ref, pred, dj = folders
    (pred / "c3.nii.gz").unlink()
    with pytest.raises(DatasetError, match="no prediction for c3"):
        evaluate_folders(ref, pred, dj, num_processes=1)
    write_case(pred, "c3", np.zeros((10, 20, 21)), (2.0, 1.0, 1.0))
    with pytest.raises(DatasetError, match="case c3: prediction shape"):
        evaluate_folders(ref, pred, dj, num_processes=1)
    write_case(pred, "c3", np.full((10, 20, 20), 7), (2.0, 1.0, 1.0))
    with pytest.raises(DatasetError, match=r"case c3: prediction has label values \[7\]"):
        evaluate_folders(ref, pred, dj, num_processes=1)
    write_case(pred, "c3", np.zeros((10, 20, 20)), (3.0, 1.0, 1.0))
    with pytest.raises(DatasetError, match="case c3: prediction spacing"):
        evaluate_folders(ref, pred, dj, num_processes=1)
