"""Embedding cache: each (encoder id, text) embedded once, documented files on disk, lazy backend loading."""
import json
import logging

import numpy as np
import pytest
import torch

from nnunet_causal.errors import TextEncoderError
from nnunet_causal.text import embedding_cache
from nnunet_causal.text.base import TextEncoder
from nnunet_causal.text.embedding_cache import (CachedTextEncoder, LazyTextEncoder, encoder_cache_folder,
                                                get_text_encoder)


class CountingEncoder(TextEncoder):
    """Deterministic 4-d unit vectors from text length; records every call."""

    def __init__(self, encoder_id="counting-test"):
        self.id, self.dim, self.calls = encoder_id, 4, []

    def encode(self, texts):
        self.calls.append(list(texts))
        rows = torch.tensor([[len(t), 1.0, 2.0, float(sum(map(ord, t)) % 7)] for t in texts])
        return torch.nn.functional.normalize(rows, dim=1)


def test_each_text_embedded_once_in_order(tmp_path):
    base = CountingEncoder()
    enc = CachedTextEncoder(base, cache_dir=tmp_path)
    a = enc.encode(["liver", "spleen", "liver"])
    b = enc.encode(["spleen", "kidney"])
    assert base.calls == [["liver", "spleen"], ["kidney"]]
    torch.testing.assert_close(a, base.encode(["liver", "spleen", "liver"]))
    torch.testing.assert_close(a[1], b[0])
    assert enc.encode([]).shape == (0, 4) and enc.id == "counting-test" and enc.dim == 4


def test_disk_format_and_reuse_across_instances(tmp_path):
    CachedTextEncoder(CountingEncoder(), cache_dir=tmp_path).encode(["liver", "left kidney"])
    folder = encoder_cache_folder("counting-test", tmp_path)
    assert json.loads((folder / "encoder.json").read_text()) == {"id": "counting-test", "dim": 4, "format": 1}
    files = sorted(folder.glob("*.npz"))
    assert len(files) == 2 and not list(folder.glob(".tmp_*"))
    with np.load(files[0]) as data:
        assert str(data["text"]) in ("liver", "left kidney") and data["embedding"].shape == (4,)
    fresh = CountingEncoder()
    again = CachedTextEncoder(fresh, cache_dir=tmp_path).encode(["left kidney", "liver"])
    assert fresh.calls == []
    torch.testing.assert_close(again, CountingEncoder().encode(["left kidney", "liver"]))
    other = CountingEncoder("another-encoder")
    CachedTextEncoder(other, cache_dir=tmp_path).encode(["liver"])
    assert other.calls == [["liver"]]  # the cache is keyed by encoder id


@pytest.mark.parametrize("damage", ["garbage", "other_text", "not_unit"])
def test_corrupt_cache_file_is_reported_and_recomputed(damage, tmp_path, caplog):
    CachedTextEncoder(CountingEncoder(), cache_dir=tmp_path).encode(["liver"])
    (path,) = encoder_cache_folder("counting-test", tmp_path).glob("*.npz")
    if damage == "garbage":
        path.write_bytes(b"garbage")
    else:
        text = "spleen" if damage == "other_text" else "liver"
        vec = np.ones(4, np.float32) * (1.0 if damage == "not_unit" else 0.5)
        with open(path, "wb") as f:
            np.savez(f, text=np.array(text), embedding=vec)
    base = CountingEncoder()
    with caplog.at_level(logging.WARNING, logger="nnunet_causal.text.embedding_cache"):
        out = CachedTextEncoder(base, cache_dir=tmp_path).encode(["liver"])
    assert base.calls == [["liver"]]
    assert "corrupt embedding-cache file" in caplog.text and str(path) in caplog.text
    torch.testing.assert_close(out, CountingEncoder().encode(["liver"]))
    with np.load(path) as data:  # rewritten with the right content
        assert str(data["text"]) == "liver"


def test_lazy_encoder_loads_backend_only_on_a_miss(tmp_path):
    CachedTextEncoder(CountingEncoder(), cache_dir=tmp_path).encode(["liver", "spleen"])
    built = []

    def factory():
        built.append(CountingEncoder())
        return built[-1]

    lazy = LazyTextEncoder(factory, "counting-test", cache_dir=tmp_path)
    assert lazy.dim == 4 and lazy.cached(["liver", "kidney"]) == [True, False]  # dim from encoder.json
    torch.testing.assert_close(lazy.encode(["spleen", "liver"]), CountingEncoder().encode(["spleen", "liver"]))
    assert not built and not lazy.loaded
    lazy.encode(["kidney", "liver"])
    assert len(built) == 1 and built[0].calls == [["kidney"]] and lazy.loaded and lazy.backend is built[0]


def test_lazy_encoder_rejects_a_backend_with_another_id(tmp_path):
    lazy = LazyTextEncoder(lambda: CountingEncoder("surprise"), "counting-test", cache_dir=tmp_path)
    with pytest.raises(TextEncoderError, match="surprise"):
        lazy.encode(["liver"])


def test_minilm_round_trip_through_get_text_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_causal_cache", str(tmp_path / "cache"))
    monkeypatch.delenv("nnUNet_causal_text_encoder", raising=False)
    embedding_cache._shared_encoder.cache_clear()
    enc = get_text_encoder(dataset_json={"text_encoder": "minilm"})
    assert enc is get_text_encoder("minilm") and enc.id == "minilm"
    first = enc.encode(["liver", "hepatic tissue"])
    assert enc.loaded and enc.dim == 384
    assert len(list(encoder_cache_folder("minilm", tmp_path / "cache").glob("*.npz"))) == 2

    embedding_cache._shared_encoder.cache_clear()  # as in a new process (e.g. prediction)
    again = get_text_encoder("minilm")
    torch.testing.assert_close(again.encode(["hepatic tissue", "liver"]), first.flip(0))
    assert again.dim == 384 and not again.loaded  # no weights loaded for cached prompts
    bare = get_text_encoder("minilm", cache=False)
    torch.testing.assert_close(bare.encode(["liver"]), first[:1], atol=1e-6, rtol=1e-5)
    embedding_cache._shared_encoder.cache_clear()


def test_unknown_spec_fails_before_any_loading(tmp_path):
    with pytest.raises(TextEncoderError, match="unknown text encoder 'nope'"):
        get_text_encoder("nope", cache_dir=tmp_path)
