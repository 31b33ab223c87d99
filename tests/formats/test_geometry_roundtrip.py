"""Every path keeps the grid: an image in each format and orientation (NIfTI written RAS by nibabel or LPS by
SimpleITK, NRRD, MHA, a DICOM series; identity and oblique directions; anisotropic spacing; 2D RGB) goes
through the folder converter and through nnU-Net's reader/writer (the prediction's export path) and comes
out on the same grid: spacing, origin and direction within 1e-5."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dataset_conversion import folder
from nnunet_causal.formats.geometry import Grid, grid_differences
from tests.formats.dicom_fixtures import rotation, series

SPACING = (0.7, 1.3, 3.1)
ORIGIN = (-112.25, 37.5, 201.0)
DIRECTIONS = {"identity": tuple(np.eye(3).ravel()), "oblique": rotation(12, -25, 40)}
FORMATS = ("nifti_ras", "nifti_lps", "nrrd", "mha", "dicom")


def _image(direction, dtype=np.int16, seed=0):
    import SimpleITK as sitk
    arr = np.random.default_rng(seed).integers(-500, 500, (6, 9, 11)).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    img.SetDirection(direction)
    return img


def _write_ras_nifti(img, path):
    """The image as nibabel writes a NIfTI: RAS affine (sform and qform)."""
    import nibabel as nib
    import SimpleITK as sitk
    g = Grid.of(img)
    lps = np.eye(4)
    lps[:3, :3] = g.matrix * np.asarray(g.spacing)
    lps[:3, 3] = g.origin
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    data = np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0))  # (x, y, z) as nibabel stores it
    nii = nib.Nifti1Image(data, ras)
    nii.set_qform(ras, code=1)
    nii.set_sform(ras, code=1)
    nib.save(nii, str(path))


def _write(img, fmt, folder_path, stem):
    import SimpleITK as sitk
    folder_path.mkdir(parents=True, exist_ok=True)
    if fmt == "dicom":
        series(folder_path / stem, img)
        return folder_path / stem
    ending = {"nifti_ras": ".nii.gz", "nifti_lps": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha"}[fmt]
    path = folder_path / f"{stem}{ending}"
    if fmt == "nifti_ras":
        _write_ras_nifti(img, path)
    else:
        sitk.WriteImage(img, str(path))
    return path


def _read_grid(path):
    import SimpleITK as sitk
    if path.is_dir():
        from nnunet_causal.formats.dicom_series import scan_dicom_folder
        return scan_dicom_folder(path)[0].grid
    return Grid.of(sitk.ReadImage(str(path)))


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
@pytest.mark.parametrize("fmt", FORMATS)
def test_converter_and_nnunet_export_keep_the_grid(tmp_path, monkeypatch, fmt, direction):
    import SimpleITK as sitk
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    img = _image(DIRECTIONS[direction])
    src = _write(img, fmt, tmp_path / "mine" / "images", "case0")
    grid_in = _read_grid(src)
    assert grid_differences(Grid.of(img), grid_in, 1e-5) == []  # the format stores the grid we meant
    label = sitk.GetImageFromArray((sitk.GetArrayFromImage(img) > 0).astype(np.uint8))
    grid_in.apply(label)
    (tmp_path / "mine" / "labels").mkdir()
    sitk.WriteImage(label, str(tmp_path / "mine" / "labels" / "case0.nrrd"))
    (tmp_path / "names.json").write_text(json.dumps({"1": "lesion"}))
    out = folder.convert(tmp_path / "mine", tmp_path / "names.json", 870, modality="CT")
    for written in (out / "imagesTr" / "case0_0000.nii.gz", out / "labelsTr" / "case0.nii.gz"):
        assert grid_differences(grid_in, _read_grid(written), 1e-5) == [], written
    # the prediction's export: nnU-Net reads the image and writes a segmentation with the read properties
    rw = SimpleITKIO()
    image_file = src if not src.is_dir() else out / "imagesTr" / "case0_0000.nii.gz"
    data, props = rw.read_images([str(image_file)])
    ending = ".nii.gz" if image_file.name.endswith(".nii.gz") else image_file.suffix
    seg_path = tmp_path / f"seg{ending}"
    rw.write_seg(np.zeros(data.shape[1:], np.uint8), str(seg_path), props)
    assert grid_differences(grid_in, _read_grid(seg_path), 1e-5) == []


def test_2d_rgb_keeps_its_size_and_pixels(tmp_path, monkeypatch):
    from PIL import Image
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    rgb = np.random.default_rng(0).integers(0, 255, (13, 21, 3)).astype(np.uint8)
    (tmp_path / "mine" / "images").mkdir(parents=True)
    (tmp_path / "mine" / "labels").mkdir()
    Image.fromarray(rgb).save(tmp_path / "mine" / "images" / "f.png")
    Image.fromarray((rgb[..., 0] > 128).astype(np.uint8)).save(tmp_path / "mine" / "labels" / "f.png")
    (tmp_path / "names.txt").write_text("1 polyp\n")
    out = folder.convert(tmp_path / "mine", tmp_path / "names.txt", 871)
    assert np.array_equal(np.asarray(Image.open(out / "imagesTr" / "f_0000.png")), rgb)
    rw = NaturalImage2DIO()
    data, props = rw.read_images([str(out / "imagesTr" / "f_0000.png")])
    assert data.shape == (3, 1, 13, 21)
    rw.write_seg(np.ones((1, 13, 21), np.uint8), str(tmp_path / "seg.png"), props)
    assert np.asarray(Image.open(tmp_path / "seg.png")).shape == (13, 21)
