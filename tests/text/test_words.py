"""The side a label name is on, however a dataset spells it; a vertebra's level letter is not a side."""
import pytest

from nnunet_causal.text.words import side_of_label


@pytest.mark.parametrize("name, side", [
    ("kidney_left", "left"), ("Right-Kidney", "right"), ("Lt_Kidney", "left"), ("Parotid_L", "left"),
    ("Glnd_Submand_R", "right"), ("OpticNrv_L", "left"), ("Left-Cerebral-White-Matter", "left"),
    ("adrenal gland RIGHT", "right"), ("rib_left_3", "left"),
    ("liver", None), ("vertebrae_L5", None), ("L1", None), ("leftover", None), ("brightness", None),
    ("both kidneys", None), ("background", None),
])
def test_side_of_label(name, side):
    assert side_of_label(name) == side
