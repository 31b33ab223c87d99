"""Loading released STU-Net checkpoints (published key layout) and encoders of earlier runs."""
import pydoc

import pytest
import torch

from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.networks.pretrained import load_encoder_weights, load_stunet_pretrained
from nnunet_causal.networks.stunet import STUNet, stunet_arch_kwargs


def tiny(in_ch=1, classes=4):
    kw = stunet_arch_kwargs("S", 2, strides=[[1, 1], [2, 2], [2, 2]], kernel_sizes=[[3, 3]] * 3)
    for k in ("conv_op", "norm_op", "nonlin"):
        kw[k] = pydoc.locate(kw[k])
    return STUNet(in_ch, classes, **kw)


def released_layout(state):
    """Rename our keys to the layout of STU-Net's released nnU-Net v1 checkpoints."""
    out = {}
    for k, v in state.items():
        k = (k.replace("encoder.stages.", "conv_blocks_context.").replace("decoder.upsamples.", "upsample_layers.")
             .replace("decoder.stages.", "conv_blocks_localization.").replace("decoder.seg_layers.", "seg_outputs."))
        out[k] = v
    return out


@pytest.mark.parametrize("fmt", ["model", "pth"])
def test_released_checkpoint_loads_skipping_heads(tmp_path, fmt):
    src = tiny(classes=105)
    state = released_layout(src.state_dict())
    assert any(k.startswith("conv_blocks_context.0.0.conv1") for k in state)
    path = tmp_path / f"stunet.{fmt}"
    torch.save({"state_dict": state} if fmt == "model" else {"network_weights": state}, path)
    dst = tiny(classes=3)
    report = load_stunet_pretrained(dst, path)
    assert not report["missing"] and any(k.startswith("seg_outputs") for k in report["skipped"])
    torch.testing.assert_close(dst.state_dict()["encoder.stages.1.0.conv1.weight"],
                               src.state_dict()["encoder.stages.1.0.conv1.weight"])


def test_first_layer_repeated_for_multichannel_input(tmp_path):
    src = tiny(in_ch=1)
    path = tmp_path / "ck.model"
    torch.save({"state_dict": released_layout(src.state_dict())}, path)
    dst = tiny(in_ch=4)
    load_stunet_pretrained(dst, path)
    w_src = src.state_dict()["encoder.stages.0.0.conv1.weight"]
    w_dst = dst.state_dict()["encoder.stages.0.0.conv1.weight"]
    assert w_dst.shape[1] == 4
    torch.testing.assert_close(w_dst.sum(1), w_src.sum(1))


def test_shape_mismatch_names_the_key(tmp_path):
    state = released_layout(tiny().state_dict())
    state["conv_blocks_context.1.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "bad.model"
    torch.save({"state_dict": state}, path)
    with pytest.raises(NnunetCausalError, match="conv_blocks_context.1.0.conv1.weight"):
        load_stunet_pretrained(tiny(), path)
    with pytest.raises(NnunetCausalError, match="does not exist"):
        load_stunet_pretrained(tiny(), tmp_path / "missing.model")


def test_encoder_from_an_earlier_run(tmp_path):
    src = tiny()
    path = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": {f"backbone.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = tiny()
    assert load_encoder_weights(dst, path)["loaded"] > 0
    torch.testing.assert_close(dst.state_dict()["encoder.stages.2.0.conv2.weight"],
                               src.state_dict()["encoder.stages.2.0.conv2.weight"])
