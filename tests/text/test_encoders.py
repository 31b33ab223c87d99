"""Text encoders: the offline default, tiny random open_clip / BERT models built from configs, errors."""
import json
import os
import shutil
import socket
import time

import pytest
import torch

from nnunet_causal.errors import TextEncoderError
from nnunet_causal.text.encoders import (BATCH_SIZE, create_text_encoder, encoder_id, list_text_encoders,
                                         parse_spec, resolve_text_encoder_spec)

TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "patch_size": 8, "head_width": 8},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


def _tiny_bert(folder):
    """A random 1-layer BERT with a 12-word vocabulary, saved like a hub model folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast
    folder.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "liver", "spleen", "left", "kidney", "right", "lung", "x"]
    (folder / "vocab.txt").write_text("\n".join(words))
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=32)).save_pretrained(folder)
    return folder


def _fake_hub_cache(hf_home, repo_id, source_folder):
    """Lay ``source_folder`` out as a cached snapshot of ``repo_id`` in ``$HF_HOME/hub``."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copytree(source_folder, repo / "snapshots" / ("0" * 40))


def _register_tiny_clip(tmp_path, name):
    import open_clip
    (tmp_path / f"{name}.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(tmp_path / f"{name}.json")  # a vision head_width is required by open_clip
    torch.manual_seed(0)
    return open_clip.create_model(name)


def test_minilm_offline_unit_vectors_semantics_and_env_restored(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    enc = create_text_encoder("minilm")
    assert "HF_HUB_OFFLINE" not in os.environ  # set only while loading
    e = enc.encode(["liver", "hepatic tissue", "femur"])
    assert e.shape == (3, 384) and e.dtype == torch.float32 and enc.dim == 384 and enc.id == "minilm"
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))
    assert e[0] @ e[1] > e[0] @ e[2] + 0.05
    assert enc.encode([]).shape == (0, 384)


def test_tiny_open_clip_checkpoint_and_local_dir_agree(tmp_path):
    model = _register_tiny_clip(tmp_path, "NnucTinyTextCLIP")
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    enc = create_text_encoder(f"open_clip:NnucTinyTextCLIP@{ckpt}")
    texts = ["liver", "left kidney", "spleen"]
    e = enc.encode(texts)
    assert enc.id == f"open_clip:NnucTinyTextCLIP@{ckpt.resolve()}" and enc.dim == 16
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.encode_text(__import__("open_clip").tokenize(texts, 16)))
    torch.testing.assert_close(e, expected)

    folder = tmp_path / "clip_dir"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    local = create_text_encoder(f"open_clip:local-dir:{folder}")
    assert local.id == f"open_clip:local-dir:{folder.resolve()}"
    torch.testing.assert_close(local.encode(texts), e)


def test_missing_open_clip_checkpoint_names_the_file(tmp_path):
    _register_tiny_clip(tmp_path, "NnucTinyTextCLIP2")
    missing = tmp_path / "nowhere" / "missing.pt"
    with pytest.raises(TextEncoderError, match=str(missing)):
        create_text_encoder(f"open_clip:NnucTinyTextCLIP2@{missing}")
    with pytest.raises(TextEncoderError, match="unknown open_clip architecture 'NoSuchArch'"):
        create_text_encoder(f"open_clip:NoSuchArch@{missing}")


def test_tiny_bert_folder_mean_and_cls_pooling_batched(tmp_path):
    folder = _tiny_bert(tmp_path / "tiny_bert")
    mean = create_text_encoder(f"hf:{folder}")
    cls = create_text_encoder(f"hf:{folder}#cls")
    assert mean.id == f"hf:{folder.resolve()}" and cls.id == f"hf:{folder.resolve()}#cls" and mean.dim == 8
    texts = ["liver", "left kidney", "right lung x x x", "spleen"] * 20  # 80 texts: two batches, padding
    assert len(texts) > BATCH_SIZE
    e = mean.encode(texts)
    assert e.shape == (80, 8)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(80))
    one_by_one = torch.cat([mean.encode([t]) for t in texts[:4]])
    torch.testing.assert_close(e[:4], one_by_one, atol=1e-5, rtol=1e-5)  # padding is masked out
    assert not torch.allclose(cls.encode(texts[:4]), e[:4])
    with pytest.raises(TextEncoderError, match="does not exist"):
        create_text_encoder(f"hf:{tmp_path / 'no_such_folder'}")


