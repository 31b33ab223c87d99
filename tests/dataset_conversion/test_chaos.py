"""CHAOS: DICOM series + PNG masks -> volumes with correct slice order, geometry and label values."""
import json
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image

from dataset_conversion import abdomen_composite, chaos
from fabricate import assert_nothing_written, label_volume, snapshot, verify, write_dicom, write_volume
from nnunet_causal.errors import DatasetError

ROWS, COLS, N = 16, 20, 5
ROW_SPACING, COL_SPACING, DZ = 0.9, 0.7, 3.0  # DICOM PixelSpacing = [ROW_SPACING, COL_SPACING]
ORIGIN = np.array([10.0, 20.0, -30.0])
# rows run along -y, columns along +x (an in-plane rotation): normal = row x col = (0, 0, 1)
ROTATED = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0)
CT_INTERCEPT = -1024.0
TRAIN = "CHAOS_Train_Sets/Train_Sets"


def oblique_orientation():
    """ImageOrientationPatient of a doubly oblique plane (no axis-aligned direction)."""
    a, b, c = np.deg2rad([25.0, -15.0, 40.0])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    r = rz @ ry @ rx
    return tuple(np.round(np.concatenate([r[:, 0], r[:, 1]]), 8))


def axes_of(orientation):
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    return row, col, np.cross(row, col)


def stored_pixels(i):
    """Stored values of the slice in file i: 1000 * (i + 1) + 20 * row + column (file index and pixel decodable)."""
    r, c = np.mgrid[0:ROWS, 0:COLS]
    return (1000 * (i + 1) + 20 * r + c).astype(np.uint16)


def mask_block(i):
    """Rows/columns of the mask block drawn in mask i (its row encodes i)."""
    return slice(i + 2, i + 5), slice(3, 8)


def write_series(folder, ground, greys, modality="CT", orientation=ROTATED, reverse=True, heights=None,
                 dicom_name="i{:04d},0000b.dcm", mask_name="liver_GT_{:03d}.png"):
    """N slices; file i (name order) lies at height ``heights[i]`` along the normal (default: reversed order,
    file 0 highest, as in the CHAOS CT data). Mask i draws ``greys[i]`` in :func:`mask_block` (i)."""
    normal = axes_of(orientation)[2]
    for i in range(N):
        h = heights[i] if heights is not None else ((N - 1 - i) if reverse else i) * DZ
        write_dicom(folder / dicom_name.format(i), stored_pixels(i), ORIGIN + h * normal, orientation,
                    (ROW_SPACING, COL_SPACING), modality="CT" if modality == "CT" else "MR",
                    intercept=CT_INTERCEPT if modality == "CT" else 0.0, instance=i + 1)
        if ground is not None:
            mask = np.zeros((ROWS, COLS), np.uint8)
            mask[mask_block(i)] = greys[i % len(greys)]
            ground.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(ground / mask_name.format(i))


MR_T1_GREYS = [63, 126, 189, 252, 0]
MR_T2_GREYS = [60, 130, 180, 245, 65]  # grey values inside the CHAOS ranges, not only the nominal ones
MR_NAMES = dict(dicom_name="IMG-0004-{:05d}.dcm", mask_name="IMG-0004-{:05d}.png")


def make_chaos(root, ct_patients=(1,), mr_patients=(2,), test_ct_patients=(), ct_orientation=ROTATED):
    """The official layout under ``root/CHAOS_Train_Sets/Train_Sets`` (+ ``Test_Sets`` without masks)."""
    train = root / TRAIN
    for p in ct_patients:
        write_series(train / "CT" / str(p) / "DICOM_anon", train / "CT" / str(p) / "Ground", [255],
                     orientation=ct_orientation)
    for p in mr_patients:
        base = train / "MR" / str(p)
        write_series(base / "T1DUAL/DICOM_anon/InPhase", base / "T1DUAL/Ground", MR_T1_GREYS, "MR", **MR_NAMES)
        write_series(base / "T1DUAL/DICOM_anon/OutPhase", None, None, "MR", **MR_NAMES)
        write_series(base / "T2SPIR/DICOM_anon", base / "T2SPIR/Ground", MR_T2_GREYS, "MR", reverse=False,
                     **MR_NAMES)
    for p in test_ct_patients:
        write_series(root / "CHAOS_Train_Sets/Test_Sets/CT" / str(p) / "DICOM_anon", None, None)
    return root


