"""CHAOS: DICOM series + PNG masks -> volumes with correct slice order, geometry and label values."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from dataset_conversion import abdomen_composite, chaos
from fabricate import assert_nothing_written, label_volume, verify, write_dicom, write_volume
from nnunet_causal.errors import DatasetError

ROWS, COLS, N = 12, 10, 4
# rows run along -y, columns along +x (a rotated in-plane orientation): normal = row x col = (0, 0, 1)
ORIENT = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0)
SPACING = (0.9, 0.7)  # PixelSpacing: [between rows, between columns]
DZ = 3.0


def slice_pixels(i):
    """Slice i of the series (its file-name index): pixels encode i so placement can be checked."""
    return np.full((ROWS, COLS), 100 * (i + 1), np.uint16) + np.arange(COLS, dtype=np.uint16)[None, :]


def write_series(folder, masks_folder, grey_values, modality="CT", reverse_positions=True, mask_name="IMG-{:04d}.png"):
    for i in range(N):
        # file-name order i = 0..N-1; with reverse_positions file 0 lies highest along the normal
        z = (N - 1 - i) * DZ if reverse_positions else i * DZ
        write_dicom(folder / f"i{i:04d},0000b.dcm", slice_pixels(i), (10.0, 20.0, z), ORIENT, SPACING,
                    modality="CT" if modality == "CT" else "MR", intercept=-1024.0 if modality == "CT" else 0.0)
        if masks_folder is not None:
            mask = np.zeros((ROWS, COLS), np.uint8)
            mask[i + 1: i + 4, 2:6] = grey_values[i % len(grey_values)]  # a block whose row encodes i
            masks_folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(masks_folder / mask_name.format(i))


def make_chaos(root, ct_patients=(1,), mr_patients=(2,)):
    train = root / "CHAOS_Train_Sets" / "Train_Sets"
    for p in ct_patients:
        write_series(train / "CT" / str(p) / "DICOM_anon", train / "CT" / str(p) / "Ground", [255],
                     mask_name="liver_GT_{:03d}.png")
    for p in mr_patients:
        base = train / "MR" / str(p)
        write_series(base / "T1DUAL/DICOM_anon/InPhase", base / "T1DUAL/Ground", [63, 126, 189, 252], "MR")
        write_series(base / "T1DUAL/DICOM_anon/OutPhase", None, None, "MR")
        write_series(base / "T2SPIR/DICOM_anon", base / "T2SPIR/Ground", [60, 130, 180, 245], "MR",
                     reverse_positions=False)
    return root


def test_ct_series_geometry_order_and_masks(tmp_path, raw_root):
    out = chaos.convert(make_chaos(tmp_path / "dl", mr_patients=()), 802, modality="ct")
    img = sitk.ReadImage(str(out / "imagesTr/CHAOS_CT_01_0000.nii.gz"))
    lab = sitk.ReadImage(str(out / "labelsTr/CHAOS_CT_01.nii.gz"))
    np.testing.assert_allclose(img.GetSpacing(), (0.7, 0.9, DZ), atol=1e-6)  # x = column spacing, y = row spacing
    np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3),
                               np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]]).astype(float), atol=1e-6)
    # the volume starts at the lowest slice along the normal: file 0 (z = 9) comes last
    arr, labels = sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(lab)
    file_index = [int(round((a[0, 0] + 1024) / 100)) - 1 for a in arr]
    assert file_index == [3, 2, 1, 0]
    np.testing.assert_allclose(img.GetOrigin(), (10.0, 20.0, 0.0), atol=1e-5)  # the position of file 3
    # physical z of voxel slice k = origin + k * dz * normal_z: heights increase along the normal
    assert img.TransformIndexToPhysicalPoint((0, 0, 1))[2] == pytest.approx(3.0)
    for k, i in enumerate(file_index):  # each mask stays with its own DICOM file
        assert labels[k].sum() == 12 and labels[k][i + 1, 2] == 1 and labels[k][i, 2] == 0
    assert arr.dtype == np.int16 and arr.min() >= -1024 + 100  # Hounsfield via RescaleIntercept
    assert lab.GetSize() == img.GetSize() and lab.GetSpacing() == img.GetSpacing()
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "liver": 1} and "partial_labels" not in dj
    assert dj["domains"]["CHAOS_CT_01"]["scanner"] == "Philips SecuraCT"
    verify(out)


def test_mr_grey_ranges_and_partial_labels_in_both_mode(tmp_path, raw_root):
    src = make_chaos(tmp_path / "dl")
    out = chaos.convert(src, 802)
    dj = json.loads((out / "dataset.json").read_text())
    assert sorted(dj["domains"]) == ["CHAOS_CT_01", "CHAOS_T1in_02", "CHAOS_T1out_02", "CHAOS_T2_02"]
    assert dj["partial_labels"] == {"CHAOS_CT_01": ["liver"]} and dj["channel_names"] == {"0": "CT_or_MRI"}
    assert dj["domains"]["CHAOS_T1in_02"]["patient"] == dj["domains"]["CHAOS_T1out_02"]["patient"] == "02"
    t2 = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr/CHAOS_T2_02.nii.gz")))
    assert [int(t2[k].max()) for k in range(N)] == [1, 2, 3, 4]  # 60 -> liver, 130 -> right kidney, ...
    t1in = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr/CHAOS_T1in_02.nii.gz")))
    t1out = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr/CHAOS_T1out_02.nii.gz")))
    np.testing.assert_array_equal(t1in, t1out)  # one Ground folder serves both phases
    verify(out)
    before = {p.name: p.read_bytes() for p in (out / "labelsTr").iterdir()}
    chaos.convert(src, 802)
    assert {p.name: p.read_bytes() for p in (out / "labelsTr").iterdir()} == before


def test_chaos_errors_leave_nothing(tmp_path, raw_root):
    with pytest.raises(DatasetError, match="CHAOS training set not found"):
        chaos.convert(tmp_path, 802)
    MOD = "ct"
    src = make_chaos(tmp_path / "a", mr_patients=())
    ground = src / "CHAOS_Train_Sets/Train_Sets/CT/1/Ground"
    bad = np.zeros((ROWS, COLS), np.uint8)
    bad[2, 2] = 100
    Image.fromarray(bad).save(ground / "liver_GT_002.png")
    with pytest.raises(DatasetError, match=r"liver_GT_002.png: unexpected mask value\(s\) \[100\]"):
        chaos.convert(src, 802, modality=MOD)
    MOD = "mri"
    src = make_chaos(tmp_path / "b", ct_patients=())
    Image.fromarray(np.full((ROWS, COLS), 100, np.uint8)).save(
        src / "CHAOS_Train_Sets/Train_Sets/MR/2/T2SPIR/Ground/IMG-0001.png")
    with pytest.raises(DatasetError, match="IMG-0001.png: unexpected mask value"):
        chaos.convert(src, 802, modality=MOD)
    MOD = "ct"
    src = make_chaos(tmp_path / "c", mr_patients=())
    (src / "CHAOS_Train_Sets/Train_Sets/CT/1/Ground/liver_GT_003.png").unlink()
    with pytest.raises(DatasetError, match="3 mask PNG"):
        chaos.convert(src, 802, modality=MOD)
    src = make_chaos(tmp_path / "d", mr_patients=())
    (src / "CHAOS_Train_Sets/Train_Sets/CT/1/DICOM_anon/i0002,0000b.dcm").write_bytes(b"garbage" * 20)
    with pytest.raises(DatasetError, match=r"i0002,0000b.dcm: cannot read the DICOM slice"):
        chaos.convert(src, 802, modality=MOD)
    src = make_chaos(tmp_path / "e", mr_patients=())
    import shutil
    shutil.rmtree(src / "CHAOS_Train_Sets/Train_Sets/CT/1/Ground")
    with pytest.raises(DatasetError, match="Ground folder"):
        chaos.convert(src, 802, modality=MOD)
    src = make_chaos(tmp_path / "f", ct_patients=())
    with pytest.raises(DatasetError, match="MR does not exist|CT does not exist"):
        chaos.convert(src, 802)  # both modalities asked for, only MR present
    assert_nothing_written(raw_root)


def test_abdomen_composite_harmonises_labels(tmp_path, raw_root):
    dl = tmp_path / "downloads"
    make_chaos(dl / "CHAOS_Train_Sets".replace("_Train_Sets", ""), mr_patients=(2,))
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
