"""`nnunet_causal convert folder`: a labelled folder (NIfTI / NRRD / DICOM series / PNG + a names file) becomes
an nnU-Net raw dataset with prompts and domains; bad folders get one line naming the file and publish
nothing; Colin27 + AAL and pyradiomics' lesion cases pass nnU-Net's own dataset check."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dataset_conversion import folder
from nnunet_causal.cli import main
from nnunet_causal.errors import DatasetError

TEMPLATES = Path("/usr/share/mricron/templates")
PYRADIOMICS = Path(os.environ.get("NNUNET_CAUSAL_DATA_CACHE", Path.home() / ".cache" / "nnunet_causal" / "downloads")) \
    / "pyradiomics-3.0.1.tar.gz"


def _img(arr, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)):
    import SimpleITK as sitk
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def _write(img, path):
    import SimpleITK as sitk
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def make_folder(root: Path, n=2, ending=".nrrd"):
    rng = np.random.default_rng(0)
    for i in range(n):
        lab = np.zeros((4, 8, 8), np.uint8)
        lab[1:3, 2:5, 2:5] = 10
        lab[2, 5:7, 5:7] = 20
        _write(_img(rng.normal(size=(4, 8, 8)).astype(np.float32)), root / "images" / f"case{i}{ending}")
        _write(_img(lab), root / "labels" / f"case{i}{ending}")
    (root / "names.csv").write_text("value,name\n10,liver\n20,spleen\n30,kidney_left\n")
    return root


def _read(path):
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_nrrd_folder_becomes_a_dataset_with_renumbered_labels(tmp_path, raw_root):
    src = make_folder(tmp_path / "mine")
    (tmp_path / "domains.csv").write_text("case,domain,modality,style,site\ncase0,siteA,CT,arterial,A\n")
    out = folder.convert(src, src / "names.csv", 850, modality="CT", domains_file=tmp_path / "domains.csv")
    dj = json.loads((out / "dataset.json").read_text())
    assert out.name == "Dataset850_mine" and dj["numTraining"] == 2
    assert dj["labels"] == {"background": 0, "liver": 1, "spleen": 2, "kidney_left": 3}
    assert dj["source_label_values"] == {"background": 0, "liver": 10, "spleen": 20, "kidney_left": 30}
    assert dj["channel_names"] == {"0": "CT"} and dj["imaging_family"] == "ct"
    assert dj["prompts"]["kidney_left"][0] == "left kidney"
    assert dj["domains"]["case0"]["domain"] == "siteA" and dj["domains"]["case1"]["domain"] == "mine"
    lab = _read(out / "labelsTr" / "case0.nii.gz")
    assert sorted(np.unique(lab)) == [0, 1, 2] and (lab == 2).sum() == 4


def test_dicom_series_folder_as_image(tmp_path, raw_root):
    from tests.formats.dicom_fixtures import series, volume

    img = volume(shape=(4, 8, 8), spacing=(0.8, 0.8, 2.0))
    series(tmp_path / "mine" / "images" / "ct1", img)
    lab = np.zeros((4, 8, 8), np.uint8)
    lab[1, 2:4, 2:4] = 1
    _write(_img(lab, spacing=(0.8, 0.8, 2.0), origin=img.GetOrigin()), tmp_path / "mine" / "labels" / "ct1.nii.gz")
    (tmp_path / "names.json").write_text(json.dumps({"lesion": 1}))
    out = folder.convert(tmp_path / "mine", tmp_path / "names.json", 851, modality="CT")
    import SimpleITK as sitk
    written = sitk.ReadImage(str(out / "imagesTr" / "ct1_0000.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(img))
    np.testing.assert_allclose(written.GetOrigin(), img.GetOrigin(), atol=1e-5)


def test_png_folder_2d(tmp_path, raw_root):
    from PIL import Image

    for i in range(2):
        (tmp_path / "frames" / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "frames" / "labels").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 9, 3), 100 + i, np.uint8)).save(tmp_path / "frames" / "images" / f"f{i}.jpg")
        lab = np.zeros((6, 9), np.uint8)
        lab[2:4, 3:6] = 5
        Image.fromarray(lab).save(tmp_path / "frames" / "labels" / f"f{i}.png")
    (tmp_path / "names.txt").write_text("5 polyp\n")
    out = folder.convert(tmp_path / "frames", tmp_path / "names.txt", 852)
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["file_ending"] == ".png" and dj["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert dj["imaging_family"] == "endoscopy"
    assert np.array_equal(np.unique(np.asarray(Image.open(out / "labelsTr" / "f0.png"))), [0, 1])


@pytest.mark.parametrize("spoil,match", [
    (lambda r: _write(_img(np.zeros((4, 8, 8), np.uint8), spacing=(1.0, 1.0, 2.5)), r / "labels" / "case1.nrrd"),
     "case1.nrrd: spacing"),
    (lambda r: _write(_img(np.full((4, 8, 8), 7, np.uint8)), r / "labels" / "case1.nrrd"),
     r"case1.nrrd: unexpected label value\(s\) \[7\]"),
    (lambda r: _write(_img(np.zeros((4, 8, 8), np.float32)), r / "images" / "case1.nii.gz"),
     "duplicate case id 'case1'"),
    (lambda r: (r / "labels" / "case0.nrrd").unlink(), "case0.nrrd: no label map"),
    (lambda r: (r / "names.csv").write_text("value,name\n10,liver\n10,spleen\n"), "label value 10 is given twice"),
])
def test_bad_folders_say_which_file_and_publish_nothing(tmp_path, raw_root, spoil, match):
    src = make_folder(tmp_path / "mine")
    spoil(src)
    with pytest.raises(DatasetError, match=match) as e:
        folder.convert(src, src / "names.csv", 853)
    assert "\n" not in str(e.value)
    assert list(raw_root.iterdir()) == []


def test_cli_registration_and_exit_code(tmp_path, raw_root, capsys):
    src = make_folder(tmp_path / "mine")
    assert main(["convert", "folder", "-i", str(src), "--names", str(src / "names.csv"), "-d", "854",
                 "--name", "Mine"]) == 0
    assert (raw_root / "Dataset854_Mine" / "dataset.json").is_file()
    (src / "labels" / "case1.nrrd").unlink()
    assert main(["convert", "folder", "-i", str(src), "--names", str(src / "names.csv"), "-d", "855"]) == 2
    assert "no label map" in capsys.readouterr().err


def _verify(nnunet_env, ids):
    r = subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", *ids, "--verify_dataset_integrity", "--no_pp",
                        "-npfp", "1"], env=nnunet_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    pre = Path(nnunet_env["nnUNet_preprocessed"])
    return [json.loads(next(pre.glob(f"Dataset{i}_*/dataset_fingerprint.json")).read_text()) for i in ids]


@pytest.mark.slow  # about 80 s: nnU-Net's fingerprint of a 181 x 217 x 181 volume
@pytest.mark.skipif(not (TEMPLATES / "aal.nii.gz").is_file(),
                    reason="mricron-data is not installed: run scripts/fetch_real_data.sh (apt-get install mricron-data)")
def test_colin27_with_aal_as_shipped_passes_nnunet_verification(tmp_path, nnunet_env):
    src = tmp_path / "colin27"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    (src / "images" / "colin27.nii.gz").symlink_to(TEMPLATES / "ch2.nii.gz")
    (src / "labels" / "colin27.nii.gz").symlink_to(TEMPLATES / "aal.nii.gz")
    out = folder.convert(src, TEMPLATES / "aal.nii.txt", 860, Path(nnunet_env["nnUNet_raw"]), "Colin27AAL", "MR")
    dj = json.loads((out / "dataset.json").read_text())
    assert len(dj["labels"]) == 117 and dj["labels"]["Vermis_10"] == 116
    assert dj["prompts"]["Precentral_L"][0] == "left precentral"
    [fp] = _verify(nnunet_env, ["860"])
    assert fp["spacings"] == [[1.0, 1.0, 1.0]] and len(fp["shapes_after_crop"]) == 1


@pytest.mark.slow  # about 2 min: nnU-Net's fingerprint of two 512 x 512 lung CTs and three MR volumes
@pytest.mark.skipif(not PYRADIOMICS.is_file(),
                    reason=f"{PYRADIOMICS} is not cached: run scripts/fetch_real_data.sh (downloads the pyradiomics "
                           f"3.0.1 source distribution from PyPI)")
def test_pyradiomics_lesion_cases_pass_nnunet_verification(tmp_path, nnunet_env):
    with tarfile.open(PYRADIOMICS) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("pyradiomics-3.0.1/data/") and
                   m.name.endswith(".nrrd") and "/baseline/" not in m.name]
        tar.extractall(tmp_path, members=members, filter="data")
    data = tmp_path / "pyradiomics-3.0.1" / "data"
    (tmp_path / "names.json").write_text(json.dumps({"1": "lesion"}))
    (tmp_path / "domains.csv").write_text(
        "case,domain,modality,style\n" + "".join(f"{c},{c[:-1]},{m},pyradiomics test case\n" for c, m in
                                                 [("brain1", "MR"), ("brain2", "MR"), ("breast1", "MR"),
                                                  ("lung1", "CT"), ("lung2", "CT")]))
    out = folder.convert(data, tmp_path / "names.json", 861, Path(nnunet_env["nnUNet_raw"]), "PyradiomicsLesions",
                         domains_file=tmp_path / "domains.csv")
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["numTraining"] == 5 and dj["labels"] == {"background": 0, "lesion": 1}
    assert {d["domain"] for d in dj["domains"].values()} == {"brain", "breast", "lung"}
    assert len(_verify(nnunet_env, ["861"])[0]["spacings"]) == 5
