import json

import numpy as np
import pytest
import SimpleITK as sitk

from fabricate import (DIRECTION, ORIGIN, SPACING, assert_nothing_written, label_volume, snapshot, verify,
                      write_volume)
from dataset_conversion import btcv
from nnunet_causal.errors import DatasetError


def make_btcv(root, n_train=2, n_test=1, shape=(6, 9, 11)):
    rng = np.random.default_rng(0)
    for i in range(1, n_train + 1):
        write_volume(root / "RawData/Training/img" / f"img{i:04d}.nii.gz",
                     rng.integers(-1000, 1500, shape).astype(np.int16))
        write_volume(root / "RawData/Training/label" / f"label{i:04d}.nii.gz", label_volume(shape, range(1, 14), i))
    for i in range(61, 61 + n_test):
        write_volume(root / "RawData/Testing/img" / f"img{i:04d}.nii.gz",
                     rng.integers(-1000, 1500, shape).astype(np.int16))
    return root


def test_btcv_converts_exactly(tmp_path, raw_root):
    src = make_btcv(tmp_path / "download")
    out = btcv.convert(src, 800)
    assert out == raw_root / "Dataset800_BTCV"
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["labels"]["kidney_right"] == 2 and dj["labels"]["portal_vein_and_splenic_vein"] == 10
    assert dj["labels"]["adrenal_gland_left"] == 13 and len(dj["labels"]) == 14
    assert dj["numTraining"] == 2 and dj["channel_names"] == {"0": "CT"} and dj["imaging_family"] == "ct"
    assert dj["prompts"]["kidney_left"][0] == "left kidney"
    assert dj["domains"]["BTCV_0001"]["modality"] == "CT" and dj["domains"]["BTCV_0061"]["domain"] == "btcv"
    img = sitk.ReadImage(str(out / "imagesTr/BTCV_0001_0000.nii.gz"))
    lab = sitk.ReadImage(str(out / "labelsTr/BTCV_0001.nii.gz"))
    ref_img = sitk.ReadImage(str(src / "RawData/Training/img/img0001.nii.gz"))
    ref_lab = sitk.ReadImage(str(src / "RawData/Training/label/label0001.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(ref_img))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(lab), sitk.GetArrayFromImage(ref_lab))
    for im in (img, lab):
        np.testing.assert_allclose(im.GetSpacing(), SPACING, atol=1e-6)
        np.testing.assert_allclose(im.GetOrigin(), ORIGIN, atol=1e-4)
        np.testing.assert_allclose(im.GetDirection(), DIRECTION, atol=1e-6)
    assert (out / "imagesTs/BTCV_0061_0000.nii.gz").is_file()
    verify(out)
    # idempotent: a second run replaces the folder with identical content
    before = snapshot(out)
    btcv.convert(src, 800)
    assert snapshot(out) == before
    assert sorted(p.name for p in raw_root.iterdir()) == ["Dataset800_BTCV"]


def test_btcv_errors_leave_nothing(tmp_path, raw_root):
    with pytest.raises(DatasetError, match="nowhere does not exist"):
        btcv.convert(tmp_path / "nowhere", 800)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="BTCV training folder"):
        btcv.convert(tmp_path / "empty", 800)
    src = make_btcv(tmp_path / "a")
    (src / "RawData/Training/label/label0002.nii.gz").unlink()
    with pytest.raises(DatasetError, match="img0002.nii.gz: no label file"):
        btcv.convert(src, 800)
    src = make_btcv(tmp_path / "b")
    write_volume(src / "RawData/Training/label/label0002.nii.gz", label_volume((6, 9, 11), [1, 14]))
    with pytest.raises(DatasetError, match=r"label0002.nii.gz: unexpected label value\(s\) \[14\]"):
        btcv.convert(src, 800)
    src = make_btcv(tmp_path / "c")
    (src / "RawData/Training/img/img0002.nii.gz").write_bytes(b"\x1f\x8b not really a volume")
    with pytest.raises(DatasetError, match="img0002.nii.gz: cannot read"):
        btcv.convert(src, 800)
    src = make_btcv(tmp_path / "d")
    write_volume(src / "RawData/Training/label/label0001.nii.gz", label_volume((6, 9, 11), [1]),
                 spacing=(0.8, 0.7, 3.0))
    with pytest.raises(DatasetError, match="label0001.nii.gz: spacing"):
        btcv.convert(src, 800)
    assert_nothing_written(raw_root)


def test_dataset_id_collision_is_an_error(tmp_path, raw_root):
    (raw_root / "Dataset800_Other").mkdir()
    with pytest.raises(DatasetError, match="already used by"):
        btcv.convert(make_btcv(tmp_path / "a"), 800)
    assert_nothing_written(raw_root, before=["Dataset800_Other"])


def test_staging_left_by_a_killed_run_is_cleaned(tmp_path, raw_root):
    stale = raw_root / ".Dataset800_BTCV.partial-abc123"
    (stale / "imagesTr").mkdir(parents=True)
    btcv.convert(make_btcv(tmp_path / "a", n_test=0), 800)
    assert sorted(p.name for p in raw_root.iterdir()) == ["Dataset800_BTCV"]
