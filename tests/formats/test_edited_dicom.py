"""Edited results in DICOM: ``nnunet_causal intervene`` takes a DICOM series folder as its case and, with
``--save_dicom``, writes DICOM-SEG / RTSTRUCT whose series description says "edited" and whose private
block holds the edit log."""
from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from nnunet_causal.formats.dicom_cases import dicom_case_input, write_case_dicom
from nnunet_causal.formats.dicom_series import scan_dicom_folder
from nnunet_causal.formats.geometry import Grid, grid_differences
from nnunet_causal.formats.segments import read_edit_history
from tests.formats.dicom_fixtures import rotation, series, volume
from tests.formats.test_dicom_seg_rtstruct import dciodvfy_errors

pytest.importorskip("highdicom")

EDITS = {"schema_version": 1, "case": "x", "edits": [
    {"command": "remove the spleen", "actions": [{"action": "remove", "structure": "spleen"}], "voxels_changed": 12,
     "refused": False, "undone": False},
    {"command": "make the liver larger", "actions": [], "voxels_changed": 0, "refused": False, "undone": True}],
    "applied": 1}


def _fake_intervene(files, model, commands, out, *a, **k):
    """What run_intervene leaves for a case (label map, sidecar, edit log), on the staged file's grid."""
    import SimpleITK as sitk
    from pathlib import Path

    img = sitk.ReadImage(files[0])
    case = Path(files[0]).name[: -len("_0000.nii.gz")]
    lab = np.zeros(sitk.GetArrayFromImage(img).shape, np.uint8)
    lab[2:4, 3:6, 3:7] = 1
    label = sitk.GetImageFromArray(lab)
    label.CopyInformation(img)
    Path(out).mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(label, f"{out}/{case}.nii.gz")
    Path(f"{out}/{case}.prompts.json").write_text(json.dumps({"case": case, "prompts": [
        {"prompt": "liver", "label_value": 1, "voxels_label_value": 1, "trained_structures": ["liver"]}]}))
    Path(f"{out}/{case}.edits.json").write_text(json.dumps(EDITS))
    _fake_intervene.grid = Grid.of(img)
    return {"mask": f"{out}/{case}.nii.gz", "sidecar": f"{out}/{case}.prompts.json", "log": f"{out}/{case}.edits.json"}


def test_intervene_on_a_dicom_series_writes_edited_dicom(tmp_path, monkeypatch):
    import nnunet_causal.intervention.modulation.intervene_cli as cli
    from nnunet_causal.cli import main

    img = volume(shape=(6, 10, 12), direction=rotation(5, 0, 20))
    series(tmp_path / "ct", img)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "dataset.json").write_text(json.dumps({"file_ending": ".nii.gz"}))
    monkeypatch.setattr(cli, "run_intervene", _fake_intervene)
    assert main(["intervene", "-i", str(tmp_path / "ct"), "-m", str(tmp_path / "model"), "-c", "remove the spleen",
                 "-o", str(tmp_path / "out"), "--save_dicom", "both"]) == 0
    assert grid_differences(Grid.of(img), _fake_intervene.grid, 1e-4) == []  # the series, staged on its grid
    [s] = scan_dicom_folder(tmp_path / "ct")
    for suffix in ("seg", "rtstruct"):
        path = tmp_path / "out" / f"{s.case_id}.{suffix}.dcm"
        assert dciodvfy_errors(path) == []
        ds = pydicom.dcmread(path)
        assert ds.SeriesDescription == "edited: remove the spleen"
        assert read_edit_history(ds) == EDITS


def test_save_dicom_needs_a_dicom_series(tmp_path):
    from nnunet_causal.errors import DatasetError

    (tmp_path / "c_0000.nii.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match="needs one folder holding a DICOM series"):
        with dicom_case_input([str(tmp_path / "c_0000.nii.gz")], tmp_path, "seg"):
            pass
    with dicom_case_input([str(tmp_path / "c_0000.nii.gz")], tmp_path) as (files, s):
        assert files == [str(tmp_path / "c_0000.nii.gz")] and s is None


def test_write_case_dicom_refuses_a_label_map_off_the_series_grid(tmp_path):
    import SimpleITK as sitk
    from nnunet_causal.errors import DatasetError

    series(tmp_path / "ct", volume(shape=(6, 10, 12)))
    [s] = scan_dicom_folder(tmp_path / "ct")
    lab = sitk.GetImageFromArray(np.zeros((6, 10, 12), np.uint8))  # spacing 1: not the series' grid
    sitk.WriteImage(lab, str(tmp_path / "c.nii.gz"))
    (tmp_path / "c.prompts.json").write_text(json.dumps({"case": "c", "prompts": [{"prompt": "liver",
                                                                                     "label_value": 1}]}))
    with pytest.raises(DatasetError, match="c.nii.gz: not on the grid of DICOM series"):
        write_case_dicom(tmp_path / "c.nii.gz", tmp_path / "c.prompts.json", s, ["seg"])
    assert not (tmp_path / "c.seg.dcm").exists()
