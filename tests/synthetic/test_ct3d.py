"""Synthetic 3D CT phantoms: NIfTI raw layout, anatomy on the correct side (LPS), HU, scanner styles, CLI."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_causal.errors import DatasetError
from nnunet_causal.synthetic import synth_cli
from nnunet_causal.synthetic.ct3d import (LABELS, ScannerStyle, make_ct_dataset, render_phantom,
                                          style_for_scanner)
from nnunet_causal.synthetic.styles import describe_ct_style, measure_image_statistics

SHAPE = (24, 40, 40)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "Dataset991_SynthCT"
    return make_ct_dataset(out, 3, ("scannerA", "scannerB"), shape=SHAPE, seed=1, test_fraction=0.34)


def test_layout_grids_labels_and_records(dataset):
    dj = json.loads((dataset / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "CT"} and dj["file_ending"] == ".nii.gz" and dj["imaging_family"] == "ct"
    assert len([k for k in dj["labels"] if k != "background"]) >= 6
    assert {"liver", "spleen", "kidney_left", "kidney_right", "aorta", "pancreas"} <= set(dj["labels"])
    assert set(dj["prompts"]) == set(dj["labels"]) - {"background"}
    assert dj["numTraining"] == 4 and len(list((dataset / "imagesTs").glob("*_0000.nii.gz"))) == 2
    thickness = {"scannerA": 3.0, "scannerB": 5.0}
    for case, rec in dj["domains"].items():
        assert rec["domain"] == rec["scanner"] == case.split("_")[0] and rec["modality"] == "CT"
        assert f"{thickness[rec['domain']]:g} mm slices" in rec["style"]
        split = "Tr" if rec["split"] == "train" else "Ts"
        img = sitk.ReadImage(str(dataset / f"images{split}" / f"{case}_0000.nii.gz"))
        seg = sitk.ReadImage(str(dataset / f"labels{split}" / f"{case}.nii.gz"))
        assert img.GetSize() == seg.GetSize() and img.GetSpacing() == pytest.approx(seg.GetSpacing())
        assert img.GetSpacing() == pytest.approx((1.5, 1.5, thickness[rec["domain"]]))
        assert img.GetSize()[2] == round(SHAPE[0] * 3.0 / thickness[rec["domain"]])   # same field of view
        values = set(np.unique(sitk.GetArrayFromImage(seg)).tolist())
        assert values == set(LABELS.values()), f"{case}: labels {values}"               # every organ present


def test_passes_nnunet_verify_dataset_integrity(dataset):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(dataset), num_processes=1)


def _centroid_mm(seg: sitk.Image, value: int) -> np.ndarray:
    """Physical centroid (x, y, z) in mm, LPS: +x = patient left, +y = posterior, +z = superior."""
    idx = np.argwhere(sitk.GetArrayFromImage(seg) == value)[:, ::-1].mean(0)   # (x, y, z) voxel index
    return np.asarray(seg.TransformContinuousIndexToPhysicalPoint(idx.tolist()))


def test_organs_on_the_anatomically_correct_side(dataset):
    for seg_path in sorted((dataset / "labelsTr").glob("*.nii.gz")):
        seg = sitk.ReadImage(str(seg_path))
        c = {name: _centroid_mm(seg, v) for name, v in LABELS.items() if v}
        assert c["kidney_left"][0] > c["kidney_right"][0], seg_path.name    # patient left = larger x in LPS
        assert c["spleen"][0] > c["liver"][0] and c["stomach"][0] > c["liver"][0]
        assert c["liver"][2] > c["kidney_right"][2]                         # liver superior to the kidneys
        assert min(c["kidney_left"][1], c["kidney_right"][1]) > c["stomach"][1]   # kidneys posterior
        assert c["aorta"][1] > c["pancreas"][1]
    # and the NIfTI affine tells other readers the same thing (RAS+: +x = patient right, so left kidney < right)
    import nibabel as nib
    nii = nib.load(str(seg_path))
    arr = np.asarray(nii.dataobj)
    ras = {n: nib.affines.apply_affine(nii.affine, np.argwhere(arr == LABELS[n]).mean(0))
           for n in ("kidney_left", "kidney_right")}
    assert ras["kidney_left"][0] < ras["kidney_right"][0]


def test_hu_values_and_scanner_styles():
    rng = np.random.default_rng(0)
    clean = ScannerStyle(noise_hu=0.0, blur_sigma=0.0)
    ph = render_phantom(rng, SHAPE, clean)
    assert abs(ph.image[ph.label == LABELS["liver"]].mean() - 60) < 10
    assert abs(ph.image[ph.label == LABELS["kidney_left"]].mean() - 150) < 15
    assert ph.image[0, 0, 0] == pytest.approx(-1000, abs=5)                  # air outside the body
    nc = render_phantom(np.random.default_rng(0), SHAPE, ScannerStyle(noise_hu=0, contrast_phase="non-contrast"))
    assert nc.image[nc.label == LABELS["aorta"]].mean() < 80                  # no contrast in the aorta
    # measured noise follows the scanners' noise levels (A 8 < C 15 < B 25 < D 30 HU; texture adds a little)
    noise = {d: measure_image_statistics(render_phantom(np.random.default_rng(1), SHAPE,
                                                        style_for_scanner(d)).image)["noise_sigma"]
             for d in ("scannerA", "scannerC", "scannerB", "scannerD")}
    assert list(noise.values()) == sorted(noise.values()), noise
    pure = np.random.default_rng(0).normal(0, 8, (20, 30, 30))
    assert measure_image_statistics(pure)["noise_sigma"] == pytest.approx(8, rel=0.1)
    assert "arterial phase" in describe_ct_style("scannerB", style_for_scanner("scannerB"))
    assert "streak" in describe_ct_style("scannerC", style_for_scanner("scannerC"))
    with pytest.raises(DatasetError, match="venous-ish"):
        render_phantom(rng, SHAPE, ScannerStyle(contrast_phase="venous-ish"))


def test_deterministic(tmp_path):
    a = make_ct_dataset(tmp_path / "a", 1, ("scannerA", "other"), shape=(12, 24, 24), seed=2, test_fraction=0)
    b = make_ct_dataset(tmp_path / "b", 1, ("scannerA", "other"), shape=(12, 24, 24), seed=2, test_fraction=0)
    for p in sorted((a / "imagesTr").iterdir()):
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(p))),
                              sitk.GetArrayFromImage(sitk.ReadImage(str(b / "imagesTr" / p.name))))
    with pytest.raises(DatasetError, match="distinct"):
        make_ct_dataset(tmp_path / "c", 1, ("s", "s"))


def test_cli_ct3d(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    parser = argparse.ArgumentParser()
    synth_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["synth", "ct3d", "-d", "7", "-n", "2", "--size", "12", "24", "24", "--test-fraction", "0"])
    assert synth_cli.run_synth(args) == 0
    dj = json.loads((tmp_path / "Dataset007_SynthCT" / "dataset.json").read_text())
    assert dj["numTraining"] == 6 and {r["domain"] for r in dj["domains"].values()} == {"scannerA", "scannerB",
                                                                                         "scannerC"}
    with pytest.raises(DatasetError, match="endoscopy2d only"):
        synth_cli.run_synth(parser.parse_args(["synth", "ct3d", "-d", "8", "--heldout", "scannerA"]))
