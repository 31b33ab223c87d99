"""BraTS: both release layouts, label renumbering to nnU-Net's regions, grids, errors."""
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from dataset_conversion import brats
from fabricate import DIRECTION, assert_nothing_written, snapshot, verify, write_volume
from nnunet_causal.errors import DatasetError

SHAPE = (6, 7, 8)
BRATS_SPACING, BRATS_ORIGIN = (1.0, 1.0, 1.0), (-0.0, -239.0, 0.0)  # BraTS' own geometry (LPS-flipped in-plane)
#: the released file suffixes in the expected channel order T1, T1ce, T2, FLAIR (independent of the converter)
FILES = {"brats2021": ("t1", "t1ce", "t2", "flair"), "brats2023": ("t1n", "t1c", "t2w", "t2f")}


def seg_with(values):
    """Slice k holds ``values[k]`` in a small square (so every value is present)."""
    seg = np.zeros(SHAPE, np.uint8)
    for k, v in enumerate(values):
        seg[k, 1:3, 1:3] = v
    return seg


def make_case(root, name, release, seg_values=None, seg_array=None):
    """One case folder of ``release``; channel k's intensities lie in [1000 k, 1000 k + 100)."""
    seqs = FILES[release]
    sep = "-" if release == "brats2023" else "_"
    rng = np.random.default_rng(len(name))
    for k, s in enumerate(seqs):
        write_volume(root / name / f"{name}{sep}{s}.nii.gz", (rng.random(SHAPE) * 100 + 1000 * k).astype(np.float32),
                     spacing=BRATS_SPACING, origin=BRATS_ORIGIN)
    if seg_values is not None or seg_array is not None:
        seg = seg_array if seg_array is not None else seg_with(seg_values)
        write_volume(root / name / f"{name}{sep}seg.nii.gz", seg, spacing=BRATS_SPACING, origin=BRATS_ORIGIN)
    return root / name


def read(path):
    img = sitk.ReadImage(str(path))
    return img, sitk.GetArrayFromImage(img)


