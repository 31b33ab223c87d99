"""A folder of DICOM series reads as volumes with the exact grid, slices ordered by position, rescale
applied, several series split by UID; every bad series is refused with one line naming it."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from nnunet_causal.errors import DatasetError
from nnunet_causal.formats.dicom_series import read_series_image, scan_dicom_folder, series_from_files
from nnunet_causal.formats.geometry import Grid, grid_differences
from tests.formats.dicom_fixtures import edit, position, rotation, series, volume


def _array(img):
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(img)


def test_oblique_series_reads_back_exactly_whatever_the_file_names(tmp_path):
    img = volume(direction=rotation(10, 20, 30))
    files = series(tmp_path / "in" / "a", img)
    for i, f in enumerate(files):  # file names in reverse slice order: order must come from the positions
        f.rename(f.with_name(f"x{len(files) - i:03d}.dcm"))
    (tmp_path / "in" / "notes.txt").write_text("not DICOM")
    [s] = scan_dicom_folder(tmp_path / "in")
    out = read_series_image(s)
    assert grid_differences(Grid.of(img), Grid.of(out), 1e-9) == []
    assert np.array_equal(_array(out), _array(img)) and out.GetPixelIDTypeAsString() == "16-bit signed integer"


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    img = volume()
    files = series(tmp_path / "s", img)
    for f in files:
        edit(f, RescaleSlope="0.5", RescaleIntercept="-100")
    out = _array(read_series_image(scan_dicom_folder(tmp_path / "s")[0]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _array(img) * 0.5 - 100)


def test_several_series_in_one_folder_are_split_by_uid(tmp_path):
    series(tmp_path / "mixed", volume(seed=1), series_uid="1.2.3.1")
    b = series(tmp_path / "other", volume(shape=(4, 10, 12), seed=2), series_uid="1.2.3.2")
    for f in b:
        shutil.move(f, tmp_path / "mixed" / f"b_{f.name}")
    found = scan_dicom_folder(tmp_path / "mixed")
    assert [(s.series_uid, len(s.files)) for s in found] == [("1.2.3.1", 6), ("1.2.3.2", 4)]
    assert found[0].case_id == "S_1_2_3_1"


def test_files_read_as_one_series_whatever_their_uids(tmp_path):
    img = volume(direction=rotation(0, 15, 0))
    files = series(tmp_path / "s", img)
    for i, f in enumerate(files):  # one folder, one series, but each file with its own UID (or none)
        edit(f, SeriesInstanceUID=f"1.2.3.{i}")
    with pytest.raises(DatasetError, match="only one slice"):
        scan_dicom_folder(tmp_path / "s")  # grouped by UID: six one-slice series
    s = series_from_files(tmp_path / "s", list(reversed(files)))
    assert s.files == tuple(files) and grid_differences(Grid.of(img), s.grid, 1e-9) == []
    assert np.array_equal(_array(read_series_image(s)), _array(img))
    files[2].write_bytes(b"not a dicom" * 30)
    with pytest.raises(DatasetError, match=rf"{files[2].name}: cannot read the DICOM header"):
        series_from_files(tmp_path / "s", files)
    with pytest.raises(DatasetError, match="no DICOM files"):
        series_from_files(tmp_path / "s", [])


def test_localizer_series_are_skipped(tmp_path):
    series(tmp_path / "study" / "ct", volume(), series_uid="1.2.3.1")
    scout = series(tmp_path / "study" / "scout", volume(shape=(2, 8, 8)), series_uid="1.2.3.9")
    for f in scout:
        edit(f, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    edit(scout[1], ImageOrientationPatient=[1, 0, 0, 0, 0, -1])  # a lateral scout: would be "inconsistent"
    assert [s.series_uid for s in scan_dicom_folder(tmp_path / "study")] == ["1.2.3.1"]


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEGLSLossless", "JPEG2000Lossless"])
def test_compressed_series_is_decoded(tmp_path, syntax):
    import pydicom.uid

    img = volume(shape=(3, 64, 64))  # OpenJPEG needs 64 pixels or more per side for its default resolutions
    series(tmp_path / "c", img, transfer_syntax=getattr(pydicom.uid, syntax))
    [s] = scan_dicom_folder(tmp_path / "c")
    import pydicom
    assert pydicom.dcmread(s.files[0]).file_meta.TransferSyntaxUID == getattr(pydicom.uid, syntax)
    assert np.array_equal(_array(read_series_image(s)), _array(img))


def _bad(tmp_path, change):
    files = series(tmp_path / "bad", volume(shape=(6, 8, 8)))
    change(files)
    with pytest.raises(DatasetError) as e:
        scan_dicom_folder(tmp_path / "bad")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "bad") in msg
    return msg


def test_missing_slice_is_refused(tmp_path):
    assert "missing slice" in _bad(tmp_path, lambda f: f[2].unlink())


def test_duplicated_slice_is_refused(tmp_path):
    def dup(files):
        shutil.copy(files[3], files[3].with_name("copy.dcm"))
        edit(files[3].with_name("copy.dcm"), SOPInstanceUID="1.2.3.99")
    assert "duplicated slice position" in _bad(tmp_path, dup)


def test_non_uniform_spacing_is_refused(tmp_path):
    def shift(files):
        p = position(files[3])
        edit(files[3], ImagePositionPatient=[p[0], p[1], p[2] + 0.4])
    assert "non-uniform slice spacing" in _bad(tmp_path, shift)


def test_gantry_tilt_is_refused(tmp_path):
    def tilt(files):
        for k, f in enumerate(files):
            p = position(f)
            edit(f, ImagePositionPatient=[p[0], p[1] + 0.5 * k, p[2]])
    msg = _bad(tmp_path, tilt)
    assert "gantry tilt" in msg and "degrees" in msg


def test_inconsistent_orientation_is_refused(tmp_path):
    def turn(files):
        edit(files[4], ImageOrientationPatient=[0, 1, 0, -1, 0, 0])
    msg = _bad(tmp_path, turn)
    assert "inconsistent orientation" in msg and "IM_0004.dcm" in msg


def test_mixed_matrix_size_is_refused(tmp_path):
    assert "mixed series: Rows" in _bad(tmp_path, lambda f: edit(f[1], Rows=4))


def test_one_slice_series_is_refused(tmp_path):
    assert "only one slice" in _bad(tmp_path, lambda f: [x.unlink() for x in f[1:]])


def test_folder_without_dicom_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.nii.gz").write_bytes(b"not dicom")
    with pytest.raises(DatasetError, match="no DICOM files found"):
        scan_dicom_folder(tmp_path / "empty")


def test_compressed_syntax_without_decoder_names_syntax_and_extra(tmp_path, monkeypatch):
    import pydicom.pixels
    from pydicom.uid import JPEGLSLossless

    class NoDecoder:
        is_available = False
        missing_dependencies = ["pyjpegls - requires pyjpegls"]

    try:
        series(tmp_path / "bad", volume(shape=(3, 8, 8)), transfer_syntax=JPEGLSLossless)
    except (RuntimeError, NotImplementedError) as e:
        pytest.skip(f"no JPEG-LS encoder to build the test series: {e}")
    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: NoDecoder())
    with pytest.raises(DatasetError) as e:
        scan_dicom_folder(tmp_path / "bad")
    assert "JPEG-LS Lossless" in str(e.value) and "nnunet_causal[dicom]" in str(e.value)
