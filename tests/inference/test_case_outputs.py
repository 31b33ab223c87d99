"""The case contract: one writer, one reader, one definition of ``present`` for every prompt and output."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nnunet_causal.errors import DatasetError
from nnunet_causal.inference import case_outputs
from nnunet_causal.inference.predict_text_entry import main
from nnunet_causal.inference.prompt_assignment import PromptAssignment
from tests.inference.tiny_model import find_our_trainers, make_model_folder, use_fake_encoder


def _assignment(prompt, value, structures, source="trained"):
    return PromptAssignment(prompt, value, list(structures), 1.0, "exact", source, list(structures))


def test_prompts_of_one_structure_share_presence_voxels_and_label_value():
    seg = np.zeros((4, 4), np.uint8)
    seg[:2] = 1     # "polyp" holds the structure's voxels; "the adenoma" (same structure) holds none
    seg[3, 3] = 3
    rows = [_assignment("polyp", 1, ["polyp"]), _assignment("the adenoma", 2, ["polyp"]),
            _assignment("liver", 3, [], "open_vocabulary")]
    presence = [{"present": True, "presence_score": 0.9, "presence_threshold": 0.5, "presence_calibration": "x"},
                {"present": False, "presence_score": 0.1, "presence_threshold": 0.5, "presence_calibration": "x"},
                {"present": False, "presence_score": 0.2, "presence_threshold": 0.5, "presence_calibration": "x"}]
    recs = case_outputs.prompt_records(rows, seg, [0.99, 0.5, 0.7], presence)
    assert [r["structure"] for r in recs] == ["trained: polyp", "trained: polyp", "open: liver"]
    assert [r["present"] for r in recs] == [True, True, False]
    assert [r["voxels_label_value"] for r in recs] == [1, 1, 3] and [r["voxel_count"] for r in recs] == [8, 8, 1]
    assert recs[1]["max_probability"] == recs[0]["max_probability"] == 0.99
    assert [r["mask_suppressed"] for r in recs] == [False, False, True]
    no_head = case_outputs.prompt_records(rows, seg, [0.99, 0.5, 0.7], None)
    assert {r["present"] for r in no_head} == {None} and "no presence head" in no_head[0]["presence_calibration"]


def test_reader_rejects_unknown_versions_and_missing_fields_naming_the_file(tmp_path):
    recs = case_outputs.prompt_records([_assignment("lesion", 1, ["lesion"])], np.ones((2, 2), np.uint8), [0.8])
    paths = case_outputs.write_case(tmp_path, "c", ".png", records=recs, edits={
        "model": "m", "fold": 0, "tci_weights": None, "edits": [], "applied": 0})
    assert case_outputs.read_case(tmp_path, "c")["prompts"]["prompts"] == json.loads(json.dumps(recs))
    side = json.loads(open(paths["prompts"]).read())
    (tmp_path / "v2.prompts.json").write_text(json.dumps({**side, "schema_version": 2}))
    with pytest.raises(DatasetError, match=r"v2\.prompts\.json: schema_version 2 is not supported"):
        case_outputs.read_sidecar(tmp_path / "v2.prompts.json")
    del side["prompts"][0]["present"]
    (tmp_path / "old.prompts.json").write_text(json.dumps(side))
    with pytest.raises(DatasetError, match=r"old\.prompts\.json: prompt 1 is missing present"):
        case_outputs.read_sidecar(tmp_path / "old.prompts.json")
    (tmp_path / "e.edits.json").write_text(json.dumps({"schema_version": 1, "case": "e"}))
    with pytest.raises(DatasetError, match=r"e\.edits\.json: missing model, fold"):
        case_outputs.read_edits(tmp_path / "e.edits.json")
    with pytest.raises(DatasetError, match="nothing.prompts.json does not exist"):
        case_outputs.read_sidecar(tmp_path / "nothing.prompts.json")


def _image(folder, name="c0_0000.png", shape=(32, 32)):
    from PIL import Image

    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(folder / name)
    return folder / name


@pytest.mark.parametrize("presence", [False, True], ids=["no_head", "presence_head"])
def test_cli_and_viewer_agree_on_present_for_synonyms_of_one_structure(tmp_path, monkeypatch, presence):
    from PIL import Image

    from nnunet_causal.viewer.case_state import CaseState
    from nnunet_causal.viewer.cases import list_cases
    from nnunet_causal.viewer.model_context import ModelContext

    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    model = make_model_folder(tmp_path, presence=presence)
    _image(tmp_path / "in")
    prompts = ["lesion", "red spot", "marker"]   # "red spot" is a synonym of lesion in the model's prompts
    assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(model), "-f", "0", "-device",
                 "cpu", "-prompts", *prompts, "--save_binary", "--disable_progress_bar", "-npp", "1"]) == 0
    cli = case_outputs.read_case(tmp_path / "out", "c0")["prompts"]["prompts"]
    assert cli[0]["structure"] == cli[1]["structure"] == "trained: lesion"
    assert cli[0]["present"] == cli[1]["present"] and cli[0]["voxels_label_value"] == cli[1]["voxels_label_value"] == 1
    assert cli[1]["voxel_count"] == cli[0]["voxel_count"] > 0
    seg = np.asarray(Image.open(tmp_path / "out" / "c0.png"))
    assert not (seg == 2).any() and cli[0]["voxel_count"] == int((seg == 1).sum())
    first, second = (np.asarray(Image.open(tmp_path / "out" / r["binary_mask"])) for r in cli[:2])
    assert np.array_equal(first, second) and first.any()    # each binary mask is the structure's mask

    state = CaseState(ModelContext(model, "0"), list_cases(tmp_path / "in", ".png")[0])
    layers = state.predict_prompts(prompts, False, lambda f, m: None)["layers"]
    for mine, theirs in zip(layers, cli):
        assert mine["present"] == theirs["present"] and mine["structure"] == theirs["structure"]
        assert mine["voxels_label_value"] == theirs["voxels_label_value"]
        assert mine["voxel_count"] == pytest.approx(theirs["voxel_count"], rel=0.02)  # logit vs feature window
    saved = state.save(tmp_path / "saved")
    viewer = case_outputs.read_case(tmp_path / "saved", "c0")
    assert [r["present"] for r in viewer["prompts"]["prompts"]] == [r["present"] for r in layers]
    assert viewer["edits"]["applied"] == 0 and saved["mask"].endswith("c0.png")


def test_intervention_outputs_read_back_through_the_contract(tmp_path, monkeypatch):
    from PIL import Image

    from nnunet_causal.intervention.modulation.intervene_cli import run_intervene

    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    model = make_model_folder(tmp_path)
    image = _image(tmp_path / "in", "case_0000.png")
    paths = run_intervene([str(image)], str(model), ["ignore the motion blur"], str(tmp_path / "out"),
                          use_mirroring=False)
    case = case_outputs.read_case(tmp_path / "out", "case")
    seg = np.asarray(Image.open(paths["mask"]))
    assert [r["prompt"] for r in case["prompts"]["prompts"]] == ["lesion", "marker"]
    assert case["prompts"]["prompts"][0]["voxel_count"] == int((seg == 1).sum())
    assert case["edits"]["edits"][0]["command"] == "ignore the motion blur"
    assert case["edits"]["voxels_changed_total"]["lesion"] == case["prompts"]["prompts"][0]["voxels_changed_by_edits"]
