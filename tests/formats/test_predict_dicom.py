"""``nnUNetv2_predict_text`` on a folder of DICOM series: one case per series, the label map on the series'
grid, and ``--save_dicom both`` writes a DICOM-SEG and an RTSTRUCT that validate, reference the series and
hold the label map's masks voxel for voxel."""
from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import torch

from nnunet_causal.formats.dicom_seg import read_dicom_seg
from nnunet_causal.formats.dicom_series import read_series_headers, scan_dicom_folder
from nnunet_causal.formats.geometry import Grid, grid_differences
from nnunet_causal.formats.rtstruct import read_rtstruct
from nnunet_causal.inference.predict_text_entry import main
from tests.formats.dicom_fixtures import rotation, series, volume
from tests.formats.test_dicom_seg_rtstruct import dciodvfy_errors
from tests.formats.tiny_model_3d import make_model_folder_3d
from tests.inference.tiny_model import find_our_trainers, use_fake_encoder

pytest.importorskip("highdicom")


@pytest.fixture
def model(tmp_path, monkeypatch):
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    return make_model_folder_3d(tmp_path)


ARGS = ["-f", "0", "-device", "cpu", "-prompts", "lesion", "marker", "a purple dragon", "--open_vocabulary",
        "--disable_progress_bar", "-npp", "1", "-nps", "1"]


def test_dicom_folder_in_dicom_seg_and_rtstruct_out(tmp_path, model):
    import SimpleITK as sitk

    a = volume(shape=(10, 20, 18), spacing=(0.9, 1.1, 2.5), origin=(-30.0, 40.0, 12.0), seed=3)
    b = volume(shape=(8, 16, 16), spacing=(1.0, 1.0, 3.0), direction=rotation(0, 12, 25), seed=4)
    series(tmp_path / "dicom" / "patient1" / "ct", a, series_uid="1.2.826.0.1.1")
    series(tmp_path / "dicom" / "patient1" / "ct2", b, series_uid="1.2.826.0.1.2")
    out = tmp_path / "pred"
    assert main(["-i", str(tmp_path / "dicom"), "-o", str(out), "-m", str(model), *ARGS, "--save_dicom", "both"]) == 0
    record = json.loads((out / "dicom_series.json").read_text())
    assert sorted(record) == ["S_1_2_826_0_1_1", "S_1_2_826_0_1_2"]
    foreground = 0
    for case, img in (("S_1_2_826_0_1_1", a), ("S_1_2_826_0_1_2", b)):
        s = next(x for x in scan_dicom_folder(tmp_path / "dicom") if x.case_id == case)
        label_img = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        assert grid_differences(Grid.of(img), Grid.of(label_img), 1e-4) == []  # NIfTI keeps float32 geometry
        label = sitk.GetArrayFromImage(label_img)
        sidecar = json.loads((out / f"{case}.prompts.json").read_text())
        headers = read_series_headers(s)
        seg_path, rt_path = out / f"{case}.seg.dcm", out / f"{case}.rtstruct.dcm"
        assert dciodvfy_errors(seg_path) == [] and dciodvfy_errors(rt_path) == []
        seg, rt = read_dicom_seg(seg_path, headers), read_rtstruct(rt_path, headers)
        for rec in sidecar["prompts"]:
            expected = label == rec["voxels_label_value"]
            foreground += int(expected.sum())
            n = rec["label_value"]
            assert seg[n][1] == rec["prompt"] and rt[n][1] == rec["prompt"]
            assert np.array_equal(seg[n][2], expected)
            assert np.array_equal(rt[n][2], expected)
        for path in (seg_path, rt_path):
            ds = pydicom.dcmread(path)
            assert ds.StudyInstanceUID == s.study_uid and ds.PatientID == headers[0].PatientID
        seg_ds = pydicom.dcmread(seg_path)
        assert seg_ds.ReferencedSeriesSequence[0].SeriesInstanceUID == s.series_uid
        assert [d.SegmentDescription for d in seg_ds.SegmentSequence] == ["lesion", "marker", "a purple dragon"]
    assert foreground > 0  # the random model segments something: the comparisons are not vacuous


def test_save_dicom_without_dicom_input_is_refused_before_any_work(tmp_path, model, capsys):
    (tmp_path / "nii").mkdir()
    import SimpleITK as sitk
    sitk.WriteImage(volume(), str(tmp_path / "nii" / "c_0000.nii.gz"))
    assert main(["-i", str(tmp_path / "nii"), "-o", str(tmp_path / "o"), "-m", str(model), *ARGS,
                 "--save_dicom", "seg"]) == 2
    assert "needs a folder of DICOM series" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_nifti_input_with_a_generated_reference_series(tmp_path, model):
    import SimpleITK as sitk

    img = volume(shape=(8, 14, 12), spacing=(0.8, 1.2, 2.5), direction=rotation(0, 0, 30), seed=5)
    (tmp_path / "nii").mkdir()
    sitk.WriteImage(img, str(tmp_path / "nii" / "c_0000.nii.gz"))
    out = tmp_path / "pred"
    assert main(["-i", str(tmp_path / "nii"), "-o", str(out), "-m", str(model), *ARGS, "--save_dicom", "seg",
                 "--dicom_reference"]) == 0
    [s] = scan_dicom_folder(out / "c_dicom")
    assert grid_differences(Grid.of(sitk.ReadImage(str(tmp_path / "nii" / "c_0000.nii.gz"))), s.grid, 1e-4) == []
    headers = read_series_headers(s)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "c.nii.gz")))
    seg = read_dicom_seg(out / "c.seg.dcm", headers)
    for rec in json.loads((out / "c.prompts.json").read_text())["prompts"]:
        assert np.array_equal(seg[rec["label_value"]][2], label == rec["voxels_label_value"])
    assert pydicom.dcmread(out / "c.seg.dcm").ReferencedSeriesSequence[0].SeriesInstanceUID == s.series_uid
    assert dciodvfy_errors(out / "c.seg.dcm") == []


def test_a_bad_series_stops_the_run_with_one_line(tmp_path, model, capsys):
    files = series(tmp_path / "dicom", volume(shape=(5, 8, 8)))
    files[2].unlink()
    assert main(["-i", str(tmp_path / "dicom"), "-o", str(tmp_path / "o"), "-m", str(model), *ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing slice" in err[0]
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_reference_series_are_ct_only_and_need_save_dicom(tmp_path):
    from nnunet_causal.errors import DatasetError
    from nnunet_causal.formats.dicom_cases import check_dicom_request, reference_series

    with pytest.raises(DatasetError, match="CT series only; this model's channel 0 is 'T1'"):
        reference_series(tmp_path, tmp_path, ".nii.gz", {"0": "T1"})
    with pytest.raises(DatasetError, match="needs --save_dicom"):
        check_dicom_request(tmp_path, None, reference=True)
