"""DICOM-SEG and RTSTRUCT of prompt masks: valid for dciodvfy, read back voxel for voxel, reference the source
series, coded with SNOMED CT, empty prompts kept as empty segments / ROIs, and a mask drawn at a known
physical point lies at that point in both objects."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from nnunet_causal.formats.dicom_seg import read_dicom_seg, write_dicom_seg
from nnunet_causal.formats.dicom_series import read_series_headers, scan_dicom_folder
from nnunet_causal.formats.geometry import Grid
from nnunet_causal.formats.rtstruct import read_rtstruct, write_rtstruct
from nnunet_causal.formats.segments import PromptMask
from tests.formats.dicom_fixtures import rotation, series, volume

pytest.importorskip("highdicom")


def dciodvfy_errors(path) -> list:
    """The 'Error' lines dciodvfy prints for ``path`` (skips when dicom3tools is not installed)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian: apt-get install dicom3tools)")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=600)
    return [ln for ln in (run.stdout + run.stderr).splitlines() if ln.startswith("Error")]


@pytest.fixture(params=["axial", "oblique"])
def source(request, tmp_path):
    direction = None if request.param == "axial" else rotation(10, 20, 30)
    img = volume(shape=(7, 12, 16), spacing=(0.8, 1.3, 2.5), direction=direction)  # non-square pixels
    series(tmp_path / "ct", img)
    s = scan_dicom_folder(tmp_path / "ct")[0]
    return s, read_series_headers(s)


def _masks(shape):
    liver = np.zeros(shape, bool)
    liver[1:5, 2:9, 3:12] = True
    liver[2, 4:6, 5:8] = False  # a hole
    liver[5, 10, 14] = True  # an island touching another only by a corner
    liver[5, 11, 15] = True
    kidney = np.zeros(shape, bool)
    kidney[3:6, 6:10, 1:4] = True  # overlaps the liver: segments are independent
    return [PromptMask(1, "the liver", ("liver",), liver), PromptMask(2, "left kidney", ("kidney_left",), kidney),
            PromptMask(3, "a purple dragon", (), np.zeros(shape, bool))]


def test_seg_validates_reads_back_and_references_the_series(source, tmp_path):
    s, headers = source
    masks = _masks((7, 12, 16))
    path = write_dicom_seg(masks, headers, tmp_path / "case.seg.dcm")
    assert dciodvfy_errors(path) == []
    back = read_dicom_seg(path, headers)
    assert list(back) == [1, 2, 3]
    for m in masks:
        label, description, mask = back[m.label_value]
        assert (label, description) == (m.name, m.prompt)
        assert np.array_equal(mask, m.mask)
    ds = pydicom.dcmread(path)
    assert ds.StudyInstanceUID == s.study_uid and ds.FrameOfReferenceUID == s.frame_of_reference_uid
    refs = ds.ReferencedSeriesSequence[0]
    assert refs.SeriesInstanceUID == s.series_uid
    assert {str(r.ReferencedSOPInstanceUID) for r in refs.ReferencedInstanceSequence} == \
        {str(h.SOPInstanceUID) for h in headers}
    seg1, seg2, seg3 = ds.SegmentSequence
    assert seg1.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"  # SCT Liver
    kidney = seg2.SegmentedPropertyTypeCodeSequence[0]
    assert (kidney.CodeValue, kidney.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning) == ("64033007", "Left")
    assert seg3.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Anatomical Structure"  # generic code
    assert seg1.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"