def test_both_layouts_label_conversion_and_geometry(tmp_path, raw_root):
    src = tmp_path / "BraTS" / "TrainingData"  # -i is one level above the case folders
    make_case(src, "BraTS2021_00001", "brats2021", [0, 1, 2, 4])
    make_case(src, "BraTS-GLI-00002-000", "brats2023", [0, 1, 2, 3])
    make_case(src, "BraTS-SSA-00004-000", "brats2023", [0, 3])
    make_case(src, "BraTS-GLI-00003-000", "brats2023")  # no seg: validation case -> imagesTs
    out = brats.convert(tmp_path / "BraTS", 803)
    assert out.name == "Dataset803_BraTS"
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing_tumor": [3]}
    assert dj["regions_class_order"] == [1, 2, 3]
    assert dj["channel_names"] == {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
    assert dj["numTraining"] == 3 and dj["imaging_family"] == "mri"
    assert set(dj["prompts"]) == {"whole_tumor", "tumor_core", "enhancing_tumor"}
    assert dj["domains"]["BraTS2021_00001"] == {"domain": "brats", "source": "brats2021", "modality": "MRI",
                                                "style": brats.STYLE}  # no site in 2021 names
    assert dj["domains"]["BraTS-GLI-00002-000"]["source"] == "brats2023"
    assert "site" not in dj["domains"]["BraTS-GLI-00002-000"]
    assert dj["domains"]["BraTS-SSA-00004-000"]["site"].startswith("Sub-Saharan Africa")
    assert "BraTS-GLI-00003-000" in dj["domains"]

    for case in ("BraTS2021_00001", "BraTS-GLI-00002-000"):
        lab_img, lab = read(out / "labelsTr" / f"{case}.nii.gz")
        # necrotic core 1 -> 2, edema 2 -> 1, enhancing (4 in 2021, 3 in 2023) -> 3
        assert [int(lab[k, 1, 1]) for k in range(4)] == [0, 2, 1, 3]
        assert sorted(np.unique(lab).tolist()) == [0, 1, 2, 3] and lab.dtype == np.uint8
        for k in range(4):  # channel order T1, T1ce, T2, FLAIR whatever the file names; geometry kept
            img, arr = read(out / "imagesTr" / f"{case}_{k:04d}.nii.gz")
            assert 1000 * k <= arr.mean() < 1000 * k + 100
            assert (img.GetSize(), img.GetSpacing(), img.GetOrigin(), img.GetDirection()) == \
                (lab_img.GetSize(), lab_img.GetSpacing(), lab_img.GetOrigin(), lab_img.GetDirection())
        np.testing.assert_allclose(lab_img.GetOrigin(), BRATS_ORIGIN)
        np.testing.assert_allclose(lab_img.GetDirection(), DIRECTION)
    _, ssa = read(out / "labelsTr/BraTS-SSA-00004-000.nii.gz")
    assert int(ssa[1, 1, 1]) == 3
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == [f"BraTS-GLI-00003-000_{k:04d}.nii.gz"
                                                                  for k in range(4)]
    verify(out)

    before = snapshot(out)
    assert brats.convert(src, 803) == out  # -i directly at the case folders; re-run is idempotent
    assert snapshot(out) == before
    assert sorted(p.name for p in raw_root.iterdir()) == ["Dataset803_BraTS"]


def test_scan_finds_cases_and_ignores_other_folders(tmp_path):
    make_case(tmp_path, "BraTS2021_00007", "brats2021", [0, 2])
    (tmp_path / "notes").mkdir()
    (tmp_path / "BraTS2021_00007" / "README.txt").write_text("extra files are ignored")
    cases = brats.scan(tmp_path)
    assert [(c.case, c.release, c.seg.name) for c in cases] == [("BraTS2021_00007", "brats2021",
                                                                 "BraTS2021_00007_seg.nii.gz")]
    assert [p.name for p in cases[0].images] == [f"BraTS2021_00007_{s}.nii.gz" for s in ("t1", "t1ce", "t2", "flair")]


def _shifted_seg(root):
    case = make_case(root, "BraTS2021_00005", "brats2021", [0, 4])
    write_volume(case / "BraTS2021_00005_seg.nii.gz", seg_with([0, 4]), spacing=BRATS_SPACING,
                 origin=(5.0, -239.0, 0.0))


ERRORS = {  # name: (how to make the broken download under root, expected message (regex))
    "label 5 (2021)": (lambda r: make_case(r, "BraTS2021_00001", "brats2021", [0, 1, 5]),
                       r"BraTS2021_00001_seg\.nii\.gz: unexpected label value\(s\) \[5\]"),
    "label 4 (2023)": (lambda r: make_case(r, "BraTS-GLI-00001-000", "brats2023", [0, 4]),
                       r"BraTS-GLI-00001-000-seg\.nii\.gz: unexpected label value\(s\) \[4\]"),
    "fractional label": (lambda r: make_case(r, "BraTS2021_00002", "brats2021",
                                             seg_array=seg_with([0, 1]).astype(np.float32) * 1.5),
                         r"BraTS2021_00002_seg\.nii\.gz: segmentation values must be whole numbers"),
    "missing t2f": (lambda r: (make_case(r, "BraTS-GLI-00002-000", "brats2023", [0, 3])
                               / "BraTS-GLI-00002-000-t2f.nii.gz").unlink(),
                    r"BraTS-GLI-00002-000: no t2f file"),
    "missing flair": (lambda r: (make_case(r, "BraTS2021_00004", "brats2021", [0, 1])
                                 / "BraTS2021_00004_flair.nii.gz").unlink(),
                      r"BraTS2021_00004: no flair file"),
    "t2 size": (lambda r: write_volume(make_case(r, "BraTS2021_00003", "brats2021", [0, 4])
                                       / "BraTS2021_00003_t2.nii.gz", np.zeros((6, 7, 9), np.float32)),
                r"BraTS2021_00003_t2\.nii\.gz: size"),
    "seg origin": (_shifted_seg, r"BraTS2021_00005_seg\.nii\.gz: origin"),
    "pediatric cohort": (lambda r: make_case(r, "BraTS-PED-00001-000", "brats2023", [0, 1]),
                         r"BraTS-PED-00001-000: BraTS cohort 'PED' is not supported"),
    "no case folders": (lambda r: (r / "empty_subfolder").mkdir(), r"no BraTS case folders"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_name_the_file_and_write_nothing(tmp_path, raw_root, name):
    make, message = ERRORS[name]
    src = tmp_path / "src"
    src.mkdir()
    make_case(src, "BraTS2021_00000", "brats2021", [0, 1, 2, 4])  # a good case converted before the bad one
    if name == "no case folders":
        shutil.rmtree(src / "BraTS2021_00000")
    make(src)
    with pytest.raises(DatasetError, match=message):
        brats.convert(src, 803)
    assert_nothing_written(raw_root)  # no Dataset803_BraTS, no hidden staging folder


def test_missing_input_folder(tmp_path, raw_root):
    with pytest.raises(DatasetError, match=r"nowhere does not exist"):
        brats.convert(tmp_path / "nowhere", 803)
    assert_nothing_written(raw_root)
