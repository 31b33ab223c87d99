"""Text encoders: the offline default, tiny random open_clip / BERT models built from configs, errors."""
import json
import time

import pytest
import torch

from nnunet_causal.errors import TextEncoderError
from nnunet_causal.text.embedding_cache import CachedTextEncoder, LazyTextEncoder
from nnunet_causal.text.base import TextEncoder
from nnunet_causal.text.encoders import create_text_encoder, parse_spec, resolve_text_encoder_spec


def test_minilm_offline_unit_vectors_and_semantics(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = create_text_encoder("minilm")
    e = enc.encode(["liver", "hepatic tissue", "femur"])
    assert e.shape == (3, 384) and enc.dim == 384 and enc.id == "minilm"
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))
    assert e[0] @ e[1] > e[0] @ e[2]


def test_tiny_open_clip_from_config_and_checkpoint(tmp_path):
    import open_clip
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "patch_size": 8, "head_width": 8},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    cfg_file = tmp_path / "TinyTestCLIP.json"
    cfg_file.write_text(json.dumps(cfg))
    open_clip.add_model_config(cfg_file)  # a vision head_width is required even though only text is used
    model = open_clip.create_model("TinyTestCLIP")
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    enc = create_text_encoder(f"open_clip:TinyTestCLIP@{ckpt}")
    e = enc.encode(["liver", "spleen"])
    assert e.shape == (2, 16) and enc.id.endswith(str(ckpt.resolve()))
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))
    with pytest.raises(TextEncoderError, match="does not exist"):
        create_text_encoder(f"open_clip:TinyTestCLIP@{tmp_path / 'missing.pt'}")


def test_tiny_bert_folder_with_hf_spec(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizerFast
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "liver", "spleen", "left", "kidney"]))
    tok = BertTokenizerFast(vocab_file=str(vocab))
    folder = tmp_path / "tiny_bert"
    BertModel(BertConfig(vocab_size=9, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(folder)
    tok.save_pretrained(folder)
    for spec, dim in ((f"hf:{folder}", 8), (f"hf:{folder}#cls", 8)):
        enc = create_text_encoder(spec)
        e = enc.encode(["liver", "left kidney", "spleen"])
        assert e.shape == (3, dim)
        torch.testing.assert_close(e.norm(dim=1), torch.ones(3))


def test_unknown_spec_lists_known_ones():
    with pytest.raises(TextEncoderError, match="minilm"):
        create_text_encoder("word2vec")
    assert parse_spec("biolord") == ("st", "FremyCompany/BioLORD-2023")


def test_hub_model_offline_fails_fast_naming_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    t = time.time()
    with pytest.raises(TextEncoderError, match="FremyCompany/BioLORD-2023"):
        create_text_encoder("biolord")
    assert time.time() - t < 10


def test_spec_priority(monkeypatch):
    monkeypatch.delenv("nnUNet_causal_text_encoder", raising=False)
    assert resolve_text_encoder_spec(None) == "minilm"
    assert resolve_text_encoder_spec({"text_encoder": "biolord"}) == "biolord"
    monkeypatch.setenv("nnUNet_causal_text_encoder", "medcpt")
    assert resolve_text_encoder_spec({"text_encoder": "biolord"}) == "medcpt"


class CountingEncoder(TextEncoder):
    id, dim = "counting-test", 4

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return torch.nn.functional.normalize(torch.tensor([[len(t), 1.0, 2.0, 3.0] for t in texts]), dim=1)


def test_cache_embeds_each_text_once_and_persists(tmp_path):
    base = CountingEncoder()
    enc = CachedTextEncoder(base, cache_dir=tmp_path)
    a = enc.encode(["liver", "spleen", "liver"])
    b = enc.encode(["spleen"])
    assert base.calls == [["liver", "spleen"]]
    torch.testing.assert_close(a[1], b[0])
    # a new process: disk hit, no backend call
    lazy_calls = []
    lazy = LazyTextEncoder(lambda: lazy_calls.append(1) or CountingEncoder(), "counting-test", 4, cache_dir=tmp_path)
    torch.testing.assert_close(lazy.encode(["liver"]), a[:1])
    assert not lazy_calls
    lazy.encode(["kidney"])
    assert lazy_calls == [1]


def test_corrupt_cache_file_is_recomputed(tmp_path, caplog):
    base = CountingEncoder()
    CachedTextEncoder(base, cache_dir=tmp_path).encode(["liver"])
    (f,) = [p for p in (tmp_path).rglob("*.npy")]
    f.write_bytes(b"garbage")
    base2 = CountingEncoder()
    CachedTextEncoder(base2, cache_dir=tmp_path).encode(["liver"])
    assert base2.calls == [["liver"]]
    assert "corrupt" in caplog.text
