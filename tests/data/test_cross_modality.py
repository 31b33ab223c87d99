"""The dataset.json declaration for cross-modality training (per-image z-score instead of the CT window)."""
import json

import pytest

from nnunet_causal.data.cross_modality import (CROSS_MODALITY_RECIPE, check_cross_modality_plans,
                                               cross_modality_declared, declare_cross_modality)
from nnunet_causal.errors import DatasetError


def test_ct_channel_becomes_zscore_and_keeps_its_family():
    from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme

    original = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}}
    dj = declare_cross_modality(original)
    assert dj["channel_names"] == {"0": "zscore"}
    assert get_normalization_scheme(dj["channel_names"]["0"]).__name__ == "ZScoreNormalization"
    assert dj["imaging_family"] == "ct" and dj["cross_modality"] == {"input_normalization": "rank", "source_channel_names": {"0": "CT"}}
    assert original["channel_names"] == {"0": "CT"} and not cross_modality_declared(original)
    assert dj["counterfactual_recipe"] == CROSS_MODALITY_RECIPE
    assert declare_cross_modality(dj) == dj                       # declaring twice changes nothing
    own = declare_cross_modality({**original, "counterfactual_recipe": {"probability": 0.9}})
    assert own["counterfactual_recipe"] == {**CROSS_MODALITY_RECIPE, "probability": 0.9}   # the dataset's wins


def test_mr_and_multichannel_names_stay():
    dj = declare_cross_modality({"channel_names": {"0": "T1", "1": "ct"}, "imaging_family": "mri"})
    assert dj["channel_names"] == {"0": "T1", "1": "zscore"} and dj["imaging_family"] == "mri"
    assert cross_modality_declared(dj) and cross_modality_declared({"cross_modality": True})
    assert not cross_modality_declared({"cross_modality": False})
    with pytest.raises(DatasetError, match="no channel_names"):
        declare_cross_modality({"labels": {}})


def test_plans_with_the_ct_window_are_refused_for_a_declared_dataset():
    declared = declare_cross_modality({"channel_names": {"0": "CT"}})
    with pytest.raises(DatasetError, match=r"model/plans.json: .*channel\(s\) \[0\] with CTNormalization.*"
                                           r"nnUNetv2_plan_and_preprocess"):
        check_cross_modality_plans(["CTNormalization"], declared, "model/plans.json")
    check_cross_modality_plans(["ZScoreNormalization"], declared)
    check_cross_modality_plans(["CTNormalization"], {"channel_names": {"0": "CT"}})   # in-modality: stock



def test_a_hand_written_declaration_with_a_ct_channel_gets_it_renamed(tmp_path):
    from nnunet_causal.data.cross_modality_cli import declare_dataset_folder

    hand = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}, "cross_modality": True}
    fixed = declare_cross_modality(hand)
    assert fixed["channel_names"] == {"0": "zscore"} and fixed["imaging_family"] == "ct"
    assert fixed["cross_modality"] == {"input_normalization": "rank", "source_channel_names": {"0": "CT"}}
    assert fixed["counterfactual_recipe"] == CROSS_MODALITY_RECIPE and declare_cross_modality(fixed) == fixed
    kept = {**hand, "cross_modality": {"source_channel_names": {"0": "CT"}, "note": "by hand"}}
    assert declare_cross_modality(kept)["cross_modality"] == {"input_normalization": "rank",
                                                              **kept["cross_modality"]}   # its keys are kept
    own = {**kept, "cross_modality": {"input_normalization": "none"}}
    assert declare_cross_modality(own)["cross_modality"] == {"input_normalization": "none"}
    (tmp_path / "dataset.json").write_text(json.dumps(hand))
    assert declare_dataset_folder(tmp_path) == fixed                                   # the command fixes it
    assert json.loads((tmp_path / "dataset.json").read_text()) == fixed

def test_recipe_is_one_the_dictionary_accepts():
    from nnunet_causal.confounders.dictionary import recipe_for_dataset

    for names in ({"0": "CT"}, {"0": "T1"}):
        recipe = recipe_for_dataset(declare_cross_modality({"channel_names": names}))
        assert {k: getattr(recipe, k) for k in CROSS_MODALITY_RECIPE} == CROSS_MODALITY_RECIPE


def test_cli_declares_a_dataset_folder_in_place(tmp_path, capsys):
    import json

    from nnunet_causal.cli import main

    folder = tmp_path / "Dataset500_CT"
    folder.mkdir()
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0},
                                                     "numTraining": 0, "file_ending": ".nii.gz"}))
    assert main(["cross-modality", str(folder)]) == 0
    dj = json.loads((folder / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "zscore"} and dj["imaging_family"] == "ct" and dj["cross_modality"]
    assert dj["numTraining"] == 0 and dj["file_ending"] == ".nii.gz"
    assert main(["cross-modality", str(folder)]) == 0                      # again: unchanged
    assert json.loads((folder / "dataset.json").read_text()) == dj
    assert main(["cross-modality", str(tmp_path / "missing")]) == 2
    assert "missing/dataset.json does not exist" in capsys.readouterr().err
    (folder / "dataset.json").write_text("{not json")
    assert main(["cross-modality", str(folder)]) == 2
    assert f"cannot read {folder / 'dataset.json'}" in capsys.readouterr().err
