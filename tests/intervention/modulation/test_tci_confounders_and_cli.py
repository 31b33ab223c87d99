"""ignore_confounder (bottleneck do-operation, image inverse, clear errors) and the intervene / train-tci
command lines, with the real command parser (nnunet_causal.intervention.commands)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nnunet_causal.errors import ModelError
from tests.intervention.modulation.tci_fixtures import case_files


def test_ignore_confounder_is_a_bottleneck_do_operation_on_causal_models(trained, env, tmp_path):
    from nnunet_causal.intervention.modulation.cached_network import apply_bottleneck, encode
    from nnunet_causal.intervention.modulation.session import InterventionSession
    from tests.inference.tiny_model import make_model_folder

    _, _, raw, _ = trained
    model = make_model_folder(tmp_path, "nnUNetTrainerCausalText")
    ckpt_path = model / "fold_0" / "checkpoint_final.pth"
    ckpt = torch.load(ckpt_path, weights_only=False)
    g = torch.Generator().manual_seed(1)
    # W_out starts at zero and the tiny folder's dictionary embeddings are zeros: make both matter
    for key in ("bottleneck.out.weight", "bottleneck.out.bias", "bottleneck.confounder_embeddings"):
        ckpt["network_weights"][key] = torch.randn(ckpt["network_weights"][key].shape, generator=g)
    torch.save(ckpt, ckpt_path)
    s = InterventionSession(model, "0", require_tci=False, use_mirroring=False)
    s.load_case(case_files(raw))
    s.predict()
    edit = s.apply([{"action": "ignore_confounder", "target": [], "confounder": "motion blur"}])
    record = edit.actions[0]
    assert record["confounder_entry"] == "motion blur" and record["method"].startswith("bottleneck do()")
    assert edit.encoder_calls == 0
    changed = s.current_logits() - s.base_logits.float()
    assert changed.abs().max() > 0
    # the same as the bottleneck with the entry's row taken out of its keys and values
    net = s.network
    with torch.no_grad():
        skips = encode(net, s.data[:, 0][None])  # 2D: (C, 1, H, W) -> one slice
        bn = net.bottleneck
        full = bn.confounder_embeddings.clone()
        bn.confounder_embeddings = full[:1]
        expected = apply_bottleneck(net, skips)[-1]
        bn.confounder_embeddings = full
    assert torch.allclose(s.cached.cache[0][0][-1], apply_bottleneck(net, skips)[-1], atol=1e-5)
    from nnunet_causal.intervention.modulation.confounder_do import bottleneck_without
    assert torch.allclose(bottleneck_without(net, [1])(skips[-1]), expected, atol=1e-6)


def test_ignore_confounder_without_bottleneck_uses_simulator_inverses_or_says_why_not(trained, env):
    from nnunet_causal.intervention.modulation.session import InterventionSession

    model, _, raw, _ = trained
    s = InterventionSession(model, "0", use_mirroring=False)
    s.load_case(case_files(raw))
    s.predict()
    edit = s.apply([{"action": "ignore_confounder", "target": ["lesion"], "confounder": "motion blur"}])
    assert "image inverse of motion_blur then defocus_blur" in edit.actions[0]["method"]
    assert edit.encoder_calls == 1  # the image changed: one new full pass
    assert torch.equal(s.current_logits()[2], s.base_logits[2].float())  # only the named target's channel moved
    assert not torch.equal(s.current_logits()[1], s.base_logits[1].float())
    with pytest.raises(ModelError, match="cannot ignore 'a frame with specular reflections.*highlight_removal"):
        s.apply([{"action": "ignore_confounder", "confounder": "specular reflections and bright white highlights"}])
    with pytest.raises(ModelError, match="'zebra stripes' is not in the model's dictionary"):
        s.apply([{"action": "ignore_confounder", "confounder": "zebra stripes"}])


def test_intervene_command_line_writes_mask_sidecar_and_log(trained, env, monkeypatch, tmp_path):
    from nnunet_causal.cli import main
    from nnunet_causal.intervention.modulation.session import InterventionSession
    from PIL import Image

    model, _, raw, _ = trained
    out = tmp_path / "out"
    rc = main(["intervene", "-i", *case_files(raw), "-m", str(model), "-c", "expand the lesion a lot",
               "-c", "is this fine?", "-c", "shrink the marker", "--undo", "-o", str(out)])
    assert rc == 0
    mask = np.array(Image.open(out / "tiny_006.png"))
    log = json.loads((out / "tiny_006.edits.json").read_text())
    assert [e["command"] for e in log["edits"]] == ["expand the lesion a lot", "is this fine?", "shrink the marker"]
    assert [e["undone"] for e in log["edits"]] == [False, False, True] and log["applied"] == 1
    assert log["edits"][1]["actions"] == [] and log["edits"][1]["refused"]     # a question: nothing to do
    assert log["edits"][0]["actions"][0]["structures"] == ["lesion"]
    s = InterventionSession(model, "0")
    s.load_case(case_files(raw))
    s.predict()
    s.apply([{"action": "expand", "target": ["lesion"], "strength": "strong"}])
    assert np.array_equal(mask, s.segmentation()[0])
    sidecar = json.loads((out / "tiny_006.prompts.json").read_text())
    assert [r["prompt"] for r in sidecar["prompts"]] == ["lesion", "marker"]
    assert sidecar["prompts"][0]["voxel_count"] == int((mask == 1).sum())
    assert log["voxels_changed_total"]["lesion"] == sidecar["prompts"][0]["voxels_changed_by_edits"]


def test_command_line_errors_are_clear(trained, env, monkeypatch, tmp_path, capsys):
    from nnunet_causal.cli import main
    from tests.inference.tiny_model import make_model_folder

    _, _, raw, _ = trained
    bare = make_model_folder(tmp_path)
    assert main(["intervene", "-i", *case_files(raw), "-m", str(bare), "-c", "expand the lesion",
                 "-o", str(tmp_path / "o")]) == 2
    assert f"run nnunet_causal train-tci -m {bare} -f 0" in capsys.readouterr().err
    assert main(["intervene", "-i", *case_files(raw), "-m", str(bare), "-c", "  ", "-o", str(tmp_path / "o")]) == 2
    assert "empty command" in capsys.readouterr().err
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "nowhere"))
    assert main(["train-tci", "-m", str(bare), "--steps", "1"]) == 2
    assert "run nnUNetv2_plan_and_preprocess" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