def read(path):
    img = sitk.ReadImage(str(path))
    return img, sitk.GetArrayFromImage(img)


def file_index_of_slices(arr, intercept):
    """For each volume slice, the index of the DICOM file it came from (decoded from its pixel values)."""
    return [int((a[0, 0] - intercept) // 1000) - 1 for a in arr]


# ------------------------------------------------------------------------------------------------ geometry
def test_oblique_ct_every_pixel_at_its_dicom_position(tmp_path, raw_root):
    """Doubly oblique orientation, positions reversed relative to file names: each DICOM pixel (r, c) of
    file i must land at IPP_i + c * column spacing * row dir + r * row spacing * column dir, and mask i
    must stay on file i's slice."""
    orient = oblique_orientation()
    row_dir, col_dir, normal = axes_of(orient)
    out = chaos.convert(make_chaos(tmp_path / "dl", mr_patients=(), ct_orientation=orient), 802, modality="ct")
    img, arr = read(out / "imagesTr/CHAOS_CT_01_0000.nii.gz")
    lab, labels = read(out / "labelsTr/CHAOS_CT_01.nii.gz")

    np.testing.assert_allclose(img.GetSpacing(), (COL_SPACING, ROW_SPACING, DZ), atol=1e-5)
    np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3),
                               np.stack([row_dir, col_dir, normal], axis=1), atol=1e-5)
    np.testing.assert_allclose(img.GetOrigin(), ORIGIN, atol=1e-4)  # file N-1 is the lowest along the normal
    assert file_index_of_slices(arr, CT_INTERCEPT) == [4, 3, 2, 1, 0]
    for k, i in enumerate(file_index_of_slices(arr, CT_INTERCEPT)):
        ipp = ORIGIN + (N - 1 - i) * DZ * normal
        for r, c in [(0, 0), (0, COLS - 1), (ROWS - 1, 0), (7, 11)]:
            expected = ipp + c * COL_SPACING * row_dir + r * ROW_SPACING * col_dir
            np.testing.assert_allclose(img.TransformIndexToPhysicalPoint((c, r, k)), expected, atol=1e-3)
            assert arr[k, r, c] == stored_pixels(i)[r, c] + CT_INTERCEPT  # Hounsfield units
        block = np.zeros((ROWS, COLS), np.uint8)
        block[mask_block(i)] = 1
        np.testing.assert_array_equal(labels[k], block)  # mask i on file i's slice, rows and columns unflipped

    # independent reference: SimpleITK/GDCM's own DICOM series reader gives the same volume
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "dl" / TRAIN / "CT/1/DICOM_anon")))
    ref = reader.Execute()
    for what in ("GetSpacing", "GetOrigin", "GetDirection"):
        np.testing.assert_allclose(getattr(img, what)(), getattr(ref, what)(), atol=1e-4)
    np.testing.assert_array_equal(arr, sitk.GetArrayFromImage(ref))

    assert arr.dtype == np.int16
    assert (lab.GetSize(), lab.GetSpacing(), lab.GetOrigin(), lab.GetDirection()) == \
        (img.GetSize(), img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "liver": 1} and "partial_labels" not in dj
    assert dj["channel_names"] == {"0": "CT"} and dj["imaging_family"] == "ct" and dj["numTraining"] == 1
    assert dj["domains"]["CHAOS_CT_01"] == {
        "domain": "chaos_ct", "source": "chaos", "modality": "CT", "sequence": "CT", "patient": "01",
        "subject": "chaos_ct_01", "site": chaos.SITE, "style": chaos.SEQUENCES["CT"][3], "scanner": "Philips SecuraCT"}
    verify(out)


