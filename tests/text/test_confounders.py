"""Confounder dictionaries: shipped files, family detection, errors."""
import pytest

from nnunet_causal.errors import DatasetError
from nnunet_causal.text.confounders import (confounder_family_for_dataset, confounders_for_dataset,
                                            load_confounder_dictionary)


@pytest.mark.parametrize("family", ["endoscopy", "ct", "mri"])
def test_shipped_dictionaries(family):
    lines = load_confounder_dictionary(family)
    assert len(lines) >= 12 and len(set(lines)) == len(lines)


def test_family_detection():
    assert confounder_family_for_dataset({"channel_names": {"0": "CT"}}) == "ct"
    assert confounder_family_for_dataset({"channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}}) == "mri"
    assert confounder_family_for_dataset({"channel_names": {"0": "R", "1": "G", "2": "B"}}) == "endoscopy"
    assert confounder_family_for_dataset({"channel_names": {"0": "CT"}, "imaging_family": "mri"}) == "mri"
    with pytest.raises(DatasetError, match="imaging_family"):
        confounder_family_for_dataset({"channel_names": {"0": "foo"}})


def test_user_file_and_errors(tmp_path):
    own = tmp_path / "mine.txt"
    own.write_text("# mine\na blurry image\na noisy image\n")
    assert confounders_for_dataset({"confounder_dictionary": str(own)}) == ["a blurry image", "a noisy image"]
    dup = tmp_path / "dup.txt"
    dup.write_text("a blurry image\n\nA blurry  image\n")
    with pytest.raises(DatasetError, match="line 3 repeats line 1"):
        load_confounder_dictionary(str(dup))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(DatasetError, match="no confounder descriptions"):
        load_confounder_dictionary(str(empty))
    with pytest.raises(DatasetError, match="does not exist"):
        load_confounder_dictionary(str(tmp_path / "missing.txt"))
