"""The same phantoms as CT and as MR: one label map, CT in HU, MR with inverted organ contrasts."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_causal.errors import DatasetError
from nnunet_causal.synthetic.ct_mr_pairs import MRStyle, make_ct_mr_dataset, render_pair, tissue_map
from nnunet_causal.synthetic.ct3d import LABELS

SHAPE = (16, 40, 40)


def organ_mean(image, label, name):
    return float(image[label == LABELS[name]].mean())


def test_pair_shares_anatomy_and_inverts_contrast():
    p = render_pair([3, 0], SHAPE)
    assert p.ct.shape == p.mr.shape == p.label.shape
    assert set(np.unique(p.label)) <= set(LABELS.values()) and (p.label > 0).mean() > 0.05
    # CT is HU: air near -1000, fat negative; MR is a non-negative magnitude image
    assert p.ct.min() < -900 and np.percentile(p.ct, 1) < -900
    assert p.mr.min() >= 0
    # on contrast CT the aorta is brighter than the liver and fat darker than muscle-like organs; on T1 MR
    # the aorta is a flow void and fat is the brightest tissue
    assert organ_mean(p.ct, p.label, "aorta") > organ_mean(p.ct, p.label, "liver") + 50
    assert organ_mean(p.mr, p.label, "aorta") < organ_mean(p.mr, p.label, "liver") - 100
    t2 = render_pair([3, 0], SHAPE, mr_style=MRStyle(weighting="T2"))
    np.testing.assert_array_equal(t2.label, p.label)
    assert organ_mean(p.ct, p.label, "gallbladder") < organ_mean(p.ct, p.label, "liver")
    assert organ_mean(t2.mr, t2.label, "gallbladder") > organ_mean(t2.mr, t2.label, "liver") + 200


def test_pair_is_reproducible_and_seeded():
    a, b = render_pair([1, 2], SHAPE), render_pair([1, 2], SHAPE)
    np.testing.assert_array_equal(a.mr, b.mr)
    np.testing.assert_array_equal(a.ct, b.ct)
    assert not np.array_equal(render_pair([1, 3], SHAPE).label, a.label)


def test_tissue_map_classes():
    hu = np.array([[-1000.0, -100.0, 40.0, 500.0, 60.0, -850.0]])
    label = np.array([[0, 0, 0, 0, LABELS["liver"], LABELS["stomach"]]])
    t, index = tissue_map(hu, label)
    assert [list(index)[i] for i in t[0]] == ["air", "fat", "muscle", "bone", "liver", "gas"]


def test_unknown_weighting_is_an_error():
    with pytest.raises(DatasetError, match="unknown MR weighting 'PD'"):
        render_pair([0, 0], SHAPE, mr_style=MRStyle(weighting="PD"))


@pytest.mark.parametrize("source,channel,family", [("CT", "zscore", "ct"), ("MR", "T1", "mri")])
def test_dataset_is_declared_for_cross_modality(tmp_path, source, channel, family):
    from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme

    out = make_ct_mr_dataset(tmp_path / "Dataset001_Pairs", n_cases=4, shape=SHAPE, test_fraction=0.25,
                             source=source)
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": channel}
    assert get_normalization_scheme(channel).__name__ == "ZScoreNormalization"
    assert dj["imaging_family"] == family and dj["cross_modality"] and dj["counterfactual_recipe"]
    assert dj["numTraining"] == 6
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["ct_0003_0000.nii.gz", "mr_0003_0000.nii.gz"]
    assert {r["domain"] for r in dj["domains"].values()} == {"CT", "MR"}
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "imagesTr" / "ct_0001_0000.nii.gz")))
    mr = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "imagesTr" / "mr_0001_0000.nii.gz")))
    lab_ct = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "ct_0001.nii.gz")))
    lab_mr = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "mr_0001.nii.gz")))
    np.testing.assert_array_equal(lab_ct, lab_mr)
    assert ct.shape == mr.shape and ct.min() < -900 and mr.min() >= 0


def test_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="source must be"):
        make_ct_mr_dataset(tmp_path / "x", source="PET")
    with pytest.raises(DatasetError, match="leave no training phantom"):
        make_ct_mr_dataset(tmp_path / "x", n_cases=1, test_fraction=0.6)


def test_cli_writes_a_declared_pair_dataset(tmp_path, monkeypatch, capsys):
    import argparse

    from nnunet_causal.synthetic import synth_cli

    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    parser = argparse.ArgumentParser()
    synth_cli.add_parser(parser.add_subparsers())
    argv = ["synth", "ct-mr-pairs", "-d", "12", "--cases", "4", "--shape", "12", "24", "24", "--seed", "3",
            "--test-fraction", "0.25", "--source", "MR", "--dataset-name", "PairsT1"]
    assert synth_cli.run_synth(parser.parse_args(argv)) == 0
    out = tmp_path / "raw" / "Dataset012_SynthCTMR"
    assert "declared cross-modality" in capsys.readouterr().out
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["name"] == "PairsT1" and dj["cross_modality"] == {"input_normalization": "rank", "source_channel_names": {"0": "T1"}}
    assert dj["channel_names"] == {"0": "T1"} and dj["imaging_family"] == "mri" and dj["counterfactual_recipe"]
    assert dj["numTraining"] == 6 and dj["synthetic"]["seed"] == 3 and dj["synthetic"]["shape_zyx"] == [12, 24, 24]
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["ct_0003_0000.nii.gz", "mr_0003_0000.nii.gz"]
    assert sorted(p.name for p in (out / "labelsTs").iterdir()) == ["ct_0003.nii.gz", "mr_0003.nii.gz"]
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "imagesTs" / "ct_0003_0000.nii.gz")))
    mr = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "imagesTs" / "mr_0003_0000.nii.gz")))
    assert ct.shape == mr.shape == (12, 24, 24) and ct.min() < -900 and mr.min() >= 0
    # the same images as the library call with the same seed
    direct = make_ct_mr_dataset(tmp_path / "direct", n_cases=4, shape=(12, 24, 24), seed=3, test_fraction=0.25,
                                source="MR")
    np.testing.assert_array_equal(
        mr, sitk.GetArrayFromImage(sitk.ReadImage(str(direct / "imagesTs" / "mr_0003_0000.nii.gz"))))
    with pytest.raises(DatasetError, match="--overwrite"):
        synth_cli.run_synth(parser.parse_args(argv))
    assert synth_cli.run_synth(parser.parse_args(argv[:5] + ["2", "--size", "12", "24", "24", "--overwrite"])) == 0
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "zscore"} and dj["imaging_family"] == "ct" and dj["name"] == out.name
    for bad, message in ((["--domains", "a", "b"], "do not apply to ct-mr-pairs"), (["--size", "8", "8"], "Z Y X"),
                         (["--heldout", "MR"], "endoscopy2d only")):
        with pytest.raises(DatasetError, match=message):
            synth_cli.run_synth(parser.parse_args(argv[:5] + ["2", "--overwrite"] + bad))
    with pytest.raises(DatasetError, match="--source applies to ct-mr-pairs only"):
        synth_cli.run_synth(parser.parse_args(["synth", "ct3d", "-d", "13", "--source", "MR"]))
