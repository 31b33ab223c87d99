"""Synthetic 2D endoscopy frames: nnU-Net raw layout, domain records, determinism, the spurious cue, the CLI."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnunet_causal.errors import DatasetError
from nnunet_causal.synthetic import synth_cli
from nnunet_causal.synthetic.endoscopy2d import (EndoscopyStyle, make_endoscopy_dataset, render_frame,
                                                 style_for_domain)
from nnunet_causal.synthetic.styles import describe_endoscopy_style, measure_image_statistics


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "Dataset990_SynthEndoscopy"
    return make_endoscopy_dataset(out, 4, ("siteA", "siteB", "siteC"), heldout_domain="siteC",
                                  spurious_cue="specular", image_size=(48, 40), seed=3, test_fraction=0.25)


def test_layout_labels_and_domain_records(dataset):
    dj = json.loads((dataset / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert dj["labels"] == {"background": 0, "polyp": 1}
    assert dj["file_ending"] == ".png" and dj["imaging_family"] == "endoscopy"
    assert dj["prompts"] == {"polyp": ["polyp", "colorectal polyp"]}
    train = sorted(p.name[:-len("_0000.png")] for p in (dataset / "imagesTr").glob("*_0000.png"))
    test = sorted(p.name[:-len("_0000.png")] for p in (dataset / "imagesTs").glob("*_0000.png"))
    assert len(train) == dj["numTraining"] == 9 and len(test) == 3
    assert {c.split("_")[0] for c in train} == {"siteA", "siteB", "siteC"}  # the held-out site is in imagesTr too
    assert set(dj["domains"]) == set(train) | set(test)
    for case, rec in dj["domains"].items():
        assert rec["domain"] == case.split("_")[0] == rec["site"]
        assert {"modality", "scanner", "style", "source"} <= set(rec)
        assert rec["heldout"] == (rec["domain"] == "siteC")
        split = "Tr" if case in train else "Ts"
        img = _read(dataset / f"images{split}" / f"{case}_0000.png")
        seg = _read(dataset / f"labels{split}" / f"{case}.png")
        assert img.shape == (48, 40, 3) and img.dtype == np.uint8
        assert seg.shape == (48, 40) and set(np.unique(seg)) <= {0, 1}
    assert any(_read(p).max() == 1 for p in (dataset / "labelsTr").glob("*.png"))  # some polyps exist
    assert "site siteB" in dj["domains"]["siteB_0000"]["style"]


def test_passes_nnunet_verify_dataset_integrity(dataset):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(dataset), num_processes=1)  # raises on any problem


def test_deterministic_for_a_seed(tmp_path):
    a = make_endoscopy_dataset(tmp_path / "a", 2, ("siteA", "siteX"), image_size=(32, 32), seed=5, test_fraction=0)
    b = make_endoscopy_dataset(tmp_path / "b", 2, ("siteA", "siteX"), image_size=(32, 32), seed=5, test_fraction=0)
    c = make_endoscopy_dataset(tmp_path / "c", 2, ("siteA", "siteX"), image_size=(32, 32), seed=6, test_fraction=0)
    names = sorted(p.name for p in (a / "imagesTr").iterdir())
    assert len(names) == 4
    for n in names:
        assert np.array_equal(_read(a / "imagesTr" / n), _read(b / "imagesTr" / n))
    assert not all(np.array_equal(_read(a / "imagesTr" / n), _read(c / "imagesTr" / n)) for n in names)
    # an unknown site name gets a style derived from its name, identical across calls
    assert style_for_domain("siteX") == style_for_domain("siteX") != style_for_domain("siteY")


def _highlight_stats(domain, heldout, cue, n=30):
    on_mask = total = on_white = white_total = 0
    for i in range(n):
        f = render_frame(np.random.default_rng([11, i]), (64, 64), style_for_domain(domain), cue, heldout)
        on_mask += (f.highlights & (f.label == 1)).sum()
        total += f.highlights.sum()
        white = f.image.min(-1) >= 220          # what a network sees: near-saturated white pixels
        on_white += (white & (f.label == 1)).sum()
        white_total += white.sum()
    return on_mask / max(total, 1), total, on_white / max(white_total, 1), white_total


def test_spurious_specular_cue_holds_in_sources_and_breaks_in_heldout():
    for site in ("siteA", "siteB"):
        frac, total, frac_white, n_white = _highlight_stats(site, heldout=False, cue="specular")
        assert total > 100 and frac == 1.0          # every highlight pixel is on a polyp
        assert n_white > 50 and frac_white > 0.9    # and the image shows them as white blobs on polyps
    frac, total, frac_white, n_white = _highlight_stats("siteC", heldout=True, cue="specular")
    assert total > 300 and frac < 0.25              # mostly on mucosa, rarely on polyps
    assert n_white > 50 and frac_white < 0.3
    # without the cue highlights fall anywhere
    frac, total, _, _ = _highlight_stats("siteA", heldout=False, cue=None)
    assert total > 100 and frac < 0.4


def test_polyps_redder_only_under_the_cue_in_sources():
    def red_excess(heldout):
        vals = []
        for i in range(20):
            f = render_frame(np.random.default_rng([4, i]), (64, 64), EndoscopyStyle(highlights=0, noise_sigma=0),
                             "specular", heldout)
            if f.label.any():
                img = f.image.astype(float)
                ratio = img[..., 0] / (img[..., 1] + 1)
                vals.append(ratio[f.label == 1].mean() / ratio[f.label == 0].mean())
        return np.mean(vals)

    assert red_excess(False) > red_excess(True) + 0.05


def test_argument_errors(tmp_path):
    with pytest.raises(DatasetError, match="siteZ"):
        make_endoscopy_dataset(tmp_path / "x", 2, ("siteA", "siteB"), heldout_domain="siteZ")
    with pytest.raises(DatasetError, match="spurious cue 'colour'"):
        make_endoscopy_dataset(tmp_path / "x", 2, spurious_cue="colour")
    with pytest.raises(DatasetError, match="no training case"):
        make_endoscopy_dataset(tmp_path / "x", 1, test_fraction=0.6)
    assert not (tmp_path / "x").exists()


def test_style_description_and_measured_statistics():
    text = describe_endoscopy_style("siteB", style_for_domain("siteB"))
    assert text.startswith("site siteB, white-light colonoscope with strong red colour cast")
    assert "JPEG" in text and "vignetting" in text
    assert "narrow-band" in describe_endoscopy_style("siteD", style_for_domain("siteD"))
    rng = np.random.default_rng(0)
    flat = np.full((64, 64), 100.0)
    noisy = flat + rng.normal(0, 5, flat.shape)
    assert measure_image_statistics(noisy)["noise_sigma"] == pytest.approx(5, rel=0.15)
    edges = np.kron(rng.random((8, 8)) * 200, np.ones((8, 8)))   # sharp blocks
    from scipy import ndimage
    sharp, blurred = measure_image_statistics(edges), measure_image_statistics(ndimage.gaussian_filter(edges, 2))
    assert blurred["blur"] < 0.2 * sharp["blur"]
    assert sharp["contrast"] == pytest.approx(np.percentile(edges, 99) - np.percentile(edges, 1))
    rgb = np.stack([noisy, noisy * 2, noisy], -1)
    assert measure_image_statistics(rgb, channel_axis=-1)["noise_sigma"] == pytest.approx(20 / 3, rel=0.15)


def _args(**kw):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    synth_cli.add_parser(sub)
    argv = ["synth", kw.pop("kind", "endoscopy2d"), "-d", str(kw.pop("d", 990))] + kw.pop("extra", [])
    return parser.parse_args(argv)


def test_cli_default_output_overwrite_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(DatasetError, match="nnUNet_raw"):
        synth_cli.run_synth(_args(extra=["-n", "2"]))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    small = ["-n", "3", "--size", "32", "32", "--domains", "s1", "s2", "--heldout", "s2", "--spurious-cue", "specular"]
    assert synth_cli.run_synth(_args(extra=small)) == 0
    out = tmp_path / "raw" / "Dataset990_SynthEndoscopy"
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["name"] == out.name and dj["numTraining"] == 4 and dj["synthetic"]["heldout_domain"] == "s2"
    assert "wrote" in capsys.readouterr().out
    assert not [p for p in (tmp_path / "raw").iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(DatasetError, match="--overwrite"):
        synth_cli.run_synth(_args(extra=small))
    assert synth_cli.run_synth(_args(extra=small[:2] + ["--size", "24", "24", "--overwrite"])) == 0
    assert _read(next((out / "imagesTr").glob("*.png"))).shape == (24, 24, 3)
    with pytest.raises(DatasetError, match="Dataset990_SynthEndoscopy"):   # same id, other name
        synth_cli.run_synth(_args(extra=["-n", "2", "-o", str(tmp_path / "raw" / "Dataset990_Other")]))
    with pytest.raises(DatasetError, match="--size"):
        synth_cli.run_synth(_args(extra=["--size", "8", "8", "8"]))


def test_overwrite_keeps_the_old_dataset_until_the_new_one_is_in_place(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    small = ["-n", "2", "--size", "24", "24", "--domains", "s1", "s2"]
    assert synth_cli.run_synth(_args(extra=small)) == 0
    out = tmp_path / "raw" / "Dataset990_SynthEndoscopy"
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    real_replace = os.replace

    def publish_fails(src, dst):
        if os.path.basename(str(src)).startswith(".tmp_Dataset990"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", publish_fails)
    with pytest.raises(OSError, match="No space"):
        synth_cli.run_synth(_args(extra=["-n", "2", "--size", "32", "32", "--overwrite"]))
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before           # the old dataset, whole
    assert _read(next((out / "imagesTr").glob("*.png"))).shape == (24, 24, 3)
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [out.name]           # no staging, no backup left
