"""The fast edit path: the decoder resumed at its first modulated stage (decode_tail), nnU-Net's aggregation
over all tiles and mirrors in batches (TailWindow), stage-restricted generators; each against the slow path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nnunet_causal.errors import ModelError
from tests.intervention.modulation.tci_fixtures import case_files as _case


def _wide_case(raw, tmp_path):
    """A 48 x 48 frame (2 x 2 tiles of the 32 x 32 patch) cut from the two test frames tiled 2 x 2."""
    from PIL import Image
    a = np.array(Image.open(_case(raw, 6)[0]))
    b = np.array(Image.open(_case(raw, 7)[0]))
    wide = np.concatenate((np.concatenate((a, b), 1), np.concatenate((b, a), 1)), 0)[:48, :48]
    path = tmp_path / "wide_000_0000.png"
    Image.fromarray(wide).save(path)
    return [str(path)]


def test_decode_tail_equals_the_full_decoder_under_film_hooks(trained, env):
    from nnunet_causal.intervention.modulation.cached_network import apply_bottleneck, decode, encode
    from nnunet_causal.intervention.modulation.decoder_tail import decode_tail
    from nnunet_causal.intervention.modulation.film import decoder_stages, film_hooks
    from nnunet_causal.intervention.modulation.frozen_model import load_frozen_predictor

    net = load_frozen_predictor(trained[0], "0").network
    torch.manual_seed(0)
    skips = apply_bottleneck(net, encode(net, torch.randn(2, 3, 32, 32)))
    n = len(decoder_stages(net))
    for start in range(n):
        kept = []
        h = decoder_stages(net)[start].register_forward_hook(lambda m, i, o: kept.append(o))
        with torch.no_grad():
            plain = decode(net, skips)
        h.remove()
        stages = list(range(start, n))
        # per-stage channel counts from a hooked pass (backbone independent)
        widths = []
        hs = [st.register_forward_hook(lambda m, i, o: widths.append(o.shape[1])) for st in decoder_stages(net)]
        with torch.no_grad():
            decode(net, skips)
        for x in hs:
            x.remove()
        params = [(1 + 0.3 * torch.randn(1, widths[s]), 0.2 * torch.randn(1, widths[s])) for s in stages]
        with torch.no_grad():
            assert torch.allclose(decode_tail(net, start, kept[0], skips), plain, atol=1e-5)
            with film_hooks(net, params, stages):
                slow = decode(net, skips)
            fast = decode_tail(net, start, kept[0], skips, params, stages)
        assert not torch.allclose(slow, plain, atol=1e-3)  # the modulation does something
        assert torch.allclose(fast, slow, atol=1e-5), (start, (fast - slow).abs().max())
    with pytest.raises(ValueError, match="starts before the resumed stage"):
        decode_tail(net, 1, kept[0], skips, params[:1], [0])


@pytest.mark.parametrize("mirrored", [True, False])
def test_tail_window_equals_nnunets_loop_on_a_multi_tile_case(trained, env, tmp_path, mirrored):
    from nnunet_causal.intervention.modulation.session import InterventionSession
    from nnunet_causal.intervention.modulation.tail_window import TailWindow

    model, _, raw, _ = trained
    s = InterventionSession(model, "0", edit_mirroring=mirrored)
    s.load_case(_wide_case(raw, tmp_path))
    s.predict()
    window = TailWindow(s.predictor, s.data, s.cached, s.cached.record_stage, batch=1)
    assert tuple(s.data.shape[-2:]) == (48, 48), s.data.shape
    assert len(window.slicers) == 4 and len(window.flips) == 4  # 2 x 2 tiles, 4 mirrorings
    everything = list(range(s.base_logits.shape[0]))
    if mirrored:  # identity, single calls: nnU-Net's own logits bit for bit
        assert torch.equal(window.logits(s.network, everything), s.base_logits)
    results = {}
    for replay, batch in (("nnunet", 16), ("tail", 1), ("tail", 16), ("tail", 3)):
        s.replay, s.tail_batch, s._window, s._tail_base = replay, batch, None, None
        s.apply([{"action": "expand", "target": ["marker"], "strength": "strong"}])
        results[(replay, batch)] = s.current_logits().clone()
        s.undo()
    slow = results[("nnunet", 16)]
    assert not torch.equal(slow[2], s.base_logits[2].float())  # the edit changes the marker
    assert torch.equal(slow[:2], s.base_logits[:2].float())    # and nothing else (keep_others exact)
    for key, fast in results.items():
        assert torch.allclose(fast, slow, atol=0.07, rtol=2e-3), (key, (fast - slow).abs().max())
        assert torch.equal(fast[:2], slow[:2])
        assert ((fast[2] > 0) != (slow[2] > 0)).float().mean() < 0.002


def test_stage_restricted_generator_trains_and_edits_from_the_cached_stage(trained, env, tmp_path):
    from nnunet_causal.intervention.modulation.film import FiLMGenerator, film_hooks, last_stages
    from nnunet_causal.intervention.modulation.session import InterventionSession
    from nnunet_causal.intervention.modulation.train_tci import run_train_tci
    from tests.inference.tiny_model import make_model_folder

    assert last_stages(4, 2) == [2, 3] and last_stages(4, None) == [0, 1, 2, 3] and last_stages(2, 5) == [0, 1]
    gen = FiLMGenerator(5, [4, 3], stages=[1])
    assert gen.config()["stages"] == [1] and [g.shape[1] for g, _ in gen(torch.zeros(2, 5))] == [3]
    stage_modules = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Identity()])
    net = torch.nn.Module()
    net.decoder = torch.nn.Module()
    net.decoder.stages = stage_modules
    with film_hooks(net, [(torch.full((1, 3), 2.0), torch.zeros(1, 3))], [1]):
        assert torch.equal(stage_modules[0](torch.ones(1, 3, 2)), torch.ones(1, 3, 2))
        assert torch.equal(stage_modules[1](torch.ones(1, 3, 2)), torch.full((1, 3, 2), 2.0))

    model, data, raw, _ = trained
    folder = make_model_folder(tmp_path)
    result = run_train_tci(folder, "0", steps=8, preprocessed=str(data), progress=False, lr=3e-3, film_stages=1)
    settings = json.loads((folder / "fold_0" / "tci_settings.json").read_text())
    assert settings["film_stages"] == 1 and settings["generator"]["stages"] == [1] and result["steps"] == 8
    s = InterventionSession(folder, "0")
    assert s.generator.stages == [1] and s.cached.record_stage == 1
    s.load_case(_case(raw))
    s.predict()
    slow = {}
    for replay in ("nnunet", "tail"):
        s.replay = replay
        s.apply([{"action": "shrink", "target": ["lesion"], "strength": "strong"}])
        slow[replay] = s.current_logits().clone()
        s.undo()
    assert torch.allclose(slow["tail"], slow["nnunet"], atol=0.07, rtol=2e-3)
    s.generator = FiLMGenerator(**{**s.generator.config(), "stages": [0, 1]})  # now starts before the cache
    with pytest.raises(ModelError, match="call predict\\(\\) again"):
        s.apply([{"action": "shrink", "target": ["lesion"]}])
