import io
import json

import numpy as np
import pytest
from PIL import Image

from fabricate import assert_nothing_written, verify
from dataset_conversion import cvc_clinicdb, endoscopy_composite, etis, kvasir
from nnunet_causal.errors import DatasetError


def frame_and_mask(rng, h=24, w=30):
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[5:15, 8:20] = 255
    return img, mask


def save(array, path, fmt=None, quality=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {"quality": quality} if quality else {}
    Image.fromarray(array).save(path, format=fmt, **kw)


def jpeg_noisy(mask):
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="JPEG", quality=75)
    return np.asarray(Image.open(buf))


def make_kvasir(root, n=3):
    rng = np.random.default_rng(0)
    for i in range(n):
        img, mask = frame_and_mask(rng)
        save(img, root / "Kvasir-SEG/images" / f"cju{i}abc.jpg", "JPEG")
        save(mask, root / "Kvasir-SEG/masks" / f"cju{i}abc.jpg", "JPEG", quality=75)
    return root


def make_cvc(root, n=3, ext=".tif", fmt="TIFF"):
    rng = np.random.default_rng(1)
    for i in range(1, n + 1):
        img, mask = frame_and_mask(rng, 20, 26)
        save(img, root / "Original" / f"{i}{ext}", fmt)
        save(mask, root / "Ground Truth" / f"{i}{ext}", fmt)
    return root


def make_etis(root, n=2):
    rng = np.random.default_rng(2)
    for i in range(1, n + 1):
        img, mask = frame_and_mask(rng, 28, 22)
        save(img, root / "ETIS-LaribPolypDB" / f"{i}.tif", "TIFF")
        save(mask, root / "GroundTruth" / f"p{i}.tif", "TIFF")
    return root


def read(path):
    return np.asarray(Image.open(path))


def test_jpeg_masks_are_thresholded(tmp_path, raw_root):
    src = make_kvasir(tmp_path / "dl")
    noisy = read(src / "Kvasir-SEG/masks/cju0abc.jpg")
    assert len(np.unique(noisy)) > 2  # the fabricated mask really carries JPEG noise
    out = kvasir.convert(src, 804)
    lab = read(out / "labelsTr/kvasir_cju0abc.png")
    expected = (noisy.mean(axis=2) if noisy.ndim == 3 else noisy) >= 128
    np.testing.assert_array_equal(lab, expected.astype(np.uint8))
    assert set(np.unique(lab)) == {0, 1}
    img = read(out / "imagesTr/kvasir_cju0abc_0000.png")
    assert img.shape == (24, 30, 3) and img.dtype == np.uint8
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "R", "1": "G", "2": "B"} and dj["file_ending"] == ".png"
    assert dj["labels"] == {"background": 0, "polyp": 1} and dj["prompts"]["polyp"][0] == "polyp"
    assert dj["domains"]["kvasir_cju0abc"]["domain"] == "kvasir" and dj["imaging_family"] == "endoscopy"
    verify(out)


def test_cvc_tif_and_png_and_etis_prefix(tmp_path, raw_root):
    tif = cvc_clinicdb.convert(make_cvc(tmp_path / "cvc_tif"), 805)
    rng = np.random.default_rng(1)
    img, mask = frame_and_mask(rng, 20, 26)
    np.testing.assert_array_equal(read(tif / "imagesTr/cvc-clinicdb_1_0000.png"), img)  # lossless TIFF kept exactly
    np.testing.assert_array_equal(read(tif / "labelsTr/cvc-clinicdb_1.png"), (mask > 0).astype(np.uint8))
    png = cvc_clinicdb.convert(make_cvc(tmp_path / "cvc_png" / "PNG", ext=".png", fmt="PNG").parent, 815)
    assert len(list((png / "labelsTr").iterdir())) == 3
    out = etis.convert(make_etis(tmp_path / "etis"), 806)
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == ["etis_1.png", "etis_2.png"]
    verify(out)


def test_polyp_errors(tmp_path, raw_root):
    src = make_kvasir(tmp_path / "a")
    (src / "Kvasir-SEG/masks/cju1abc.jpg").unlink()
    with pytest.raises(DatasetError, match="cju1abc.jpg: no mask"):
        kvasir.convert(src, 804)
    src = make_cvc(tmp_path / "b")
    save(np.full((20, 26), 128, np.uint8), src / "Ground Truth/2.tif", "TIFF")
    with pytest.raises(DatasetError, match="2.tif: unexpected mask values"):
        cvc_clinicdb.convert(src, 805)
    src = make_etis(tmp_path / "c")
    save(np.zeros((10, 10), np.uint8), src / "GroundTruth/p2.tif", "TIFF")
    with pytest.raises(DatasetError, match="p2.tif: mask size"):
        etis.convert(src, 806)
    src = make_kvasir(tmp_path / "d")
    (src / "Kvasir-SEG/images/cju2abc.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="cju2abc.jpg: cannot read"):
        kvasir.convert(src, 804)
    with pytest.raises(DatasetError, match="CVC-ClinicDB layout not found"):
        cvc_clinicdb.convert(tmp_path / "a", 805)
    assert_nothing_written(raw_root)


def test_endoscopy_composite_one_site_per_source(tmp_path, raw_root):
    dl = tmp_path / "downloads"
    make_kvasir(dl / "kvasir-seg")
    make_cvc(dl / "CVC-ClinicDB" / "PNG", ext=".png", fmt="PNG")
    make_etis(dl / "ETIS-LaribPolypDB")
    out = endoscopy_composite.convert(dl, 807)
    dj = json.loads((out / "dataset.json").read_text())
    sites = {}
    for case, rec in dj["domains"].items():
        sites.setdefault(rec["domain"], []).append(case)
    assert {k: len(v) for k, v in sites.items()} == {"kvasir": 3, "cvc-clinicdb": 3, "etis": 2}
    assert dj["numTraining"] == 8
    verify(out)
    with pytest.raises(DatasetError, match="at least two sources"):
        endoscopy_composite.convert(tmp_path, 808, kvasir=dl / "kvasir-seg")
