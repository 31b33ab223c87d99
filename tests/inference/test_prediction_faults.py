"""nnUNetv2_predict_text: --continue_prediction with --save_binary, unique binary-mask names, and the
stock-prediction prompt file acting in prediction only."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nnunet_causal.inference import case_outputs
from nnunet_causal.inference.predict_text_entry import main
from nnunet_causal.inference.prompt_assignment import PromptAssignment
from nnunet_causal.inference.text_predictor import nnUNetTextPredictor
from tests.inference.tiny_model import find_our_trainers, make_model_folder, managers, use_fake_encoder


def test_continue_prediction_skips_cases_finished_with_save_binary(tmp_path, monkeypatch):
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    model = make_model_folder(tmp_path)
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    for case in ("a", "b", "c"):
        (inp / f"{case}_0000.png").write_bytes(b"")
    # a: finished by an earlier run with the same prompts (probabilities removed, as without --save_probabilities)
    # c: finished with other prompts -> predicted again
    for case, prompts in (("a", ["lesion", "marker"]), ("c", ["lesion"])):
        for name in (f"{case}.png", f"{case}__lesion.png", f"{case}__marker.png"):
            (out / name).write_bytes(b"x")
        rows = [PromptAssignment(p, i + 1, [p], 1.0, "exact", "trained", [p]) for i, p in enumerate(prompts)]
        records = case_outputs.prompt_records(rows, np.zeros((2, 2), np.uint8), [0.5] * len(rows))
        case_outputs.write_case(out, case, ".png", records=records)
    predicted = []

    def fake_iterator(self, inputs, prev, outputs, num_processes):
        predicted.extend(outputs)
        return iter(())
    monkeypatch.setattr(nnUNetTextPredictor, "iter_preprocessed", fake_iterator)
    argv = ["-i", str(inp), "-o", str(out), "-m", str(model), "-f", "0", "-device", "cpu", "-prompts", "lesion",
            "marker", "--save_binary", "--continue_prediction", "--disable_progress_bar"]
    assert main(argv) == 0
    assert sorted(predicted) == [str(out / "b"), str(out / "c")]
    (out / "a__marker.png").unlink()  # an interrupted case: one binary mask missing
    predicted.clear()
    assert main(argv) == 0
    assert sorted(predicted) == [str(out / "a"), str(out / "b"), str(out / "c")]


def test_binary_masks_of_prompts_that_slug_alike_do_not_overwrite_each_other(tmp_path, monkeypatch):
    from PIL import Image

    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    model = make_model_folder(tmp_path)
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "in" / "case_0000.png")
    assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(model), "-f", "0", "-device",
                 "cpu", "-prompts", "left kidney", "Left-Kidney", "left kidney 2", "--open_vocabulary",
                 "--save_binary", "--disable_progress_bar", "-npp", "1"]) == 0
    side = case_outputs.read_sidecar(tmp_path / "out" / "case.prompts.json")
    names = [p["binary_mask"] for p in side["prompts"]]
    assert names == ["case__left_kidney__1.png", "case__left_kidney__2.png", "case__left_kidney_2.png"]
    assert all((tmp_path / "out" / n).is_file() for n in names)
    assert case_outputs.binary_mask_parts(side["prompts"]) == {1: "left_kidney__1", 2: "left_kidney__2",
                                                                3: "left_kidney_2"}


# ------------------------------------------------------------------ nnUNet_causal_prompt_file
def trainers():
    from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText
    return [nnUNetTrainerText, nnUNetTrainerCausalText]


@pytest.fixture
def prompt_file(tmp_path, monkeypatch):
    f = tmp_path / "reword.txt"
    f.write_text("red lesion\nblue marker\n")
    monkeypatch.setenv("nnUNet_causal_prompt_file", str(f))
    return f


@pytest.mark.parametrize("index", [0, 1], ids=["Text", "CausalText"])
def test_prompt_file_does_not_reword_a_training_without_deep_supervision(index, prompt_file, monkeypatch):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    encoder = use_fake_encoder(monkeypatch)
    base = trainers()[index]
    no_ds = type(f"{base.__name__}_NoDS", (base,), {})
    trainer = object.__new__(no_ds)
    trainer.plans_manager, trainer.configuration_manager = managers()
    trainer.enable_deep_supervision = False
    # what nnUNetTrainer.__init__ sets and the training-start plans check reads
    trainer.dataset_json, trainer.configuration_name, trainer.preprocessed_dataset_folder_base = {}, "2d", None

    def stock_initialize(self):  # what nnUNetTrainer.initialize does with the network
        self.network = self.build_network_architecture(self.plans_manager, self.configuration_manager, 3, 3,
                                                       self.enable_deep_supervision)
    monkeypatch.setattr(nnUNetTrainer, "initialize", stock_initialize)
    monkeypatch.setattr(base, "_embed_prompts", lambda self: None)
    trainer.initialize()
    assert trainer.network.inference_embeddings is None and not encoder.calls


@pytest.mark.parametrize("index", [0, 1], ids=["Text", "CausalText"])
def test_prompt_file_rewords_stock_prediction_only(index, prompt_file, monkeypatch):
    from nnunet_causal.networks.builder import build_text_network

    encoder = use_fake_encoder(monkeypatch)
    pm, cm = managers()
    trainer = trainers()[index]
    net = trainer.build_network_architecture(pm, cm, 3, 3, enable_deep_supervision=False)  # as nnU-Net's predictor
    assert net.inference_embeddings is not None and encoder.calls == [["red lesion"], ["blue marker"]]
    encoder.calls.clear()
    assert trainer.build_network_architecture(pm, cm, 3, 3, True).inference_embeddings is None
    assert build_text_network(pm, cm, 3, 3, False).inference_embeddings is None  # the builder is pure
    assert not encoder.calls
