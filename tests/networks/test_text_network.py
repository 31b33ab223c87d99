"""The text head on nnU-Net backbones: shapes, deep supervision, prompt sets, unions, gradients."""
import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from torch import nn

from nnunet_causal.networks.text_head import prompt_logits, union_logits
from nnunet_causal.networks.text_network import TextPromptedSegmentationNetwork


def tiny_backbone(dim=2, out=8, ds=True, cls=PlainConvUNet):
    conv = nn.Conv2d if dim == 2 else nn.Conv3d
    norm = nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d
    kw = dict(input_channels=3, n_stages=3, features_per_stage=[4, 8, 16], conv_op=conv, kernel_sizes=3,
              strides=[1, 2, 2], num_classes=out, conv_bias=True, norm_op=norm, norm_op_kwargs={"affine": True},
              nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=ds)
    if cls is PlainConvUNet:
        return cls(n_conv_per_stage=1, n_conv_per_stage_decoder=1, **kw)
    return cls(n_blocks_per_stage=1, n_conv_per_stage_decoder=1, **kw)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("connector", ["mlp", "cross_attention"])
def test_shapes_with_and_without_deep_supervision(dim, connector):
    net = TextPromptedSegmentationNetwork(tiny_backbone(dim), num_prompts=3, text_dim=12, embed_dim=8,
                                          connector=connector)
    x = torch.randn(2, 3, *([16] * dim))
    out = net(x)
    assert isinstance(out, list) and len(out) == 2
    assert out[0].shape == (2, 4, *([16] * dim)) and out[1].shape == (2, 4, *([8] * dim))
    assert torch.all(out[0][:, 0] == 0)  # constant background logit
    net.decoder.deep_supervision = False
    single = net(x)
    assert torch.is_tensor(single) and single.shape == (2, 4, *([16] * dim))


def test_region_mode_has_no_background_channel():
    net = TextPromptedSegmentationNetwork(tiny_backbone(ds=False), 3, 12, 8, add_background=False)
    assert net(torch.randn(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_prompt_logits_is_dot_product_plus_bias():
    f = torch.randn(2, 5, 4, 4)
    q = torch.randn(1, 3, 5)
    b = torch.randn(1, 3)
    got = prompt_logits(f, q, b)
    want = torch.einsum("be...,ke->bk...", f, q[0]) + b[0].view(1, 3, 1, 1)
    torch.testing.assert_close(got, want)


def test_union_is_max_over_members():
    logits = torch.randn(1, 3, 4, 4)
    groups = torch.tensor([[0, 2], [1, 0]])
    valid = torch.tensor([[True, True], [True, False]])
    u = union_logits(logits, groups, valid)
    torch.testing.assert_close(u[:, 0], torch.maximum(logits[:, 0], logits[:, 2]))
    torch.testing.assert_close(u[:, 1], logits[:, 1])


def test_inference_prompts_change_output_channels_and_restore():
    net = TextPromptedSegmentationNetwork(tiny_backbone(ds=False), 2, 12, 8).eval()
    net.set_prompt_embeddings(torch.randn(2, 12))
    x = torch.randn(1, 3, 16, 16)
    trained = net(x)
    emb = torch.cat([net.prompt_embeddings, torch.randn(3, 12)])
    net.set_inference_prompts(emb, [[0], [1], [0, 1], [2], [3, 4]])
    out = net(x)
    assert out.shape == (1, 6, 16, 16)
    torch.testing.assert_close(out[:, 1:3], trained[:, 1:3])  # reused trained queries give identical logits
    torch.testing.assert_close(out[:, 3], torch.maximum(trained[:, 1], trained[:, 2]))
    net.set_inference_prompts(None)
    torch.testing.assert_close(net(x), trained)
    with pytest.raises(ValueError):
        net.set_inference_prompts(emb, [[7]])


def test_synonyms_are_sampled_in_training_only():
    torch.manual_seed(0)
    net = TextPromptedSegmentationNetwork(tiny_backbone(ds=False), 2, 12, 8)
    canonical = torch.randn(2, 12)
    net.set_prompt_embeddings(canonical)
    bank = torch.cat([canonical, torch.randn(3, 12)])
    net.set_training_synonyms(bank, [0, 1, 0, 0, 1])
    net.train()
    drawn = {tuple(net._active_text_embeddings()[0].tolist()) for _ in range(50)}
    assert len(drawn) == 3  # prompt 0 has three texts, all get drawn
    net.eval()
    torch.testing.assert_close(net._active_text_embeddings(), canonical)
    with pytest.raises(ValueError):
        net.set_training_synonyms(bank, [0, 0, 0, 0, 0])


@pytest.mark.parametrize("cls", [PlainConvUNet, ResidualEncoderUNet])
def test_every_parameter_gets_a_gradient(cls):
    """DDP without find_unused_parameters needs every parameter in the graph of each step."""
    net = TextPromptedSegmentationNetwork(tiny_backbone(cls=cls), 2, 12, 8)
    net.set_training_synonyms(torch.randn(4, 12), [0, 1, 1, 0])
    out = net(torch.randn(2, 3, 16, 16))
    sum(o.square().mean() for o in out).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_state_dict_holds_prompt_embeddings_but_not_training_or_inference_buffers():
    net = TextPromptedSegmentationNetwork(tiny_backbone(ds=False), 2, 12, 8)
    net.set_training_synonyms(torch.randn(4, 12), [0, 1, 1, 0])
    net.set_inference_prompts(torch.randn(3, 12))
    keys = set(net.state_dict())
    assert "prompt_embeddings" in keys
    assert not any(k.startswith(("synonym", "inference")) for k in keys)


def test_mtrs_uses_trained_prompts_so_other_prompts_do_not_move_a_trained_structure():
    from nnunet_causal.networks.confounder_attention import ConfounderCrossAttention

    torch.manual_seed(0)
    bottleneck = ConfounderCrossAttention(16, num_confounders=5, text_dim=12, d_model=16, num_layers=1, alpha=0.5)
    torch.nn.init.normal_(bottleneck.out.weight, std=0.5)          # a trained (non-identity) bottleneck
    bottleneck.set_confounder_embeddings(torch.randn(5, 12))
    net = TextPromptedSegmentationNetwork(tiny_backbone(ds=False), 2, 12, 8, bottleneck=bottleneck).eval()
    net.set_prompt_embeddings(torch.randn(2, 12))
    x = torch.randn(1, 3, 16, 16)
    trained = net(x)
    net.set_inference_prompts(torch.cat([net.prompt_embeddings, 3 * torch.randn(4, 12)]))
    torch.testing.assert_close(net(x)[:, 1:3], trained[:, 1:3])   # the new prompts do not change MTRS's positions
