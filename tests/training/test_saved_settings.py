"""--c and later folds use the text settings stored in the model folder, not re-derived ones."""
import json

import pytest

from nnunet_causal.errors import DatasetError
from nnunet_causal.training.text.saved_settings import model_folder, saved_text_settings

DATASET = {"labels": {"background": 0, "liver": 1, "spleen": 2}}
PLANS = {"dataset_name": "Dataset001_X", "plans_name": "nnUNetPlans"}
SAVED = {"text_encoder": "st:/models/custom", "text_encoder_id": "custom", "text_dim": 8, "embed_dim": 16,
         "connector": "mlp", "add_background": True, "prompts": {"liver": ["liver", "hepar"], "spleen": ["spleen"]},
         "causal": {"confounders": ["a noisy scan"], "layers": 2, "alpha": 0.5, "width": 32}}


def _folder(tmp_path, settings=SAVED):
    folder = model_folder(str(tmp_path), PLANS, "3d_fullres", "nnUNetTrainerCausalText")
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps({**PLANS, "nnunet_causal": settings}))
    return folder


def test_new_model_has_no_saved_settings(tmp_path):
    folder = model_folder(str(tmp_path), PLANS, "3d_fullres", "nnUNetTrainerText")
    assert folder.name == "nnUNetTrainerText__nnUNetPlans__3d_fullres"
    assert saved_text_settings(folder, DATASET) is None
    assert model_folder(None, PLANS, "2d", "T") is None


def test_saved_settings_are_used_as_trained(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_causal_text_encoder", raising=False)
    got = saved_text_settings(_folder(tmp_path), {**DATASET, "prompts": {"liver": ["a new wording"]},
                                                  "text_encoder": "minilm"})
    assert got == SAVED                         # prompts, encoder and causal settings of the trained model


def test_conflicting_encoder_variable_and_other_structures_are_errors(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    monkeypatch.setenv("nnUNet_causal_text_encoder", "minilm")
    with pytest.raises(DatasetError, match="conflicts with the text encoder this model was trained with"):
        saved_text_settings(folder, DATASET)
    monkeypatch.setenv("nnUNet_causal_text_encoder", "st:/models/custom")
    assert saved_text_settings(folder, DATASET)["text_dim"] == 8
    with pytest.raises(DatasetError, match="differ from those this model was trained on"):
        saved_text_settings(folder, {"labels": {"background": 0, "liver": 1, "kidney": 2}})
    (folder / "plans.json").write_text("{broken")
    with pytest.raises(DatasetError, match="cannot read the model's plans"):
        saved_text_settings(folder, DATASET)