def test_rotated_axial_spacing_and_direction(tmp_path, raw_root):
    """In-plane rotated axial slices: x = column spacing along the row direction, y = row spacing."""
    src = make_chaos(tmp_path / "dl", mr_patients=())
    image, label = chaos.read_series(chaos.scan(src, "ct")[0])
    np.testing.assert_allclose(image.GetSpacing(), (COL_SPACING, ROW_SPACING, DZ))
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(3, 3), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]])
    # one step along x (the column index) moves by the column spacing along the row direction (-y)
    p0, p1 = image.TransformIndexToPhysicalPoint((0, 0, 0)), image.TransformIndexToPhysicalPoint((1, 0, 0))
    np.testing.assert_allclose(np.subtract(p1, p0), (0, -COL_SPACING, 0), atol=1e-9)
    assert label.shape == sitk.GetArrayFromImage(image).shape == (N, ROWS, COLS)


# ------------------------------------------------------------------------------------------------ both modalities
def test_both_mode_grey_ranges_partial_labels_test_set_and_idempotence(tmp_path, raw_root):
    src = make_chaos(tmp_path / "dl", test_ct_patients=(3,))
    out = chaos.convert(src, 802)
    assert out.name == "Dataset802_CHAOS"
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "liver": 1, "kidney_right": 2, "kidney_left": 3, "spleen": 4}
    assert dj["channel_names"] == {"0": "CT_or_MRI"} and dj["imaging_family"] == "mri" and dj["numTraining"] == 4
    assert dj["partial_labels"] == {"CHAOS_CT_01": ["liver"]}
    assert sorted(dj["domains"]) == ["CHAOS_CT_01", "CHAOS_CT_03", "CHAOS_T1in_02", "CHAOS_T1out_02", "CHAOS_T2_02"]
    d = dj["domains"]
    assert [d[c]["domain"] for c in ("CHAOS_T1in_02", "CHAOS_T1out_02", "CHAOS_T2_02")] == \
        ["chaos_mri_t1_inphase", "chaos_mri_t1_outphase", "chaos_mri_t2spir"]
    assert {d[c]["patient"] for c in ("CHAOS_T1in_02", "CHAOS_T1out_02", "CHAOS_T2_02")} == {"02"}
    assert {d[c]["subject"] for c in ("CHAOS_T1in_02", "CHAOS_T1out_02", "CHAOS_T2_02")} == {"chaos_mr_02"}
    assert d["CHAOS_T2_02"]["modality"] == "MRI" and d["CHAOS_T2_02"]["scanner"] == "Philips Ingenia"
    assert d["CHAOS_T2_02"]["sequence"] == "T2SPIR" and d["CHAOS_T2_02"]["site"] == chaos.SITE
    assert set(dj["prompts"]) == {"liver", "kidney_right", "kidney_left", "spleen"}

    # T2: files in ascending position order; greys 60, 130, 180, 245, 65 -> liver, kidneys, spleen, liver
    _, t2_img = read(out / "imagesTr/CHAOS_T2_02_0000.nii.gz")
    _, t2 = read(out / "labelsTr/CHAOS_T2_02.nii.gz")
    assert file_index_of_slices(t2_img, 0.0) == [0, 1, 2, 3, 4]
    assert [sorted(np.unique(t2[k]).tolist()) for k in range(N)] == [[0, 1], [0, 2], [0, 3], [0, 4], [0, 1]]
    for k in range(N):
        assert (t2[k][mask_block(k)] > 0).all() and (t2[k] > 0).sum() == 15
    # T1: one Ground folder serves both phases; files in reversed position order
    _, t1in = read(out / "labelsTr/CHAOS_T1in_02.nii.gz")
    _, t1out = read(out / "labelsTr/CHAOS_T1out_02.nii.gz")
    np.testing.assert_array_equal(t1in, t1out)
    assert [int(t1in[k].max()) for k in range(N)] == [0, 4, 3, 2, 1]  # file 4 (grey 0) lies lowest
    # the test-set series has no mask: imagesTs only
    assert (out / "imagesTs/CHAOS_CT_03_0000.nii.gz").is_file() and not (out / "labelsTr/CHAOS_CT_03.nii.gz").exists()
    verify(out)

    before = snapshot(out)
    assert chaos.convert(src, 802) == out
    assert snapshot(out) == before  # idempotent: byte-identical dataset.json, identical volumes
    assert sorted(p.name for p in raw_root.iterdir()) == ["Dataset802_CHAOS"]


