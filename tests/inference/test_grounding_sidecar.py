"""The per-case sidecar says, for each prompt, which words were used and which were ignored ."""
from __future__ import annotations

import numpy as np
import pytest

from nnunet_causal.errors import ResolutionError
from nnunet_causal.inference.case_outputs import read_sidecar
from nnunet_causal.inference.predict_text_entry import write_case_outputs
from nnunet_causal.inference.text_predictor import CasePrediction, nnUNetTextPredictor
from tests.inference.tiny_model import find_our_trainers, make_model_folder, use_fake_encoder


def _predictor(tmp_path, monkeypatch):
    import torch
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    predictor = nnUNetTextPredictor(device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(make_model_folder(tmp_path)), (0,))
    return predictor


def test_sidecar_lists_used_ignored_and_corrected_words(tmp_path, monkeypatch):
    from PIL import Image

    predictor = _predictor(tmp_path, monkeypatch)
    a = predictor.set_prompts(["the red spot and the marker", "lesoin", "Lesion"], use_embedding_resolution=False)
    assert [x.trained_structures for x in a] == [["lesion", "marker"], ["lesion"], ["lesion"]]
    truncated = str(tmp_path / "case")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(truncated + ".png")
    rw = predictor.plans_manager.image_reader_writer_class()
    _, props = rw.read_seg(truncated + ".png")
    result = CasePrediction(np.zeros((1, 4, 4), np.uint8), [0.9, 0.8, 0.7], None)
    write_case_outputs(str(tmp_path), truncated, result, a, ".png", rw, props)
    rows = read_sidecar(tmp_path / "case.prompts.json")["prompts"]
    assert rows[0]["used_words"] == ["red", "spot", "marker"] and rows[0]["ignored_words"] == ["the", "and", "the"]
    assert (rows[1]["resolution"], rows[1]["corrected"]) == ("corrected", "lesion")
    assert rows[1]["used_words"] == ["lesoin"] and "spelling corrected" in rows[1]["resolution_message"]
    assert rows[2]["resolution"] == "exact" and rows[2]["corrected"] is None and rows[2]["ignored_words"] == []


def test_a_prompt_that_names_nothing_says_why(tmp_path, monkeypatch):
    predictor = _predictor(tmp_path, monkeypatch)
    with pytest.raises(ResolutionError, match="1 of 2 parts name no structure"):
        predictor.set_prompts(["lesion and purple dragon"], use_embedding_resolution=False)
