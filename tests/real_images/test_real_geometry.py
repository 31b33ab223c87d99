"""Real images read with the right orientation and spacing: the pyradiomics cases (NRRD, LPS, anisotropic) and
Colin27 + AAL (NIfTI) go through `nnunet_causal convert folder` and nnU-Net's reader; size, spacing, origin,
direction and the lesion's position in millimetres must equal what the files' headers say (read by hand)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.real_images.real_data import (AAL, AAL_NAMES, COLIN27, PYRADIOMICS_CASES, assert_same_geometry,
                                         extract_pyradiomics, nifti_geometry, nrrd_geometry, physical_centroid,
                                         require, sitk_geometry)

sitk = pytest.importorskip("SimpleITK")


@pytest.fixture(scope="module")
def pyradiomics_dataset(tmp_path_factory):
    """(source data folder, converted raw dataset folder)."""
    from dataset_conversion import folder

    root = tmp_path_factory.mktemp("pyradiomics")
    data = extract_pyradiomics(root)
    (root / "names.json").write_text(json.dumps({"1": "lesion"}))
    out = folder.convert(data, root / "names.json", 871, root / "raw", "PyradiomicsLesions", "MR")
    return data, out


@pytest.mark.parametrize("case", PYRADIOMICS_CASES)
def test_pyradiomics_case_keeps_its_grid_and_lesion_position(pyradiomics_dataset, case):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    data, out = pyradiomics_dataset
    header = nrrd_geometry(data / f"{case}_image.nrrd")
    assert_same_geometry(nrrd_geometry(data / f"{case}_label.nrrd"), header, f"{case} label header")
    source = sitk.ReadImage(str(data / f"{case}_image.nrrd"))
    assert_same_geometry(sitk_geometry(source), header, f"{case}_image.nrrd read by SimpleITK")
    image, label = out / "imagesTr" / f"{case}_0000.nii.gz", out / "labelsTr" / f"{case}.nii.gz"
    for path in (image, label):
        assert_same_geometry(sitk_geometry(sitk.ReadImage(str(path))), header, f"converted {path.name}")
        assert_same_geometry(nifti_geometry(path), header, f"converted {path.name} (nibabel)")
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(image))), sitk.GetArrayFromImage(source))
    src_lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(data / f"{case}_label.nrrd"))) > 0
    out_lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(label)))
    assert set(np.unique(out_lesion)) == {0, 1} and np.array_equal(out_lesion == 1, src_lesion)
    # the lesion sits where the header puts it: millimetres through the hand-read header == through the file
    np.testing.assert_allclose(physical_centroid(out_lesion == 1, sitk_geometry(sitk.ReadImage(str(label)))),
                               physical_centroid(src_lesion, header), atol=1e-3)
    # nnU-Net's reader (what training reads): spacing in numpy axis order (z, y, x)
    _, props = SimpleITKIO().read_images([str(image)])
    np.testing.assert_allclose(props["spacing"], header["spacing"][::-1], atol=1e-5)
    assert props["sitk_stuff"]["spacing"] == tuple(sitk.ReadImage(str(image)).GetSpacing())


def test_pyradiomics_spacings_are_the_anisotropic_ones_the_package_ships(pyradiomics_dataset):
    data, _ = pyradiomics_dataset
    spacing = {c: np.round(nrrd_geometry(data / f"{c}_image.nrrd")["spacing"], 4) for c in PYRADIOMICS_CASES}
    assert all(s.max() / s.min() > 1.5 for s in spacing.values()), spacing           # every case anisotropic
    assert min(s.min() for s in spacing.values()) < 1.0 < max(s.max() for s in spacing.values())


def test_colin27_and_aal_share_one_grid_with_left_structures_on_the_left(tmp_path):
    require(COLIN27, AAL, AAL_NAMES)
    t1, atlas = sitk.ReadImage(str(COLIN27)), sitk.ReadImage(str(AAL))
    for path, image in ((COLIN27, t1), (AAL, atlas)):
        assert_same_geometry(sitk_geometry(image), nifti_geometry(path), path.name)
    geometry = sitk_geometry(t1)
    assert_same_geometry(sitk_geometry(atlas), geometry, "aal vs ch2")
    assert tuple(geometry["size"]) == (181, 217, 181) and np.allclose(geometry["spacing"], 1.0)
    labels = sitk.GetArrayFromImage(atlas)
    names = {int(v): n for v, n, *_ in (line.split() for line in AAL_NAMES.read_text(encoding="latin-1").splitlines()
                                         if line.strip())}
    centre = {n: physical_centroid(labels == v, geometry) for v, n in names.items()
              if n in ("Thalamus_L", "Thalamus_R", "Precentral_L", "Cerebelum_Crus1_L")}
    # LPS: +x = left, +y = posterior, +z = superior
    assert centre["Thalamus_L"][0] > 5 and centre["Thalamus_R"][0] < -5
    assert centre["Precentral_L"][2] > centre["Thalamus_L"][2] + 20
    assert centre["Cerebelum_Crus1_L"][2] < centre["Thalamus_L"][2] - 20
    assert centre["Cerebelum_Crus1_L"][1] > centre["Thalamus_L"][1] + 30              # posterior
