"""`nnunet_causal parse-command`: one JSON object per command, errors as one line and exit code 2."""
from __future__ import annotations

import json

from nnunet_causal.cli import main


def test_prints_one_json_object_per_command(capsys, monkeypatch):
    monkeypatch.delenv("NNUNET_CAUSAL_LLM_URL", raising=False)
    assert main(["parse-command", "--vocabulary", "btcv", "shrink the liver a bit and remove the spleen",
                 "is this right?"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert [(a["action"], a["target"], a["strength"]) for a in first["actions"]] == [
        ("shrink", ["liver"], "slight"), ("remove", ["spleen"], "moderate")]
    assert second["actions"] == [] and second["refused"]


def test_model_folder_vocabulary_dictionary_and_style(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NNUNET_CAUSAL_LLM_URL", raising=False)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "polyp": 1},
                                                     "channel_names": {"0": "R", "1": "G", "2": "B"}}))
    assert main(["parse-command", "-m", str(folder), "--style", "white-light frame, many specular highlights",
                 "ignore the artefact", "the polyp is a bit too big"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines())
    assert first["actions"][0]["confounder"] == "a frame with specular reflections and bright white highlights"
    assert second["actions"][0]["target"] == ["polyp"]
    assert main(["parse-command", "-m", str(folder), "remove the liver"]) == 2
    err = capsys.readouterr().err
    assert "not among the structures of this model" in err and "polyp" in err and "Traceback" not in err


def test_bad_input_exits_2(capsys, tmp_path):
    assert main(["parse-command", "shrink the blorbo"]) == 2
    assert "nearest known terms" in capsys.readouterr().err
    assert main(["parse-command", "-m", str(tmp_path / "missing"), "shrink the liver"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["parse-command", "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "m", "--llm-timeout", "2",
                 "shrink the liver"]) == 2
    assert "unreachable" in capsys.readouterr().err