def test_hub_id_found_in_local_cache_while_offline(tmp_path, monkeypatch):
    bert = _tiny_bert(tmp_path / "tiny_bert")
    _fake_hub_cache(tmp_path / "hf", "tiny-org/tiny-bert", bert)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    enc = create_text_encoder("hf:tiny-org/tiny-bert")
    assert enc.id == "hf:tiny-org/tiny-bert"
    torch.testing.assert_close(enc.encode(["liver"]), create_text_encoder(f"hf:{bert}").encode(["liver"]))


def test_open_clip_with_hf_text_tower_resolves_hub_names_locally(tmp_path, monkeypatch):
    """BiomedCLIP-style folder whose text tower names a hub BERT (config + tokenizer) found in the cache."""
    import open_clip
    bert = _tiny_bert(tmp_path / "tiny_bert")
    cfg = {"embed_dim": 16, "vision_cfg": TINY_CLIP["vision_cfg"],
           "text_cfg": {"hf_model_name": str(bert), "hf_tokenizer_name": str(bert), "hf_proj_type": "linear",
                        "hf_pooler_type": "cls_pooler", "context_length": 16}}
    folder = tmp_path / "biomedclip_like"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False, pretrained_text=False)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    cfg["text_cfg"]["hf_model_name"] = cfg["text_cfg"]["hf_tokenizer_name"] = "tiny-org/tiny-bert"
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    _fake_hub_cache(tmp_path / "hf", "tiny-org/tiny-bert", bert)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    enc = create_text_encoder(f"open_clip:local-dir:{folder}")
    e = enc.encode(["liver", "spleen"])
    assert e.shape == (2, 16)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))
    shutil.rmtree(tmp_path / "hf")
    with pytest.raises(TextEncoderError, match="tiny-org/tiny-bert"):
        create_text_encoder(f"open_clip:local-dir:{folder}")


def test_unknown_spec_lists_known_ones():
    with pytest.raises(TextEncoderError, match="minilm.*biolord.*medcpt.*biomedclip.*clip"):
        create_text_encoder("word2vec")
    with pytest.raises(TextEncoderError, match="pooling"):
        create_text_encoder("hf:some/model#max")
    assert {"minilm", "biolord", "medcpt", "biomedclip", "clip"} <= set(list_text_encoders())


def test_spec_parsing_and_ids_without_loading(tmp_path, monkeypatch):
    assert parse_spec("biolord").id == "st:FremyCompany/BioLORD-2023"
    assert encoder_id("medcpt") == "hf:ncbi/MedCPT-Query-Encoder#cls"
    assert encoder_id("clip") == "open_clip:ViT-B-32@openai"
    assert encoder_id("biomedclip") == "open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    monkeypatch.chdir(tmp_path)
    assert encoder_id("open_clip:ViT-B-32@./w.pt") == f"open_clip:ViT-B-32@{tmp_path.resolve() / 'w.pt'}"
    assert encoder_id("hf:./bert") == f"hf:{tmp_path.resolve() / 'bert'}"
    assert encoder_id(None) == "minilm"


@pytest.mark.parametrize("spec,model", [("biolord", "FremyCompany/BioLORD-2023"),
                                        ("medcpt", "ncbi/MedCPT-Query-Encoder"),
                                        ("biomedclip", "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"),
                                        ("clip", "timm/vit_base_patch32_clip_224.openai")])
def test_hub_model_offline_fails_fast_naming_the_model(spec, model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    start = time.time()
    with pytest.raises(TextEncoderError, match=f"'{model}'.*huggingface-cli download {model}"):
        create_text_encoder(spec)
    assert time.time() - start < 60  # no network retries (minutes); generous for a busy CPU's imports


def test_unreachable_hub_fails_fast_without_offline_flag(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HTTPS_PROXY", "https_proxy",
                "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(socket, "create_connection", no_network)
    start = time.time()
    with pytest.raises(TextEncoderError, match="FremyCompany/BioLORD-2023.*cannot be reached"):
        create_text_encoder("biolord")
    assert time.time() - start < 60  # no network retries (minutes); generous for a busy CPU's imports


def test_spec_priority(monkeypatch):
    monkeypatch.delenv("nnUNet_causal_text_encoder", raising=False)
    assert resolve_text_encoder_spec(None) == "minilm"
    assert resolve_text_encoder_spec({"text_encoder": " "}) == "minilm"
    assert resolve_text_encoder_spec({"text_encoder": "biolord"}) == "biolord"
    monkeypatch.setenv("nnUNet_causal_text_encoder", "medcpt")
    assert resolve_text_encoder_spec({"text_encoder": "biolord"}) == "medcpt"
