"""LAD style embeddings of the causal trainer: a bag of cached parts (domain, known z, measured words)."""
from __future__ import annotations

import math
import types
import zlib

import pytest
import torch
from torch.nn import functional as F

from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
from nnunet_causal.training.causal.style_words import (BLURRED_BELOW, CONTRAST_HIGH, CONTRAST_LOW, MEASURED_WORDS,
                                                       NOISE_HIGH, NOISE_LOW, measured_word_index, patch_statistics,
                                                       patch_style_words, word_index_from_statistics, words_for)


class CountingEncoder:
    """Deterministic pseudo-embeddings; counts the texts it had to embed (no cache of its own)."""

    def __init__(self):
        self.seen = []

    def encode(self, texts):
        self.seen += list(texts)
        rows = [torch.randn(8, generator=torch.Generator().manual_seed(zlib.crc32(t.encode()))) for t in texts]
        return F.normalize(torch.stack(rows), dim=1)


def _trainer(encoder):
    t = types.SimpleNamespace(_encoder=encoder, style_captioner=None, _warned_missing_domain=False,
                              _domains={"c1": {"domain": "siteA", "style": "white light"}}, log=[])
    t.print_to_log_file = lambda *a: t.log.append(" ".join(map(str, a)))
    for name in ("_described_parts", "style_parts", "_measured_word_table", "style_embeddings"):
        setattr(t, name, types.MethodType(getattr(nnUNetTrainerCausalText, name), t))
    return t


def test_style_embedding_is_the_normalised_mean_of_its_parts():
    enc = CountingEncoder()
    t = _trainer(enc)
    data = torch.randn(2, 3, 16, 16)
    known = [["a frame with blood"], []]
    emb = t.style_embeddings(["c1", "c9"], data, known)
    parts = t.style_parts(["c1", "c9"], data, known)
    assert parts[0][0] == "image from siteA, white light" and parts[0][1] == "a frame with blood"
    assert parts[1][0] == "an image" and len(parts[1]) == 2 and "no domain record" in t.log[0]
    want = F.normalize(enc.encode(parts[0]).mean(0), dim=0)
    assert torch.allclose(emb[0], want, atol=1e-6) and emb.shape == (2, 8)
    # the known z changes the description; without it the sample's embedding is different
    assert not torch.allclose(t.style_embeddings(["c1"], data[:1], [[]])[0], emb[0])


def test_parts_come_from_a_small_set_so_new_combinations_need_no_new_texts():
    enc = CountingEncoder()
    t = _trainer(enc)
    data = torch.zeros(3, 3, 16, 16)
    t.style_embeddings(["c1"] * 3, data, [["z1"], ["z2"], ["z3"]])
    before = set(enc.seen)
    t.style_embeddings(["c1"] * 3, data, [["z1", "z2"], ["z3", "z1"], ["z2", "z3", "z1"]])
    # every text the combinations need was already embedded for the single confounders
    assert set(enc.seen) == before and len(before) == 4 + len(MEASURED_WORDS)
    # the 18 measured descriptions are embedded once, not per step
    assert sum(t.startswith("an image with ") for t in enc.seen) == len(MEASURED_WORDS)


def _patches():
    """2D and 3D patches spanning the noise / contrast / sharpness words."""
    g = torch.Generator().manual_seed(0)
    out = []
    for shape in ((3, 24, 24), (1, 10, 12, 12)):
        smooth = torch.linspace(-3, 3, shape[-1]).expand(*shape).clone()
        for noise in (0.0, 0.05, 0.3, 1.0):
            for scale in (0.3, 1.0, 2.5):
                out.append((smooth * scale + noise * torch.randn(shape, generator=g))[None])
        blurred = F.avg_pool2d(torch.randn(1, 3, 24, 24, generator=g), 5, 1, 2) * 4
        out.append(blurred)
    return out


def test_device_buckets_agree_with_the_readable_words():
    patches = _patches()
    seen = set()
    for x in patches:
        words = patch_style_words(x)
        index = measured_word_index(x)
        assert index.dtype == torch.int64 and index.device == x.device
        assert [MEASURED_WORDS[i] for i in index.tolist()] == words
        seen.update(words)
    assert len(seen) >= 6  # the patches really span several buckets, not one word for all
    # at and around each threshold, and for NaN statistics (both rules say "moderate" / "sharp")
    values = {"noise": [0.0, NOISE_LOW, NOISE_LOW + 1e-6, NOISE_HIGH, NOISE_HIGH + 1e-6, math.nan],
              "contrast": [0.0, CONTRAST_LOW, CONTRAST_HIGH, CONTRAST_HIGH + 1e-5, 9.0, math.nan],
              "sharp": [0.0, BLURRED_BELOW - 1e-6, BLURRED_BELOW, math.nan]}
    grid = [(n, c, s) for n in values["noise"] for c in values["contrast"] for s in values["sharp"]]
    stats = [torch.tensor(v, dtype=torch.float32) for v in zip(*grid)]
    index = word_index_from_statistics(*stats)
    assert [MEASURED_WORDS[i] for i in index.tolist()] == [words_for(*(float(t[j]) for t in stats))
                                                           for j in range(len(grid))]
    assert set(MEASURED_WORDS) == {words_for(n, c, s) for n in (0, 0.2, 1) for c in (0, 3, 9) for s in (0, 9)}


class SyncSpy(torch.Tensor):
    """A tensor that records every read of its values by the host (what forces a CUDA sync)."""
    reads = []
    HOST_READS = {"tolist", "item", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__len__",
                  "__iter__", "__array__", "__format__"}

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in cls.HOST_READS or (name == "to" and any(str(a) == "cpu" for a in args[1:])):
            cls.reads.append(name)
        return super().__torch_function__(func, types, args, kwargs or {})


def test_style_embeddings_read_nothing_of_the_batch_on_the_host():
    t = _trainer(CountingEncoder())
    data = torch.randn(2, 3, 16, 16).as_subclass(SyncSpy)
    SyncSpy.reads = []
    patch_statistics(data)
    assert SyncSpy.reads == []  # the statistics themselves stay on the device
    patch_style_words(data)
    assert "tolist" in SyncSpy.reads  # the spy sees host reads (the readable form makes them)
    SyncSpy.reads = []
    emb = t.style_embeddings(["c1", "c9"], data, [["a frame with blood"], None])
    assert SyncSpy.reads == [], f"host reads of the batch in style_embeddings: {SyncSpy.reads}"
    plain = data.as_subclass(torch.Tensor)
    want = F.normalize(torch.stack([t._encoder.encode(ps).mean(0)
                                    for ps in t.style_parts(["c1", "c9"], plain, [["a frame with blood"], None])]), dim=1)
    torch.testing.assert_close(emb.as_subclass(torch.Tensor), want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_style_embeddings_do_not_synchronise_cuda():
    t = _trainer(CountingEncoder())
    data = torch.randn(2, 3, 32, 32, device="cuda")
    t.style_embeddings(["c1", "c9"], data, [["z"], []])  # first call embeds and uploads the tables
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        emb = t.style_embeddings(["c1", "c9"], data, [["z"], []])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert emb.device.type == "cuda"
