"""dataset.json "partial_labels" -> per-(case, structure) loss mask in the text trainers."""
from types import SimpleNamespace

import pytest
import torch

from nnunet_causal.errors import DatasetError
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText


def fake_trainer(partial):
    dj = {"labels": {"background": 0, "spleen": 1, "liver": 2, "kidney_left": 3}, "partial_labels": partial}
    return SimpleNamespace(dataset_json=dj, label_manager=SimpleNamespace(foreground_labels=[1, 2, 3],
                                                                           has_regions=False),
                           print_to_log_file=lambda *a, **k: None,
                           _partial_label_table=lambda: None)


def mask_for(partial, keys):
    t = fake_trainer(partial)
    t._partial_label_table = lambda: nnUNetTrainerText._partial_label_table(t)
    return nnUNetTrainerText.partial_label_mask(t, keys)


def test_mask_follows_label_order_and_unlisted_cases_are_fully_annotated():
    mask = mask_for({"chaos_ct_01": ["liver"], "btcv_01": ["liver", "spleen"]}, ["chaos_ct_01", "other", "btcv_01"])
    assert mask.tolist() == [[False, True, False], [True, True, True], [True, True, False]]
    assert mask_for({"a": ["liver"]}, ["b", "c"]) is None  # nothing partial in this batch
    assert mask_for({}, ["a"]) is None


def test_unknown_structure_is_a_clear_error():
    with pytest.raises(DatasetError, match="case 'a' names unknown label"):
        mask_for({"a": ["pancreas"]}, ["a"])
