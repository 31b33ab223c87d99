"""The viewer opens a folder of DICOM series: one case per series, on the series' grid, staged once."""
from __future__ import annotations

import numpy as np

from nnunet_causal.formats.geometry import Grid, grid_differences
from nnunet_causal.viewer.cases import CaseImage, list_cases
from tests.formats.dicom_fixtures import rotation, series, volume


def test_viewer_lists_and_reads_dicom_series(tmp_path):
    import SimpleITK as sitk
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    img = volume(shape=(5, 9, 7), direction=rotation(0, 10, 0))
    series(tmp_path / "study" / "a", img, series_uid="1.2.3.4")
    series(tmp_path / "study" / "b", volume(shape=(4, 9, 7), seed=1), series_uid="1.2.3.5")
    cases = list_cases(tmp_path / "study", ".nii.gz")
    assert [c.case for c in cases] == ["S_1_2_3_4", "S_1_2_3_5"]
    assert list_cases(tmp_path / "study", ".nii.gz") == cases  # staged once, the same files
    [f] = cases[0].files
    assert grid_differences(Grid.of(img), Grid.of(sitk.ReadImage(f)), 1e-4) == []
    shown = CaseImage.read(cases[0].files, SimpleITKIO)
    assert shown.shape == (5, 9, 7)
    assert np.array_equal(shown.image[0], sitk.GetArrayFromImage(img).astype(np.float32))
