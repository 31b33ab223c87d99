"""nnunet_causal audit on a tiny model folder (random weights): tables, plot, overlays, same counterfactuals
for every model, and clear errors."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from nnunet_causal.audit.audit_cli import run_audit
from nnunet_causal.cli import main
from nnunet_causal.confounders.dictionary import load_confounder_entries
from nnunet_causal.errors import DatasetError, ModelError
from tests.inference.tiny_model import find_our_trainers, make_model_folder


def _images(folder, n=3, size=32, grey=False):
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i in range(n):
        img = rng.normal(120, 20, (size, size, 3))
        seg = np.zeros((size, size), np.uint8)
        seg[8:18, 8:18] = 1
        img[seg == 1] = (200, 80, 80)
        img[2:5, 2:5] = 255
        arr = np.clip(img, 0, 255).astype(np.uint8)
        Image.fromarray(arr[..., 0] if grey else arr).save(folder / "images" / f"case{i}_0000.png")
        Image.fromarray(seg).save(folder / "labels" / f"case{i}.png")
    return folder / "images", folder / "labels"


@pytest.fixture
def model(tmp_path, monkeypatch):
    find_our_trainers(monkeypatch)
    return make_model_folder(tmp_path / "m")


def test_audit_writes_ranked_tables_plot_and_overlays(tmp_path, model):
    images, labels = _images(tmp_path / "data")
    out = tmp_path / "audit"
    summaries = run_audit([str(model), str(model)], str(images), str(out), str(labels), strengths=(0.5, 1.0),
                          names=["a", "b"], progress=False)
    a, b = summaries["a"], summaries["b"]
    n = sum(bool(e.simulators) for e in load_confounder_entries("endoscopy"))
    top = [r for r in a if r["strength"] == 1.0]
    assert len(top) == n and sorted(r["rank"] for r in top) == list(range(1, n + 1))
    assert all(0 <= r["sensitivity"] <= 1 for r in a) and any(r["sensitivity"] > 0 for r in a)
    assert all(r["n_images"] == 3 and r["dice_change"] is not None for r in a)
    # both "models" saw the same counterfactual images: identical measurements
    assert [(r["entry"], r["sensitivity"]) for r in a] == [(r["entry"], r["sensitivity"]) for r in b]
    rows = list(csv.DictReader(open(out / "audit.csv")))
    assert len(rows) == 2 * 2 * n and {r["model"] for r in rows} == {"a", "b"}
    md = (out / "audit.md").read_text()
    assert "## a" in md and "Side by side" in md
    per_case = json.loads((out / "audit.json").read_text())["per_case"]["a"]
    assert {r["case"] for r in per_case} == {"case0", "case1", "case2"}
    assert (out / "sensitivity.png").stat().st_size > 2000
    overlays = list((out / "overlays" / "a").glob("*.png"))
    assert overlays and Image.open(overlays[0]).size[0] > Image.open(overlays[0]).size[1]


def test_audit_cli_and_errors(tmp_path, model, capsys):
    images, labels = _images(tmp_path / "data", n=1)
    bad_dict = tmp_path / "bad.txt"
    bad_dict.write_text("a blurry frame :: defocus_blur(sigma=0..99)\n")
    assert main(["audit", "-m", str(model), "-i", str(images), "-o", str(tmp_path / "o"),
                 "--dictionary", str(bad_dict)]) == 2
    assert "bad.txt, line 1" in capsys.readouterr().err
    with pytest.raises(ModelError, match="fold 3 was not trained"):
        run_audit([str(model)], str(images), str(tmp_path / "o"), fold="3", progress=False)
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="checkpoint_final.pth: cannot read the checkpoint"):
        run_audit([str(model)], str(images), str(tmp_path / "o"), progress=False)
    assert not (tmp_path / "o" / "audit.md").exists()      # nothing half-written


def test_audit_checks_channels_and_labels(tmp_path, model):
    images, labels = _images(tmp_path / "grey", n=1, grey=True)
    with pytest.raises(DatasetError, match="case 'case0' .* has 1 channel"):
        run_audit([str(model)], str(images), str(tmp_path / "o"), progress=False)
    images, labels = _images(tmp_path / "rgb", n=1)
    (labels / "case0.png").unlink()
    with pytest.raises(DatasetError, match="reference label .*case0.png of case 'case0' does not exist"):
        run_audit([str(model)], str(images), str(tmp_path / "o"), str(labels), progress=False)


def test_a_bad_second_model_is_found_before_any_work(tmp_path, model):
    images, _ = _images(tmp_path / "data", n=1)
    with pytest.raises(ModelError, match="does not exist"):
        run_audit([str(model), str(tmp_path / "missing_model")], str(images), str(tmp_path / "o"), progress=False)
    assert not (tmp_path / "o").exists()