def test_rtstruct_validates_reads_back_and_references_the_series(source, tmp_path):
    s, headers = source
    masks = _masks((7, 12, 16))
    path = write_rtstruct(masks, headers, tmp_path / "case.rtstruct.dcm")
    assert dciodvfy_errors(path) == []
    back = read_rtstruct(path, headers)
    for m in masks:
        name, description, mask = back[m.label_value]
        assert (name, description) == (m.name, m.prompt)
        assert np.array_equal(mask, m.mask)  # edge-traced contours: exact, holes and corner-touching islands too
    ds = pydicom.dcmread(path)
    study = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    assert ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == s.frame_of_reference_uid
    assert study.RTReferencedSeriesSequence[0].SeriesInstanceUID == s.series_uid
    assert ds.StudyInstanceUID == s.study_uid
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["liver", "kidney_left", "a purple dragon"]
    assert "ContourSequence" not in ds.ROIContourSequence[2]  # zero voxels: the ROI is kept, without contours
    assert ds.RTROIObservationsSequence[0].RTROIIdentificationCodeSequence[0].CodeValue == "10200004"
    contour_uids = {str(c.ContourImageSequence[0].ReferencedSOPInstanceUID)
                    for c in ds.ROIContourSequence[0].ContourSequence}
    assert contour_uids <= {str(h.SOPInstanceUID) for h in headers}


def test_a_mask_at_a_known_physical_point_lands_there(tmp_path):
    img = volume(shape=(9, 14, 15), spacing=(0.8, 1.3, 2.5), origin=(-40.0, 12.5, 101.0),
                 direction=rotation(-15, 5, 40))
    series(tmp_path / "ct", img)
    s = scan_dicom_folder(tmp_path / "ct")[0]
    headers = read_series_headers(s)
    point = np.array([-35.0, 20.0, 110.0])  # mm, LPS
    ijk = np.round(Grid.of(img).physical_to_index(point)).astype(int)  # (x, y, z)
    assert np.all(ijk >= 0) and np.all(ijk < np.array(s.grid.size))
    mask = np.zeros((9, 14, 15), bool)
    mask[ijk[2], ijk[1], ijk[0]] = True
    centre = Grid.of(img).index_to_physical(ijk)
    assert np.linalg.norm(centre - point) < 1.5  # the voxel holding the point
    masks = [PromptMask(1, "lesion", ("lesion",), mask)]
    # DICOM-SEG: the frame's plane position and the pixel's place in it give the voxel centre
    seg = pydicom.dcmread(write_dicom_seg(masks, headers, tmp_path / "p.seg.dcm"))
    [frame] = seg.PerFrameFunctionalGroupsSequence
    ipp = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
    iop = np.asarray(seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient, float)
    dr, dc = np.asarray(seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing, float)
    rows, cols = np.nonzero(seg.pixel_array.reshape(seg.Rows, seg.Columns))
    found = ipp + cols[0] * dc * iop[:3] + rows[0] * dr * iop[3:]
    np.testing.assert_allclose(found, centre, atol=1e-4)
    # RTSTRUCT: the contour around the one voxel is centred on the voxel centre, within half a voxel of it
    rt = pydicom.dcmread(write_rtstruct(masks, headers, tmp_path / "p.rtstruct.dcm"))
    [contour] = rt.ROIContourSequence[0].ContourSequence
    pts = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
    np.testing.assert_allclose(pts.mean(axis=0), centre, atol=1e-4)
    assert np.linalg.norm(pts - centre, axis=1).max() <= 0.5 * max(s.grid.spacing[:2]) + 1e-6


def test_all_empty_prompts_still_make_a_valid_seg(source, tmp_path):
    _, headers = source
    masks = [PromptMask(1, "liver", ("liver",), np.zeros((7, 12, 16), bool))]
    path = write_dicom_seg(masks, headers, tmp_path / "empty.seg.dcm")
    assert dciodvfy_errors(path) == []
    assert not read_dicom_seg(path, headers)[1][2].any()


def test_a_mask_off_the_series_grid_is_refused(source, tmp_path):
    from nnunet_causal.errors import DatasetError

    _, headers = source
    with pytest.raises(DatasetError, match="has shape"):
        write_rtstruct([PromptMask(1, "liver", ("liver",), np.zeros((7, 12, 15), bool))], headers, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()
