"""Label-names files in the layouts labs and atlases ship, and one-line errors naming the file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnunet_causal.errors import DatasetError
from nnunet_causal.formats.label_names import read_label_names
from nnunet_causal.formats.segments import prompt_masks

AAL = Path("/usr/share/mricron/templates/aal.nii.txt")


@pytest.mark.parametrize("name,text", [
    ("names.json", json.dumps({"background": 0, "liver": 1, "spleen": 2})),
    ("names.json", json.dumps({"1": "liver", "2": "spleen"})),
    ("names.json", json.dumps([{"value": 1, "name": "liver"}, {"index": 2, "name": "spleen"}])),
    ("names.json", json.dumps({"labels": {"background": 0, "liver": 1, "spleen": 2}})),
    ("names.csv", "value,name\n0,Clear\n1,liver\n2,spleen\n"),
    ("names.tsv", "1\tliver\t255\n2\tspleen\t128\n"),
    ("names.txt", "# atlas\n1 liver 2001\r\n2 spleen 2002\r\n\r\n"),
    ("names.txt", '0 0 0 0 0 0 0 "Clear Label"\n1 255 0 0 1 1 1 "liver"\n2 0 255 0 1 1 1 "spleen"\n'),
])
def test_layouts(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    assert read_label_names(tmp_path / name) == {0: "background", 1: "liver", 2: "spleen"}


@pytest.mark.parametrize("text,match", [
    ("1 liver\n1 spleen\n", "label value 1 is given twice"),
    ("1 liver\n2 liver\n", "name 'liver' is given twice"),
    ("1.5 liver\n", "not a whole number"),
    ("liver\n", "expected 'value name"),
    ("\n# nothing\n", "no label names found"),
])
def test_bad_files_name_the_file_and_line(tmp_path, text, match):
    (tmp_path / "names.txt").write_text(text)
    with pytest.raises(DatasetError, match=match) as e:
        read_label_names(tmp_path / "names.txt")
    assert str(tmp_path / "names.txt") in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(not AAL.is_file(), reason="mricron-data not installed (Debian: apt-get install mricron-data)")
def test_aal_as_shipped_has_116_regions():
    names = read_label_names(AAL)
    assert len(names) == 117 and names[1] == "Precentral_L" and names[116] == "Vermis_10"


def test_prompt_masks_follow_the_voxels_label_value_and_suppression():
    label = np.array([[0, 1, 1], [2, 0, 1]])
    recs = [{"prompt": "liver", "label_value": 1, "trained_structures": ["liver"]},
            {"prompt": "hepar", "label_value": 2, "voxels_label_value": 1, "terms": ["liver"]},
            {"prompt": "spleen", "label_value": 3, "voxels_label_value": 2, "mask_suppressed": True}]
    m = prompt_masks(label, recs)
    assert [x.name for x in m] == ["liver", "liver", "spleen"]
    assert np.array_equal(m[1].mask, label == 1) and m[1].label_value == 2 and not m[2].mask.any()