def test_scan_api_input_folders_and_natural_order(tmp_path, raw_root):
    src = make_chaos(tmp_path / "dl")
    expected = [(s.case, s.patient, s.modality, s.sequence, s.split) for s in chaos.scan(src)]
    assert expected == [("CHAOS_CT_01", "01", "CT", "CT", "Tr"),
                        ("CHAOS_T1in_02", "02", "MRI", "T1DUAL_InPhase", "Tr"),
                        ("CHAOS_T1out_02", "02", "MRI", "T1DUAL_OutPhase", "Tr"),
                        ("CHAOS_T2_02", "02", "MRI", "T2SPIR", "Tr")]
    for folder in (src / "CHAOS_Train_Sets", src / TRAIN):  # -i may be any level of the download
        assert [(s.case, s.split) for s in chaos.scan(folder)] == [(c, sp) for c, _, _, _, sp in expected]
    series = chaos.scan(src, "mri")
    assert [s.case for s in series] == ["CHAOS_T1in_02", "CHAOS_T1out_02", "CHAOS_T2_02"]
    t1in, t1out = series[0], series[1]
    assert t1in.mask_files == t1out.mask_files and len(t1in.dicom_files) == N
    assert chaos.labelled_structures(t1in) == ["liver", "kidney_right", "kidney_left", "spleen"]
    assert chaos.labelled_structures(chaos.scan(src, "ct")[0]) == ["liver"]
    names = ["IMG-10.dcm", "IMG-9.dcm", "IMG-1.dcm"]
    assert [p.name for p in sorted((src / n for n in names), key=chaos.natural_key)] == \
        ["IMG-1.dcm", "IMG-9.dcm", "IMG-10.dcm"]
    # no Manufacturer / ManufacturerModelName tags (as in the released CHAOS CT files): no "scanner"
    for f in series[2].dicom_files:
        ds = pydicom.dcmread(str(f))
        del ds.Manufacturer, ds.ManufacturerModelName
        ds.save_as(str(f))
    record = chaos.domain_record(series[2])
    assert "scanner" not in record and record["modality"] == "MRI" and record["patient"] == "02"


# ------------------------------------------------------------------------------------------------ errors
def _ct(root):
    return root / TRAIN / "CT" / "1"


def _mr(root):
    return root / TRAIN / "MR" / "2"


def _bad_png(path, value):
    mask = np.zeros((ROWS, COLS), np.uint8)
    mask[2, 2] = value
    Image.fromarray(mask).save(path)


def _uneven(root):
    folder = _ct(root) / "DICOM_anon"
    shutil.rmtree(folder)
    write_series(folder, None, None, heights=[0.0, 3.0, 6.0, 12.0, 15.0])  # one slice missing


def _reoriented_slice(root):
    path = _ct(root) / "DICOM_anon/i0003,0000b.dcm"
    write_dicom(path, stored_pixels(3), ORIGIN + DZ, (1, 0, 0, 0, 1, 0), (ROW_SPACING, COL_SPACING))


def _small_mask(root):
    Image.fromarray(np.zeros((ROWS - 1, COLS), np.uint8)).save(_ct(root) / "Ground/liver_GT_001.png")


