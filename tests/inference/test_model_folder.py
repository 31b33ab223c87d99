"""ModelFolder: one reader of a trained model folder; a broken confounder dictionary is an error naming the file."""
from __future__ import annotations

import json

import pytest

from nnunet_causal.errors import DatasetError, ModelError
from nnunet_causal.inference.model_folder import ModelFolder, parse_fold
from tests.inference.tiny_model import DATASET_JSON, make_model_folder


def _folder(tmp_path, **dataset_changes):
    model = make_model_folder(tmp_path)
    dj = {**DATASET_JSON, **dataset_changes, "domains": {"case": {"style": "dim light"}}}
    (model / "dataset.json").write_text(json.dumps(dj))
    return model


def test_reads_everything_a_prediction_needs_once(tmp_path):
    model = ModelFolder(_folder(tmp_path))
    assert model.structures == ["lesion", "marker"] and model.file_ending == ".png"
    assert model.folds() == ["0"] and model.fold_folder("0") == model.path / "fold_0"
    assert model.case_name("/x/case_0000.png") == "case" and model.style("case") == "dim light"
    assert model.style("other") is None
    assert model.vocabulary().label_for_term("lesion") == "lesion"
    assert model.checkpoint_configuration(0) == "2d"
    assert model.confounders() == ["bright white light", "motion blur"]   # the bottleneck's dictionary
    model.check([0])
    with pytest.raises(ModelError, match="fold 1 was not trained"):
        model.check([1])
    assert parse_fold("3") == 3 and parse_fold("all") == "all"
    with pytest.raises(ModelError, match="fold must be a number or 'all', got 'x'"):
        parse_fold("x")
    with pytest.raises(ModelError, match="does not exist"):
        ModelFolder(tmp_path / "missing")


def test_a_broken_confounder_dictionary_is_an_error_naming_the_file(tmp_path):
    from nnunet_causal.intervention.modulation.intervene_cli import run_intervene

    broken = tmp_path / "my_dictionary.txt"
    broken.write_text(":: motion_blur\n")          # an entry without a description
    model = _folder(tmp_path, confounder_dictionary=str(broken))
    plans = json.loads((model / "plans.json").read_text())
    del plans["nnunet_causal"]["causal"]           # no bottleneck: the dataset's dictionary is the one used
    (model / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(DatasetError, match=r"my_dictionary\.txt"):
        ModelFolder(model).confounders()
    image = tmp_path / "case_0000.png"
    image.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"my_dictionary\.txt"):   # before any prediction, never every family
        run_intervene([str(image)], str(model), ["ignore the motion blur"], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_an_unknown_imaging_family_is_an_error_and_an_untold_one_means_no_dictionary(tmp_path):
    model = _folder(tmp_path, imaging_family="ultrasound")
    plans = json.loads((model / "plans.json").read_text())
    del plans["nnunet_causal"]["causal"]
    (model / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(DatasetError, match="unknown imaging_family 'ultrasound'"):
        ModelFolder(model).confounders()
    dj = json.loads((model / "dataset.json").read_text())
    del dj["imaging_family"]
    dj["channel_names"] = {"0": "weird"}
    (model / "dataset.json").write_text(json.dumps(dj))
    assert ModelFolder(model).confounders() is None
