"""pretrain-text end to end on a fabricated preprocessed 2D dataset: output folder, resume, bad inputs."""
import json

import pytest
import torch

from nnunet_causal.errors import DatasetError, ModelError
from nnunet_causal.mgcl import encoder_folder
from nnunet_causal.mgcl.pretrain import PretrainSettings, pretrain_text
from tests.mgcl.fixtures import TINY_DIM, setup_tiny


def settings(root, model, tiny_st, **kw):
    base = dict(dataset="1", model_folder=str(model), encoder=f"st:{tiny_st}", output=str(root / "enc"), epochs=2,
                reports=str(root / "reports.jsonl"), tune="full", text_lr=1e-3, iterations=1,
                batch_size=4, text_contrast_weight=1.0)  # >= 2 cases per step: the text term has positives
    base.update(kw)
    return PretrainSettings(**base)


def test_writes_a_loadable_encoder_folder_and_resumes_after_an_interruption(tmp_path, monkeypatch, tiny_st):
    model = setup_tiny(tmp_path, monkeypatch)
    real_write = encoder_folder.write_encoder_folder

    def killed(run):
        raise KeyboardInterrupt  # dies after the last epoch's checkpoint, before the folder is written

    monkeypatch.setattr("nnunet_causal.mgcl.pretrain.write_encoder_folder", killed)
    with pytest.raises(KeyboardInterrupt):
        pretrain_text(settings(tmp_path, model, tiny_st, epochs=1))
    assert not (tmp_path / "enc").exists()                                   # nothing half-written
    checkpoint = tmp_path / ".enc.partial" / "checkpoint_latest.pth"
    first = torch.load(checkpoint, weights_only=False)["history"]
    assert [h["epoch"] for h in first] == [0]
    with pytest.raises(DatasetError, match="written with other settings"):
        pretrain_text(settings(tmp_path, model, tiny_st, tune="lora", continue_training=True))
    with pytest.raises(DatasetError, match="text_contrast_weight"):                # the text term is in the key
        pretrain_text(settings(tmp_path, model, tiny_st, text_contrast_weight=0.0, continue_training=True))
    monkeypatch.setattr("nnunet_causal.mgcl.pretrain.write_encoder_folder", real_write)
    out = pretrain_text(settings(tmp_path, model, tiny_st, continue_training=True))
    meta = json.loads((out / "mgcl.json").read_text())
    assert [h["epoch"] for h in meta["history"]] == [0, 1] and meta["history"][0] == first[0]
    assert meta["corpus"]["report_cases"] == 6 and meta["corpus"]["captions"] >= 12
    assert (out / "loss_curve.png").stat().st_size > 0 and not checkpoint.parent.exists()
    assert meta["position_dims"] == 3 and meta["laterality_negatives"] is True and meta["text_contrast_weight"] == 1.0
    assert all(h["text"] > 0 for h in meta["history"])                         # the caption-contrast term ran
    from nnunet_causal.mgcl.encoder_folder import load_image_head
    assert load_image_head(out)[0].position is not None                       # the organ-position term was saved

    from nnunet_causal.text.encoders import create_text_encoder, encoder_id
    enc = create_text_encoder(f"mgcl:{out}")
    assert enc.dim == TINY_DIM and enc.id == encoder_id(f"mgcl:{out}") == f"mgcl:{out}@{meta['fingerprint']}"
    base = create_text_encoder(f"st:{tiny_st}")
    assert not torch.allclose(enc.encode(["the lesion"]), base.encode(["the lesion"]))   # it was trained
    with pytest.raises(DatasetError, match="already exists"):
        pretrain_text(settings(tmp_path, model, tiny_st))


def test_without_reports_captions_come_from_the_labels_and_lora_merges_into_a_plain_folder(tmp_path, monkeypatch,
                                                                                           tiny_st):
    model = setup_tiny(tmp_path, monkeypatch)
    import argparse
    from nnunet_causal.mgcl.pretrain_cli import add_parser
    sub = argparse.ArgumentParser().add_subparsers()
    add_parser(sub)
    parse = sub.choices["pretrain-text"].parse_args
    flags = parse(["-d", "1", "-m", "M", "--no-position", "--no-laterality-negatives", "--no-text-contrast"])
    assert flags.no_position and flags.no_laterality_negatives and flags.no_text_contrast
    assert parse(["-d", "1", "-m", "M", "--text-contrast-weight", "0.5"]).text_contrast_weight == 0.5
    assert parse(["-d", "1", "-m", "M"]).text_contrast_weight == 1.0                   # on by default
    seen = {}
    monkeypatch.setattr("nnunet_causal.mgcl.pretrain_cli.pretrain_text", lambda s: seen.setdefault("s", s) and "X")
    flags.func(flags)
    assert seen["s"].text_contrast_weight == 0.0 and "text_contrast_weight" in seen["s"].resume_key()
    out = pretrain_text(settings(tmp_path, model, tiny_st, epochs=1, tune="lora", reports=None, position=False,
                                 laterality_negatives=False, text_contrast_weight=0.0))
    meta = json.loads((out / "mgcl.json").read_text())
    assert meta["position_dims"] == 0 and meta["laterality_negatives"] is False
    assert meta["text_contrast_weight"] == 0.0 and "text" not in meta["history"][0]
    from nnunet_causal.mgcl.encoder_folder import load_image_head
    assert load_image_head(out)[0].position is None
    assert meta["corpus"]["label_cases"] == 6 and meta["corpus"]["report_cases"] == 0 and meta["reports"] is None
    cache = next((tmp_path / "preprocessed" / "Dataset001_Tiny2D" / "mgcl_captions").iterdir())
    texts = [c["text"] for c in json.loads((cache / "tiny_000.json").read_text())["captions"]]
    assert "The lesion is present." in texts and any(t.startswith("The marker lies in the") for t in texts)
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    assert not any("lora" in k for k in st.state_dict())


def test_bad_inputs_are_one_clear_error_and_write_nothing(tmp_path, monkeypatch, tiny_st):
    model = setup_tiny(tmp_path, monkeypatch)
    reports = tmp_path / "reports.jsonl"
    lines = reports.read_text().splitlines()
    reports.write_text("\n".join(lines + [json.dumps({"image": "tiny_999", "report": "A lesion."})]) + "\n")
    # tiny_999 is a raw training image but was not preprocessed (no label): a case without a mask
    raw = tmp_path / "raw" / "Dataset001_Tiny2D" / "imagesTr"
    raw.mkdir(parents=True)
    (raw / "tiny_999_0000.png").write_bytes(b"")
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    with pytest.raises(DatasetError, match="case tiny_999 has a report but no mask"):
        pretrain_text(settings(tmp_path, model, tiny_st))
    # a checkpoint of another architecture than its plans say
    ckpt = model / "fold_0" / "checkpoint_final.pth"
    state = torch.load(ckpt, weights_only=False)
    key = next(k for k in state["network_weights"] if k.startswith("backbone.encoder.") and k.endswith("weight"))
    state["network_weights"][key] = torch.zeros(3, 3)
    torch.save(state, ckpt)
    with pytest.raises(ModelError, match="holds another architecture"):
        pretrain_text(settings(tmp_path, model, tiny_st))
    assert not (tmp_path / "enc").exists() and not (tmp_path / ".enc.partial").exists()
    from nnunet_causal.errors import TextEncoderError
    from nnunet_causal.text.encoders import create_text_encoder
    with pytest.raises(TextEncoderError, match="not a text encoder written by nnunet_causal pretrain-text"):
        create_text_encoder(f"mgcl:{tiny_st}")     # a plain sentence-transformers folder: use st: for it
