"""BraTS: both release layouts, label renumbering to nnU-Net's regions, grids, errors."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from dataset_conversion import brats
from fabricate import assert_nothing_written, verify, write_volume
from nnunet_causal.errors import DatasetError

SHAPE = (6, 7, 8)
BRATS_SPACING, BRATS_ORIGIN = (1.0, 1.0, 1.0), (-0.0, -239.0, 0.0)


def seg_with(values):
    seg = np.zeros(SHAPE, np.uint8)
    for k, v in enumerate(values):
        seg[k, 1:3, 1:3] = v
    return seg


def make_case(root, name, release, seg_values=None):
    seqs = brats.SEQUENCES[release]
    sep = "-" if release == "brats2023" else "_"
    rng = np.random.default_rng(len(name))
    for k, s in enumerate(seqs):
        write_volume(root / name / f"{name}{sep}{s}.nii.gz", (rng.random(SHAPE) * 100 + 1000 * k).astype(np.float32),
                     spacing=BRATS_SPACING, origin=BRATS_ORIGIN)
    if seg_values is not None:
        write_volume(root / name / f"{name}{sep}seg.nii.gz", seg_with(seg_values), spacing=BRATS_SPACING,
                     origin=BRATS_ORIGIN)


def test_both_layouts_and_label_conversion(tmp_path, raw_root):
    src = tmp_path / "BraTS" / "TrainingData"
    make_case(src, "BraTS2021_00001", "brats2021", [0, 1, 2, 4])
    make_case(src, "BraTS-GLI-00002-000", "brats2023", [0, 1, 2, 3])
    make_case(src, "BraTS-GLI-00003-000", "brats2023")  # no seg: validation case -> imagesTs
    out = brats.convert(tmp_path / "BraTS", 803)
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing_tumor": [3]}
    assert dj["regions_class_order"] == [1, 2, 3] and dj["channel_names"] == {"0": "T1", "1": "T1ce", "2": "T2",
                                                                            "3": "FLAIR"}
    assert dj["numTraining"] == 2 and dj["domains"]["BraTS2021_00001"]["source"] == "brats2021"
    for case in ("BraTS2021_00001", "BraTS-GLI-00002-000"):
        lab = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / f"{case}.nii.gz")))
        # necrotic core (1) -> 2, edema (2) -> 1, enhancing (4 in 2021, 3 in 2023) -> 3
        assert [int(lab[k, 1, 1]) for k in range(4)] == [0, 2, 1, 3]
    for k in range(4):  # channel order T1, T1ce, T2, FLAIR whatever the file names
        img = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "imagesTr" / f"BraTS-GLI-00002-000_{k:04d}.nii.gz")))
        assert 1000 * k <= img.mean() < 1000 * k + 100
    assert sorted(p.name for p in (out / "imagesTs").iterdir())[0] == "BraTS-GLI-00003-000_0000.nii.gz"
    verify(out)


def test_brats_errors(tmp_path, raw_root):
    src = tmp_path / "a"
    make_case(src, "BraTS2021_00001", "brats2021", [0, 1, 5])
    with pytest.raises(DatasetError, match=r"BraTS2021_00001_seg.nii.gz: unexpected label value\(s\) \[5\]"):
        brats.convert(src, 803)
    src = tmp_path / "b"
    make_case(src, "BraTS-GLI-00002-000", "brats2023", [0, 3])
    (src / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-t2f.nii.gz").unlink()
    with pytest.raises(DatasetError, match="no t2f file"):
        brats.convert(src, 803)
    src = tmp_path / "c"
    make_case(src, "BraTS2021_00003", "brats2021", [0, 4])
    write_volume(src / "BraTS2021_00003" / "BraTS2021_00003_t2.nii.gz", np.zeros((6, 7, 9), np.float32))
    with pytest.raises(DatasetError, match="BraTS2021_00003_t2.nii.gz: size"):
        brats.convert(src, 803)
    (tmp_path / "d").mkdir()
    with pytest.raises(DatasetError, match="no BraTS case folders"):
        brats.convert(tmp_path / "d", 803)
    assert_nothing_written(raw_root)
