"""Loading released STU-Net checkpoints (published key layout) and encoders of earlier runs."""
import pytest
import torch

from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.networks.pretrained import load_encoder_weights, load_stunet_pretrained
from nnunet_causal.networks.stunet import STUNET_SIZES, WIDTH_MULTIPLIERS, STUNet


def tiny(in_ch=1, classes=4, n_stages=3):
    """A small 2D STUNet (the class takes any number of stages; plans always give STU-Net's six)."""
    return STUNet(in_ch, classes, n_stages, [8 * 2 ** i for i in range(n_stages)], torch.nn.Conv2d,
                  [[3, 3]] * n_stages, [[1, 1]] + [[2, 2]] * (n_stages - 1), 1)


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


def test_partial_checkpoint_is_an_error_unless_allowed(tmp_path):
    state = released_layout(tiny().state_dict())
    del state["conv_blocks_localization.0.0.conv2.weight"]
    path = tmp_path / "partial.model"
    torch.save({"state_dict": state}, path)
    with pytest.raises(NnunetCausalError, match=r"1 network weights not in the checkpoint \(e.g. "
                                                r"decoder.stages.0.0.conv2.weight\).*allow_partial=True"):
        load_stunet_pretrained(tiny(), path)
    dst = tiny()
    report = load_stunet_pretrained(dst, path, allow_partial=True)
    assert report["missing"] == ["decoder.stages.0.0.conv2.weight"] and not report["unused"]
    torch.testing.assert_close(dst.state_dict()["decoder.stages.0.0.conv1.weight"],
                               state["conv_blocks_localization.0.0.conv1.weight"])


def test_checkpoint_of_another_topology_is_an_error(tmp_path):
    deeper, shallower = tmp_path / "deeper.model", tmp_path / "shallower.model"
    torch.save({"state_dict": released_layout(tiny(n_stages=4).state_dict())}, deeper)
    torch.save({"state_dict": released_layout(tiny(n_stages=3).state_dict())}, shallower)
    with pytest.raises(NnunetCausalError, match="checkpoint weights with no place in the network"):
        load_stunet_pretrained(tiny(n_stages=3), deeper)
    with pytest.raises(NnunetCausalError, match="network weights not in the checkpoint"):
        load_encoder_weights(tiny(n_stages=4), shallower)


def published_checkpoint(size, classes=105, in_ch=1):
    """Random tensors under the key names and shapes of STU-Net's released (nnU-Net v1) checkpoints, written
    down from STU-Net's module definitions, independently of our STUNet class."""
    base, depth = STUNET_SIZES[size]
    dims = [base * m for m in WIDTH_MULTIPLIERS]
    k, one = (3, 3, 3), (1, 1, 1)
    state = {}

    def block(name, cin, cout, project):
        state.update({f"{name}conv1.weight": torch.randn(cout, cin, *k), f"{name}conv1.bias": torch.randn(cout),
                      f"{name}norm1.weight": torch.randn(cout), f"{name}norm1.bias": torch.randn(cout),
                      f"{name}conv2.weight": torch.randn(cout, cout, *k), f"{name}conv2.bias": torch.randn(cout),
                      f"{name}norm2.weight": torch.randn(cout), f"{name}norm2.bias": torch.randn(cout)})
        if project:
            state.update({f"{name}conv3.weight": torch.randn(cout, cin, *one), f"{name}conv3.bias": torch.randn(cout)})

    for d in range(6):
        for j in range(depth):
            block(f"conv_blocks_context.{d}.{j}.", dims[d] if j else (dims[d - 1] if d else in_ch), dims[d], j == 0)
    for u in range(5):
        below, here = dims[-1 - u], dims[-2 - u]
        state[f"upsample_layers.{u}.conv.weight"] = torch.randn(here, below, *one)
        state[f"upsample_layers.{u}.conv.bias"] = torch.randn(here)
        for j in range(depth):
            block(f"conv_blocks_localization.{u}.{j}.", here if j else 2 * here, here, j == 0)
        state[f"seg_outputs.{u}.weight"] = torch.randn(classes, here, *one)
        state[f"seg_outputs.{u}.bias"] = torch.randn(classes)
    return state


def test_published_checkpoint_loads_fully_into_anisotropic_plans(tmp_path):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunet_causal.planning.stunet_plans import stunet_plans

    state = published_checkpoint("S")
    assert abs(sum(v.numel() for v in state.values()) / 14.6e6 - 1) < 1e-3  # the reference is STU-Net-S
    path = tmp_path / "small_ep4k.model"
    torch.save({"state_dict": state}, path)
    # 4 mm slices: nnU-Net plans 5 stages, in-plane-only pooling and 1x3x3 kernels
    plans = {"configurations": {"3d_fullres": {"patch_size": [16, 160, 128], "architecture": {
        "network_class_name": "x", "_kw_requires_import": [], "arch_kwargs": {
            "strides": [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 2, 2]],
            "kernel_sizes": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]}}}}}
    arch = stunet_plans(plans, "S")["configurations"]["3d_fullres"]["architecture"]
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                 1, 3, deep_supervision=True)
    report = load_stunet_pretrained(net, path)
    assert not report["missing"] and not report["unused"] and not report["mismatched"]
    assert sorted(report["skipped"]) == sorted(k for k in state if k.startswith("seg_outputs."))
    ours = net.state_dict()
    body = [k for k in ours if k.startswith(("encoder.", "decoder.")) and not k.startswith("decoder.seg_layers.")]
    assert len(body) == len(state) - 10
    for k in body:
        theirs = (k.replace("encoder.stages.", "conv_blocks_context.").replace("decoder.upsamples.", "upsample_layers.")
                  .replace("decoder.stages.", "conv_blocks_localization."))
        assert torch.equal(ours[k], state[theirs]), k
