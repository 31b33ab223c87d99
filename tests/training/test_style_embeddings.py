"""LAD style embeddings of the causal trainer: a bag of cached parts (domain, known z, measured words)."""
from __future__ import annotations

import types
import zlib

import torch
from torch.nn import functional as F

from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText


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
    for name in ("style_parts", "style_embeddings"):
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
    assert set(enc.seen) == before and len(before) == 5
