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


def test_the_measurements_on_a_hand_computed_case(monkeypatch):
    """A model that labels 0 < x <= 3 as "lesion" (1) and x > 3 as "other" (2); one 10x10 lesion; a do(z) that
    at strength s lowers the right half of the image by 2 s and, at s = 1, adds six bright voxels far away.
    At s = 1 the lesion loses its right half: consistency = 2 * 50 / (100 + 50) = 2/3, and against a reference
    equal to the factual mask dice_change = 2/3 - 1 = -1/3; "other" appears from nothing: consistency 0 (an
    empty and a non-empty mask), dice_change 0 - 1 (two empty masks have Dice 1), fp_created 6. At s = 0.25
    nothing changes. Summary at s = 1: sensitivity (1/3 + 1) / 2, dice_change (-1/3 - 1) / 2, fp 6 / 2."""
    from types import SimpleNamespace

    import torch

    from nnunet_causal.audit.measure import AuditCase, ModelAuditor
    from nnunet_causal.audit.report import summarise

    x = -np.ones((1, 1, 32, 32), np.float32)             # (C, Z, H, W): one 2D slice
    x[0, 0, 8:18, 11:21] = 1.0                          # columns 16..20 are its right half
    ref = (x > 0).astype(np.int16)

    class Logits:
        def __init__(self, data):
            self.data = data

    class Predictor:
        dataset_json = {"channel_names": {"0": "x"}}
        label_manager = SimpleNamespace(convert_logits_to_segmentation=lambda logits: torch.as_tensor(logits.data))
        configuration_manager = SimpleNamespace(preprocessor_class=lambda verbose: SimpleNamespace(
            run_case=lambda files, label, *a: (x.copy(), None if label is None else ref.copy(), {})))
        plans_manager = None

        @staticmethod
        def predict_sliding_window_return_logits(data):
            d = data[0].numpy()
            return Logits(((d > 0) & (d <= 3)).astype(np.int16) + 2 * (d > 3).astype(np.int16))

    def do_z(self, data, seg, entry, generator, strength):
        out = data.clone()
        out[..., 16:] -= 2 * strength                       # the right half: columns 16..31
        out[0, 0, 0, 26:32] = 5.0 * (strength == 1.0)       # six new bright voxels far from the structure
        return out

    monkeypatch.setattr(ModelAuditor, "_intervene", do_z)
    auditor = ModelAuditor.__new__(ModelAuditor)
    auditor.predictor, auditor.channels, auditor.ndim, auditor.draws = Predictor(), 1, 2, 1
    auditor.sampler = SimpleNamespace(active=[0])
    auditor.entries = [SimpleNamespace(description="a darker right half", where="test, line 1")]
    auditor.strengths = [0.25, 1.0]
    auditor.structures = {"lesion": 1, "other": 2}
    rows = auditor.run([AuditCase("c0", ["c0_0000.png"], "c0.png")], progress=False)["rows"]
    got = {(r["strength"], r["structure"]): (r["consistency"], r["dice_change"], r["fp_created"]) for r in rows}
    assert got[(0.25, "lesion")] == (1.0, 0.0, 0)
    assert got[(1.0, "lesion")][0] == pytest.approx(2 / 3) and got[(1.0, "lesion")][1] == pytest.approx(-1 / 3)
    assert got[(1.0, "lesion")][2] == 0 and got[(0.25, "other")] == (1.0, 0.0, 0)
    assert got[(1.0, "other")] == (0.0, -1.0, 6)
    summary = summarise("m", rows, auditor.entries, has_reference=True)
    top = [r for r in summary if r["strength"] == 1.0][0]
    assert top["sensitivity"] == pytest.approx(2 / 3) and top["dice_change"] == pytest.approx(-2 / 3)
    assert top["fp_created_per_image"] == 3.0 and top["rank"] == 1 and top["n_images"] == 1
    low = [r for r in summary if r["strength"] == 0.25][0]
    assert (low["sensitivity"], low["dice_change"], low["fp_created_per_image"]) == (0.0, 0.0, 0.0)
