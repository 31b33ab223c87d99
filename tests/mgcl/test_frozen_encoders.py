"""The written MGCL encoder in use: the third-stage trainer (both encoders frozen) and nnUNetv2_predict_text."""
import json
import shutil

import numpy as np
import pytest
import torch

from nnunet_causal.errors import TextEncoderError
from nnunet_causal.mgcl.frozen_encoders_trainer import nnUNetTrainerText_FrozenEncoders as Trainer
from nnunet_causal.mgcl.pretrain import PretrainSettings, pretrain_text
from nnunet_causal.training.text.plan_settings import add_text_settings
from tests.inference.tiny_model import DATASET_JSON, PLANS
from tests.mgcl.fixtures import TINY_DIM, setup_tiny


@pytest.fixture(scope="module")
def mgcl_folder(tmp_path_factory, tiny_st):
    root = tmp_path_factory.mktemp("mgcl")
    with pytest.MonkeyPatch.context() as mp:
        model = setup_tiny(root, mp)
        return pretrain_text(PretrainSettings(dataset="1", model_folder=str(model), encoder=f"st:{tiny_st}",
                                              output=str(root / "enc"), epochs=1, iterations=1,
                                              reports=str(root / "reports.jsonl")))


class _Trainer(Trainer):
    """The trainer's own hooks without nnU-Net's __init__ (no dataset on disk, no device)."""

    def __init__(self, plans):  # noqa: D107 - test double
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
        self.plans_manager = PlansManager(plans)
        self.configuration_name = "2d"
        with torch.device("cpu"):
            self.network = Trainer.build_network_architecture(self.plans_manager,
                                                              self.plans_manager.get_configuration("2d"), 3, 3, True)
        self.initial_lr, self.weight_decay, self.num_epochs = 1e-2, 3e-5, 2
        self.log = []

    def print_to_log_file(self, *args, **kwargs):
        self.log.append(" ".join(str(a) for a in args))


def test_trainer_freezes_the_aligned_image_encoder_and_embeds_with_the_mgcl_encoder(mgcl_folder, monkeypatch, tiny_st,
                                                                                     tmp_path):
    monkeypatch.setenv("nnUNet_causal_cache", str(tmp_path / "cache"))
    monkeypatch.setenv("nnUNet_causal_text_encoder", f"mgcl:{mgcl_folder}")
    plans = Trainer._plans_with_text_settings(Trainer.__new__(Trainer), PLANS, DATASET_JSON)
    settings = plans["nnunet_causal"]
    meta = json.loads((mgcl_folder / "mgcl.json").read_text())
    assert settings["text_dim"] == TINY_DIM and settings["mgcl"]["fingerprint"] == meta["fingerprint"]
    assert settings["text_encoder_id"] == f"mgcl:{mgcl_folder}@{meta['fingerprint']}"
    trainer = _Trainer(plans)
    trainer.configure_optimizers()
    encoder = trainer.network.backbone.encoder
    saved = torch.load(mgcl_folder / "image_encoder.pth", weights_only=False)["encoder_weights"]
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in saved.items())
    assert not any(p.requires_grad for p in encoder.parameters())
    frozen = {id(p) for p in encoder.parameters()}    # DNA's decoder keeps a reference to the encoder
    assert all(p.requires_grad for p in trainer.network.decoder.parameters() if id(p) not in frozen)
    assert all(p.requires_grad for p in trainer.network.connector.parameters())
    trained = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not trained & {id(p) for p in encoder.parameters()}
    trainer._embed_prompts()
    from nnunet_causal.text.encoders import create_text_encoder
    expected = create_text_encoder(f"mgcl:{mgcl_folder}").encode(["lesion", "marker"])
    assert torch.allclose(trainer.network.prompt_embeddings, expected, atol=1e-5)

    monkeypatch.setenv("nnUNet_causal_text_encoder", f"st:{tiny_st}")
    with pytest.raises(TextEncoderError, match="needs an MGCL text encoder"):
        Trainer._plans_with_text_settings(Trainer.__new__(Trainer), PLANS, DATASET_JSON)


def test_predict_text_embeds_open_vocabulary_prompts_with_the_mgcl_encoder(mgcl_folder, tmp_path, monkeypatch):
    from PIL import Image

    from nnunet_causal.inference.predict_text_entry import main
    from nnunet_causal.inference.stock_prompts import caller_sets_prompts
    from nnunet_causal.text.embedding_cache import encoder_cache_folder
    from nnunet_causal.text.encoders import encoder_id
    from tests.inference.tiny_model import find_our_trainers

    find_our_trainers(monkeypatch)
    monkeypatch.setenv("nnUNet_causal_cache", str(tmp_path / "cache"))
    monkeypatch.setenv("nnUNet_causal_text_encoder", f"mgcl:{mgcl_folder}")
    plans = add_text_settings(PLANS, DATASET_JSON, embed_dim=8)
    monkeypatch.delenv("nnUNet_causal_text_encoder")
    model = tmp_path / "model_mgcl"
    (model / "fold_0").mkdir(parents=True)
    (model / "plans.json").write_text(json.dumps(plans))
    (model / "dataset.json").write_text(json.dumps(DATASET_JSON))
    trainer = _Trainer(plans)
    with caller_sets_prompts():
        net = Trainer.build_network_architecture(trainer.plans_manager, trainer.plans_manager.get_configuration("2d"),
                                                 3, 3, enable_deep_supervision=False)
    torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainerText_FrozenEncoders",
                "init_args": {"configuration": "2d", "fold": 0}, "inference_allowed_mirroring_axes": (0, 1)},
               model / "fold_0" / "checkpoint_final.pth")
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(inp / "c_0000.png")
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    rc = main(["-i", str(inp), "-o", str(tmp_path / "out"), "-m", str(model), "-device", "cpu", "-f", "0",
               "-prompts", "lesion", "liver", "--open_vocabulary", "-npp", "1", "-nps", "1"])
    assert rc in (0, None)
    side = json.loads((tmp_path / "out" / "c.prompts.json").read_text())
    assert [p["source"] for p in side["prompts"]] == ["trained", "open_vocabulary"]
    cached = list(encoder_cache_folder(encoder_id(f"mgcl:{mgcl_folder}"), tmp_path / "cache").glob("*.npz"))
    assert cached  # "liver" was embedded by the MGCL encoder recorded in the plans
