import json

import numpy as np
import pytest

from fabricate import assert_nothing_written, label_volume, verify, write_volume
from dataset_conversion import amos
from nnunet_causal.errors import DatasetError

SHAPE = (5, 8, 7)


def make_amos(root, with_meta=True):
    rng = np.random.default_rng(1)
    for sub, numbers in (("Tr", (1, 508)), ("Va", (10,))):
        for n in numbers:
            write_volume(root / f"images{sub}" / f"amos_{n:04d}.nii.gz", rng.normal(size=SHAPE).astype(np.float32))
            write_volume(root / f"labels{sub}" / f"amos_{n:04d}.nii.gz", label_volume(SHAPE, range(1, 16), n))
    write_volume(root / "imagesTs" / "amos_0002.nii.gz", rng.normal(size=SHAPE).astype(np.float32))
    labels = {str(i): n for i, n in enumerate(["background", "spleen", "right kidney", "left kidney", "gall bladder",
                                               "esophagus", "liver", "stomach", "arota", "postcava", "pancreas",
                                               "right adrenal gland", "left adrenal gland", "duodenum", "bladder",
                                               "prostate/uterus"])}
    (root / "dataset.json").write_text(json.dumps({"name": "AMOS", "labels": labels}))
    if with_meta:
        (root / "labeled_data_meta_0000_0599.csv").write_text(
            "amos_id,Patient's Sex,Manufacturer's Model Name,Manufacturer,Site\n"
            "1,M,Optima CT660,GE,Longgang\n508,F,Ingenia,Philips,Longgang\n")
    return root


def test_amos_both_modalities(tmp_path, raw_root):
    out = amos.convert(make_amos(tmp_path / "amos22"), 801)
    dj = json.loads((out / "dataset.json").read_text())
    assert out.name == "Dataset801_AMOS" and dj["numTraining"] == 3
    assert dj["channel_names"] == {"0": "CT_or_MRI"}
    assert dj["labels"]["inferior_vena_cava"] == 9 and dj["labels"]["prostate_or_uterus"] == 15
    d = dj["domains"]
    assert d["amos_0001"]["modality"] == "CT" and d["amos_0508"]["modality"] == "MRI"
    assert d["amos_0001"]["domain"] == "amos_ct" and d["amos_0508"]["domain"] == "amos_mri"
    assert d["amos_0001"]["scanner"] == "GE Optima CT660" and "scanner" not in d["amos_0010"]
    assert (out / "labelsTr/amos_0010.nii.gz").is_file() and (out / "imagesTs/amos_0002_0000.nii.gz").is_file()
    verify(out)


def test_amos_single_modality(tmp_path, raw_root):
    src = make_amos(tmp_path / "amos22", with_meta=False)
    ct = amos.convert(src, 811, modality="ct")
    mri = amos.convert(src, 812, modality="mri")
    assert sorted(p.name for p in (ct / "labelsTr").iterdir()) == ["amos_0001.nii.gz", "amos_0010.nii.gz"]
    assert sorted(p.name for p in (mri / "labelsTr").iterdir()) == ["amos_0508.nii.gz"]
    assert json.loads((mri / "dataset.json").read_text())["channel_names"] == {"0": "MRI"}
    assert json.loads((ct / "dataset.json").read_text())["channel_names"] == {"0": "CT"}


def test_amos_errors(tmp_path, raw_root):
    src = make_amos(tmp_path / "a")
    (src / "labelsVa/amos_0010.nii.gz").unlink()
    with pytest.raises(DatasetError, match="amos_0010.nii.gz: no label file"):
        amos.convert(src, 801)
    src = make_amos(tmp_path / "b")
    (src / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "liver"}}))
    with pytest.raises(DatasetError, match="is this the AMOS22 release"):
        amos.convert(src, 801)
    src = make_amos(tmp_path / "c")
    write_volume(src / "labelsTr/amos_0508.nii.gz", label_volume(SHAPE, [3, 16]))
    with pytest.raises(DatasetError, match=r"amos_0508.nii.gz: unexpected label value\(s\) \[16\]"):
        amos.convert(src, 801)
    with pytest.raises(DatasetError, match="AMOS22's imagesTr"):
        amos.convert(tmp_path, 801)
    assert_nothing_written(raw_root)
