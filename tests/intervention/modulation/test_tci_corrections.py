"""Simulated corrections and FiLM plumbing on plain tensors (no model folder)."""
import torch

from nnunet_causal.intervention.modulation.corrections import (axis_radii, dilate, erode, fade_part,
                                                               location_region, wanted_mask)
from nnunet_causal.intervention.modulation.film import FiLMGenerator, film_hooks


def _disk(r, size=21):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((yy - size // 2) ** 2 + (xx - size // 2) ** 2) <= r * r)[None, None]


def test_dilation_and_erosion_move_a_disk_by_the_radius():
    d = _disk(5)
    assert torch.equal(dilate(d, (2, 2)), _disk(7)) and torch.equal(erode(d, (2, 2)), _disk(3))
    assert torch.equal(erode(dilate(d, (1, 1)), (1, 1)), d)
    edge = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    edge[..., :4] = True  # touches the patch border: not eroded from outside the patch
    assert erode(edge, (1, 1))[0, 0, 0, 0] and not erode(edge, (1, 1))[0, 0, 0, 3]
    assert axis_radii(2, [3.0, 1.0, 1.0], 3) == (1, 2, 2)  # thick slices: fewer voxels along z


def test_wanted_masks_of_each_action():
    pred, truth = _disk(4), _disk(6)
    assert wanted_mask("expand", pred, truth, (2, 2)).sum() > pred.sum() > wanted_mask("shrink", pred, truth,
                                                                                     (2, 2)).sum()
    assert not wanted_mask("remove", pred, truth, (1, 1)).any()
    assert torch.equal(wanted_mask("add", pred, truth, (1, 1)), truth)


def test_fade_part_changes_only_part_of_the_structure():
    img = torch.zeros(3, 21, 21)
    m = _disk(6)[0, 0]
    img[:, m] = 5.0
    out, part = fade_part(img, m, torch.Generator().manual_seed(0), fraction=(0.5, 0.5), amount=(1.0, 1.0))
    assert part.any() and (part & ~m).sum() == 0 and 0.3 < part.sum() / m.sum() < 0.7
    assert torch.allclose(out[:, part], torch.zeros_like(out[:, part]))   # blended into the surroundings
    assert torch.equal(out[:, ~part], img[:, ~part])


def test_location_words_name_array_halves():
    r = location_region("the upper right part", (1, 4, 6))
    assert r[0, :2, 3:].all() and not r[0, 2:].any() and not r[0, :, :3].any()
    assert location_region("near the liver", (4, 4)) is None and location_region(None, (4, 4)) is None


def test_film_hooks_modulate_each_stage_and_are_removed():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = torch.nn.Module()
            self.decoder.stages = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Identity()])

    net = Net()
    gen = FiLMGenerator(5, [2, 3])
    params = gen(torch.zeros(1, 5))
    assert all(torch.equal(g, torch.ones_like(g)) and not b.any() for g, b in params)  # starts as the identity
    x = torch.ones(1, 2, 4, 4)
    with film_hooks(net, [(torch.tensor([[2.0, 3.0]]), torch.tensor([[1.0, 0.0]])), params[1]]):
        y = net.decoder.stages[0](x)
    assert torch.equal(y[0, :, 0, 0], torch.tensor([3.0, 3.0]))
    assert torch.equal(net.decoder.stages[0](x), x)  # hooks gone after the block
