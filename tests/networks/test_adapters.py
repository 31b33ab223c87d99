"""LoRA adapters on convolutions: the low-rank update, key layout, and adapting nnU-Net / STU-Net decoders."""
import pytest
import torch
from torch import nn

from nnunet_causal.networks.adapters import LoRAConv2d, LoRAConv3d, add_conv_adapters, is_adapter_key


@pytest.mark.parametrize("conv, lora, shape", [(nn.Conv2d, LoRAConv2d, (2, 4, 9, 9)),
                                               (nn.Conv3d, LoRAConv3d, (2, 4, 5, 9, 9))])
def test_lora_conv_is_the_conv_plus_a_rank_r_update(conv, lora, shape):
    torch.manual_seed(0)
    base = conv(4, 6, 3, stride=2, padding=1)
    x = torch.randn(*shape)
    adapted = lora.from_conv(base, rank=2)
    assert adapted.weight is base.weight and adapted.bias is base.bias  # shared, not copied
    assert sorted(adapted.state_dict()) == ["bias", "lora_down.weight", "lora_up.weight", "weight"]
    torch.testing.assert_close(adapted(x), base(x))  # B starts at zero: the pretrained network is unchanged
    nn.init.normal_(adapted.lora_up.weight)
    # W + B A: the 1x1 B composes with the k-kernel A into one kernel of rank <= 2
    merged = base.weight + torch.einsum("or,ri...->oi...", adapted.lora_up.weight.flatten(1), adapted.lora_down.weight)
    expected = conv(4, 6, 3, stride=2, padding=1)
    expected.weight.data.copy_(merged)
    expected.bias.data.copy_(base.bias)
    torch.testing.assert_close(adapted(x), expected(x), atol=1e-4, rtol=1e-4)


def test_nnunet_decoder_convs_adapted_everywhere_they_are_referenced():
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    net = PlainConvUNet(1, 3, [8, 16, 32], nn.Conv2d, 3, [1, 2, 2], 2, 2, 2, conv_bias=True,
                        norm_op=nn.InstanceNorm2d, nonlin=nn.LeakyReLU)
    x = torch.randn(1, 1, 16, 16)
    before = net(x)
    n = add_conv_adapters(net.decoder, 4, exclude=[net.encoder])
    assert n == 4  # 2 decoder stages x 2 convs; the encoder the decoder refers to is untouched
    block = net.decoder.stages[0].convs[0]
    assert isinstance(block.conv, LoRAConv2d) and block.all_modules[0] is block.conv
    assert not any(isinstance(m, LoRAConv2d) for m in net.encoder.modules())
    torch.testing.assert_close(net(x), before)
    assert all(is_adapter_key(k) for k in net.state_dict() if "lora" in k)
    assert sum(is_adapter_key(k) for k in net.state_dict()) == 2 * 2 * n  # also listed under all_modules.0


def test_meta_device_and_rank_check():
    with torch.device("meta"):
        conv = nn.Conv3d(8, 8, 3, padding=1)
        adapted = LoRAConv3d.from_conv(conv, 4)
    assert adapted.lora_down.weight.is_meta and adapted.lora_down.weight.shape == (4, 8, 3, 3, 3)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        add_conv_adapters(nn.Sequential(conv), 0)