ERRORS = {  # name: (modality, how to break the download, expected message (regex))
    "no CHAOS layout": ("ct", lambda r: shutil.rmtree(r / "CHAOS_Train_Sets"), r"CHAOS training set not found under"),
    "series without masks": ("ct", lambda r: shutil.rmtree(_ct(r) / "Ground"), r"CT/1/Ground does not exist"),
    "T2 without masks": ("mri", lambda r: shutil.rmtree(_mr(r) / "T2SPIR/Ground"), r"T2SPIR/Ground does not exist"),
    "CT grey 100": ("ct", lambda r: _bad_png(_ct(r) / "Ground/liver_GT_002.png", 100),
                    r"liver_GT_002\.png: unexpected mask grey value\(s\) \[100\]"),
    "MR grey 100": ("mri", lambda r: _bad_png(_mr(r) / "T2SPIR/Ground/IMG-0004-00001.png", 100),
                    r"T2SPIR/Ground/IMG-0004-00001\.png: unexpected mask grey value\(s\) \[100\]"),
    "corrupt dcm": ("ct", lambda r: (_ct(r) / "DICOM_anon/i0002,0000b.dcm").write_bytes(b"not a dicom" * 30),
                    r"i0002,0000b\.dcm: cannot read the DICOM header"),
    "one mask too few": ("ct", lambda r: (_ct(r) / "Ground/liver_GT_003.png").unlink(),
                         r"CT/1/Ground: 4 mask PNG\(s\) for 5 DICOM slice\(s\)"),
    "one mask too many": ("mri", lambda r: _bad_png(_mr(r) / "T1DUAL/Ground/IMG-0004-00099.png", 0),
                          r"T1DUAL/Ground: 6 mask PNG\(s\) for 5 DICOM slice\(s\) in .*InPhase"),
    "uneven slices": ("ct", _uneven, r"CT/1/DICOM_anon: series .*: missing slice\(s\)"),
    "orientation differs": ("ct", _reoriented_slice, r"inconsistent orientation within the series: .*i0003,0000b\.dcm has ImageOrientationPatient"),
    "mask size": ("ct", _small_mask, r"liver_GT_001\.png: mask size 20x15 differs"),
    "MR missing in both mode": ("both", lambda r: shutil.rmtree(r / TRAIN / "MR"), r"Train_Sets/MR does not exist"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_name_the_file_and_leave_the_previous_output(tmp_path, raw_root, name):
    modality, breaker, message = ERRORS[name]
    src = make_chaos(tmp_path / "dl")
    good = chaos.convert(src, 802, modality=modality)  # a previous, successful conversion
    before = snapshot(good)
    breaker(src)
    with pytest.raises(DatasetError, match=message):
        chaos.convert(src, 802, modality=modality)
    # nothing half-written: no staging folder, the published dataset untouched
    assert sorted(p.name for p in raw_root.iterdir()) == [good.name]
    assert snapshot(good) == before


def test_missing_input_folder_writes_nothing(tmp_path, raw_root):
    with pytest.raises(DatasetError, match=r"nowhere does not exist"):
        chaos.convert(tmp_path / "nowhere", 802)
    with pytest.raises(DatasetError, match="--modality must be one of"):
        chaos.scan(tmp_path, "pet")
    assert_nothing_written(raw_root)


# ------------------------------------------------------------------------------------------------ composite
def test_abdomen_composite_harmonises_labels(tmp_path, raw_root):
    dl = tmp_path / "downloads"
    make_chaos(dl / "CHAOS", mr_patients=(2,))
    shape = (5, 8, 7)
    write_volume(dl / "BTCV/RawData/Training/img/img0001.nii.gz", np.zeros(shape, np.int16))
    write_volume(dl / "BTCV/RawData/Training/label/label0001.nii.gz", label_volume(shape, [1, 6, 10, 11]))
    write_volume(dl / "amos22/imagesTr/amos_0001.nii.gz", np.zeros(shape, np.float32))
    write_volume(dl / "amos22/labelsTr/amos_0001.nii.gz", label_volume(shape, [1, 6, 9, 10, 13, 15]))
    out = abdomen_composite.convert(dl, 808)
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["labels"]["pancreas"] == 11 and dj["labels"]["duodenum"] == 14 and len(dj["labels"]) == 17
    values = lambda case: set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / f"{case}.nii.gz")))))
    assert values("BTCV_0001") == {0, 1, 6, 10, 11}                      # BTCV keeps its values
    assert values("amos_0001") == {0, 1, 6, 9, 11, 14, 16}               # AMOS pancreas 10 -> 11, duodenum 13 -> 14
    assert values("CHAOS_T2_02") == {0, 6, 2, 3, 1}                      # CHAOS liver 1 -> 6, spleen 4 -> 1
    assert dj["partial_labels"]["CHAOS_CT_01"] == ["liver"]
    assert "duodenum" not in dj["partial_labels"]["BTCV_0001"] and "portal_vein_and_splenic_vein" not in \
        dj["partial_labels"]["amos_0001"]
    assert {r["domain"] for r in dj["domains"].values()} == {"btcv", "amos", "chaos"}
    assert {r["modality"] for r in dj["domains"].values()} == {"CT", "MRI"}
    assert dj["channel_names"] == {"0": "CT_or_MRI"}
    verify(out)
