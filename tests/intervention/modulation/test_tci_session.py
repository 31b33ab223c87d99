"""Learned modulation and cached-feature editing on a tiny 2D text model (random fixed weights) with
nnU-Net-preprocessed training data: train-tci, identity and bit-identity, decoder-only edits, undo, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nnunet_causal.errors import DatasetError, ModelError, PromptError
from tests.intervention.modulation.tci_fixtures import case_files as _case


def test_train_tci_writes_weights_and_settings(trained):
    model, _, _, result = trained
    assert (model / "fold_0" / "tci_weights.pth").is_file()
    settings = json.loads((model / "fold_0" / "tci_settings.json").read_text())
    assert settings["steps"] == 60 and settings["training_cases"] == 6
    assert settings["generator"]["channels"] == [16, 8]  # decoder stages of the tiny PlainConvUNet
    assert result["final_losses"]["loss"] > 0


def test_base_prediction_is_bit_identical_and_untrained_generator_is_identity(trained, env):
    from nnunet_causal.intervention.modulation.film import FiLMGenerator
    from nnunet_causal.intervention.modulation.frozen_model import load_frozen_predictor
    from nnunet_causal.intervention.modulation.session import InterventionSession

    model, _, raw, _ = trained
    s = InterventionSession(model, "0")
    s.load_case(_case(raw))
    s.predict()
    stock = load_frozen_predictor(model, "0").predict_sliding_window_return_logits(s.data).cpu()
    assert torch.equal(s.base_logits, stock)
    g = s.generator
    s.generator = FiLMGenerator(g.condition_dim, g.channels, g.hidden_dim, g.stages)  # identity: gamma 1, beta 0
    s.tail_batch = 1  # single calls: bit-identical to the record pass (a batch rounds ~1 ulp differently)
    edit = s.apply([{"action": "expand", "target": ["lesion"], "strength": "strong"}])
    assert all(v == 0 for v in edit.voxels_changed.values())
    assert torch.equal(s.current_logits(), s.base_logits.float())


def test_edits_rerun_the_decoder_only_and_move_the_mask_the_right_way(trained, env):
    from nnunet_causal.intervention.modulation.session import InterventionSession

    model, _, raw, _ = trained
    s = InterventionSession(model, "0")
    s.load_case(_case(raw))
    base = s.predict()
    assert s.cached.encoder_calls == 4  # one tile, 4 mirrorings
    decoder_before = s.cached.decoder_calls
    n0 = int((base == 1).sum())
    sizes = {}
    for action in ("expand", "shrink", "remove"):
        edit = s.apply([{"action": action, "target": ["lesion"], "strength": "strong"}], command=action)
        assert edit.encoder_calls == 0
        logits = s.current_logits()[1]
        sizes[action] = int((logits > 0).sum())
        s.undo()
    # by default every mirrored pass is replayed (nnU-Net's TTA): 4 decoder-tail calls per edit, no reference
    assert s.cached.encoder_calls == 4 and s.cached.decoder_calls == decoder_before + 3 * 4
    s.edit_mirroring = False  # change estimated on the unmirrored tile: the unmirrored base once, then 1 per edit
    s.apply([{"action": "expand", "target": ["lesion"], "strength": "strong"}])
    assert s.cached.encoder_calls == 4 and s.cached.decoder_calls == decoder_before + 12 + 1 + 1
    base_logit_mask = int((s.base_logits[1] > 0).sum())
    assert sizes["expand"] > base_logit_mask > sizes["shrink"], (sizes, base_logit_mask, n0)
    assert sizes["remove"] < sizes["shrink"]


def test_undo_history_and_log(trained, env):
    from nnunet_causal.intervention.modulation.session import InterventionSession

    model, _, raw, _ = trained
    s = InterventionSession(model, "0")
    s.load_case(_case(raw))
    base = s.predict()
    s.apply([{"action": "expand", "target": ["lesion"], "strength": "moderate"}], command="grow lesion")
    after_first = s.segmentation()
    s.apply([{"action": "shrink", "target": ["marker"], "strength": "strong"}], command="shrink marker")
    assert len(s.history) == 2
    assert s.undo().command == "shrink marker"
    assert np.array_equal(s.segmentation(), after_first)
    s.undo()
    assert np.array_equal(s.segmentation(), base) and torch.equal(s.current_logits(), s.base_logits)
    assert s.undo() is None
    assert [e["undone"] for e in s.log] == [True, True]


def test_location_gates_the_edit(trained, env):
    from nnunet_causal.intervention.modulation.session import InterventionSession

    model, _, raw, _ = trained
    s = InterventionSession(model, "0")
    s.load_case(_case(raw))
    s.predict()
    edit = s.apply([{"action": "expand", "target": ["lesion"], "strength": "strong", "location": "top left"}])
    changed = (s.current_logits()[1] != s.base_logits[1].float())[0]
    assert edit.actions[0]["location_applied"] is True
    assert changed[:16, :16].any() and not changed[16:].any() and not changed[:, 16:].any()
    s.undo()
    edit = s.apply([{"action": "expand", "target": ["lesion"], "location": "near the marker"}])
    assert edit.actions[0]["location_applied"] is False and "applied everywhere" in edit.actions[0]["location_note"]


def test_errors(trained, env, tmp_path):
    from nnunet_causal.intervention.modulation.session import InterventionSession
    from tests.inference.tiny_model import make_model_folder

    model, _, raw, _ = trained
    s = InterventionSession(model, "0")
    s.load_case(_case(raw))
    s.predict()
    with pytest.raises(PromptError, match="'liver' is not a structure this model segments.*lesion, marker"):
        s.apply([{"action": "shrink", "target": ["liver"]}])
    with pytest.raises(PromptError, match="unknown strength 'huge'"):
        s.apply([{"action": "shrink", "target": ["lesion"], "strength": "huge"}])
    with pytest.raises(DatasetError, match="do not exist"):
        s.load_case([str(tmp_path / "nope_0000.png")])
    bare = make_model_folder(tmp_path)
    with pytest.raises(ModelError, match=r"no test-time intervention weights.*run nnunet_causal train-tci -m .* -f 0"):
        InterventionSession(bare, "0")
