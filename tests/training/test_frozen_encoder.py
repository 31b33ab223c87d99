"""Parameter-efficient mode (nnUNetTrainerCausalText_FrozenEncoder): what is frozen, what trains, how much."""
import copy
import re

import pytest
import torch

from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.networks.adapters import LoRAConv2d, is_adapter_key
from nnunet_causal.networks.text_plans import PLANS_KEY
from nnunet_causal.planning.stunet_plans import stunet_plans
from nnunet_causal.training.causal.variants import (ALLOW_PARTIAL_VARIABLE, PRETRAINED_ENCODER_VARIABLE,
                                                    nnUNetTrainerCausalText_FrozenEncoder as Trainer)
from tests.planning.test_stunet_plans import ANISO, ISO, PLANS, plans_3d

TEXT_SETTINGS = {"text_encoder": "minilm", "text_encoder_id": "minilm", "text_dim": 384, "embed_dim": 32,
                 "connector": "mlp", "add_background": True, "prompts": {"liver": ["liver"], "spleen": ["spleen"]},
                 "causal": {"confounders": [f"style {i}" for i in range(12)], "layers": 3, "alpha": 0.5,
                            "width": 64},
                 "adapters": {"where": "decoder", "rank": 8}}


def build(plans, name, device="cpu", adapters=True):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    plans = copy.deepcopy(plans)
    plans[PLANS_KEY] = copy.deepcopy(TEXT_SETTINGS)
    if not adapters:
        del plans[PLANS_KEY]["adapters"]
    pm = PlansManager(plans)
    with torch.device(device):
        return Trainer.build_network_architecture(pm, pm.get_configuration(name), 1, 3, True), pm


@pytest.mark.parametrize("case", [ISO, ANISO], ids=["isotropic", "4mm-slices"])
@pytest.mark.parametrize("size", "BL")
def test_trainable_fraction_below_nine_percent(size, case):
    from nnunet_causal.networks.adapters import freeze_pretrained
    net, _ = build(stunet_plans(plans_3d(case), size), "3d_fullres", device="meta")
    trainable, total = freeze_pretrained(net)
    assert trainable / total < 0.09, (size, trainable, total)
    assert sum(isinstance(m, torch.nn.Conv3d) and hasattr(m, "lora_up") for m in net.modules()) > 0
    assert all(not p.requires_grad for p in net.backbone.encoder.parameters())


class _Trainer(Trainer):
    """The trainer's optimiser set-up without nnU-Net's __init__ (no dataset, no text encoder)."""

    def __init__(self, network, plans_manager):  # noqa: D107 - test double
        self.network, self.plans_manager = network, plans_manager
        self.initial_lr, self.weight_decay, self.num_epochs = 1e-2, 3e-5, 10
        self.log = []

    def print_to_log_file(self, *args, **kwargs):
        self.log.append(" ".join(str(a) for a in args))


def earlier_run(tmp_path, plans, drop=None):
    """checkpoint_final.pth of an earlier nnUNetTrainerCausalText run on the same plans (no adapters)."""
    torch.manual_seed(1)
    net, _ = build(plans, "2d", adapters=False)
    state = net.state_dict()
    if drop:
        del state[drop]
    path = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": state}, path)
    return path, state


def test_encoder_and_decoder_frozen_adapters_and_heads_train(tmp_path, monkeypatch):
    plans = stunet_plans(PLANS, "S")
    path, earlier = earlier_run(tmp_path, plans)
    net, pm = build(plans, "2d")
    trainer = _Trainer(net, pm)
    monkeypatch.delenv(PRETRAINED_ENCODER_VARIABLE, raising=False)
    with pytest.raises(NnunetCausalError, match=PRETRAINED_ENCODER_VARIABLE):
        trainer.configure_optimizers()
    monkeypatch.setenv(PRETRAINED_ENCODER_VARIABLE, str(path))
    optimizer, _ = trainer.configure_optimizers()
    state = net.state_dict()
    for k, v in earlier.items():  # the whole backbone (but its output layers) is the earlier run's
        if k.startswith(("backbone.encoder.", "backbone.decoder.")) and ".seg_layers." not in k:
            assert torch.equal(state[k], v), k
    for name, p in net.named_parameters():
        expect = is_adapter_key(name) or name.startswith(("connector.", "bottleneck.", "backbone.decoder.seg_layers."))
        assert p.requires_grad == expect, name
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == \
        sum(p.numel() for p in net.parameters() if p.requires_grad)
    msg = next(m for m in trainer.log if "trainable parameters" in m)
    fraction = float(re.search(r"trainable parameters [\d,]+ of [\d,]+ \(([\d.]+)%\)", msg).group(1))
    assert abs(fraction - 100 * trainer.trainable_fraction) < 0.01 and "rank-8 decoder adapters" in msg
    # nnU-Net's predictor rebuilds through the same static builder and loads strictly
    again, _ = build(plans, "2d")
    again.load_state_dict(net.state_dict())
    assert any(isinstance(m, LoRAConv2d) for m in again.modules())


def test_partial_backbone_is_an_error_unless_allowed(tmp_path, monkeypatch):
    plans = stunet_plans(PLANS, "S")
    path, _ = earlier_run(tmp_path, plans, drop="backbone.decoder.stages.1.0.conv2.weight")
    monkeypatch.setenv(PRETRAINED_ENCODER_VARIABLE, str(path))
    net, pm = build(plans, "2d")
    with pytest.raises(NnunetCausalError, match=r"decoder.stages.1.0.conv2.weight.*allow_partial"):
        _Trainer(net, pm).configure_optimizers()
    monkeypatch.setenv(ALLOW_PARTIAL_VARIABLE, "1")
    trainer = _Trainer(net, pm)
    trainer.configure_optimizers()
    assert any("partial load" in m and "decoder.stages.1.0.conv2.weight" in m for m in trainer.log)


def test_adapter_rank_written_into_plans_and_kept_on_resume(monkeypatch):
    from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText

    def settings_only(self, plans, dataset_json):  # the parent's entry without its text encoder
        plans = copy.deepcopy(plans)
        plans[PLANS_KEY] = {k: v for k, v in TEXT_SETTINGS.items() if k != "adapters"}
        return plans

    monkeypatch.setattr(nnUNetTrainerCausalText, "_plans_with_text_settings", settings_only)

    class Rank4(Trainer):
        adapter_rank = 4

    fresh = Rank4._plans_with_text_settings(object.__new__(Rank4), PLANS, {})
    assert fresh[PLANS_KEY]["adapters"] == {"where": "decoder", "rank": 4}
    resumed = Trainer._plans_with_text_settings(object.__new__(Trainer), fresh, {})  # model folder: rank 4 stays
    assert resumed[PLANS_KEY]["adapters"]["rank"] == 4
