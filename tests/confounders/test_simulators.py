"""Every registered simulator changes what it names and leaves the label untouched (measured per simulator)."""
import math

import pytest
import torch
from torch.nn import functional as F

from nnunet_causal.confounders.base import gaussian_blur
from nnunet_causal.confounders.registry import SIMULATORS, get_simulator


def _disc(shape, centre, radius):
    axes = [torch.arange(s, dtype=torch.float32) for s in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    c = torch.tensor(centre, dtype=torch.float32).view(-1, *([1] * len(shape)))
    return ((grid - c) ** 2).sum(0).sqrt() <= radius


def rgb_frame(b=4, size=64):
    """Pinkish mucosa with texture, a redder disc (label 1) carrying two saturated highlights."""
    g = torch.Generator().manual_seed(0)
    base = torch.tensor([0.8, 0.45, 0.4]).view(1, 3, 1, 1)
    tex = gaussian_blur(torch.randn(b, 1, size, size, generator=g), torch.full((b,), 2.0))
    x = base * (1 + 0.3 * tex)
    lab = _disc((size, size), (size / 2, size / 2), size / 6)
    seg = lab.long().view(1, 1, size, size).repeat(b, 1, 1, 1)
    x = torch.where(lab, x * torch.tensor([1.1, 0.9, 0.9]).view(1, 3, 1, 1), x)
    for dy in (-3, 3):
        x = torch.where(_disc((size, size), (size / 2 + dy, size / 2 + dy), 1.5), torch.ones_like(x), x)
    return x.clamp(0, 1), seg


def ct_volume(b=2, shape=(12, 40, 40)):
    """Soft tissue (40 HU) body in air, a liver-like structure (label 1, 60 HU), noise 5 HU."""
    g = torch.Generator().manual_seed(0)
    body = _disc(shape[1:], (shape[1] / 2, shape[2] / 2), shape[1] * 0.45).expand(shape)
    organ = _disc(shape, (shape[0] / 2, shape[1] / 2, shape[2] / 2 + 4), 6)
    x = torch.full(shape, -1000.0)
    x = torch.where(body, torch.full(shape, 40.0), x)
    x = torch.where(organ, torch.full(shape, 60.0), x)
    x = x + 5 * torch.randn(b, 1, *shape, generator=g)
    seg = organ.long().view(1, 1, *shape).repeat(b, 1, 1, 1, 1)
    return x, seg


def mr_volume(b=2, shape=(16, 32, 32), channels=2):
    g = torch.Generator().manual_seed(0)
    head = _disc(shape, tuple(s / 2 for s in shape), 10)
    tumour = _disc(shape, (8, 18, 18), 4)
    x = torch.where(head, torch.full(shape, 0.5), torch.zeros(shape)) + torch.where(tumour, 0.3, 0.0)
    x = x.view(1, 1, *shape).repeat(b, channels, 1, 1, 1) + 0.005 * torch.rand(b, channels, *shape, generator=g)
    return x, tumour.long().view(1, 1, *shape).repeat(b, 1, 1, 1, 1)


def lap_var(x):
    nd = x.ndim - 2
    k = torch.zeros((1, 1) + (3,) * nd)
    centre = (0, 0) + (1,) * nd
    k[centre] = -2.0 * nd
    for d in range(nd):
        for o in (0, 2):
            idx = [0, 0] + [1] * nd
            idx[2 + d] = o
            k[tuple(idx)] = 1
    conv = F.conv2d if nd == 2 else F.conv3d
    flat = x.reshape(-1, 1, *x.shape[2:])
    return conv(flat, k).var().item()


def sat(x):
    return (x >= 0.97).all(1)


def inside_outside(x, seg, far=4):
    """Mean over voxels inside the label and over voxels at least ``far`` voxels away from it."""
    fg = seg[:, :1].expand_as(x) > 0
    dil = F.max_pool2d(seg.float(), 2 * far + 1, 1, far) if seg.ndim == 4 else F.max_pool3d(seg.float(), 2 * far + 1, 1, far)
    bg = dil.expand_as(x) == 0
    return x[fg].mean().item(), x[bg].mean().item(), fg, bg


def _contrast(x, seg):
    """Red-channel ratio of the label's mean to a 3-pixel band around it (the lesion's colour contrast)."""
    hard = (seg > 0).float()
    band = F.max_pool2d(hard, 7, 1, 3) - hard
    r = x[:, :1]
    return ((r * hard).sum() / hard.sum() / ((r * band).sum() / band.sum())).item()


def corner_centre(x):
    h, w = x.shape[-2:]
    return x[..., :4, :4].mean().item(), x[..., h // 2 - 4:h // 2 + 4, w // 2 - 4:w // 2 + 4].mean().item()


def blockiness(x):
    d = (x[..., :, 1:] - x[..., :, :-1]).abs()
    at = d[..., 7::8].mean()
    return (at / d.mean()).item()


# name -> (data builder, parameter ranges for a clear effect, check(before, after, seg) -> bool)
CASES = {
    "specular_highlights": (rgb_frame, {"count": (8, 8)},
                            lambda x, y, s: sat(y)[s[:, 0] == 0].sum() > sat(x)[s[:, 0] == 0].sum() + 20),
    "highlight_removal": (rgb_frame, {}, lambda x, y, s: sat(x).sum() > 20 and sat(y).sum() == 0),
    "structure_colour": (rgb_frame, {"contrast": (1.0, 1.0)},   # do(contrast = 1): lesion as its surroundings
                         lambda x, y, s: abs(_contrast(y, s) - 1) < 0.03 < abs(_contrast(x, s) - 1)
                         and torch.equal(y[inside_outside(x, s)[3]], x[inside_outside(x, s)[3]])),
    "structure_conspicuity": (rgb_frame, {"fade": (0.7, 0.7)},   # the lesion stands out less from its surroundings
                              lambda x, y, s: abs(_contrast(y, s) - 1) < 0.5 * abs(_contrast(x, s) - 1)
                              and torch.equal(y[inside_outside(x, s)[3]], x[inside_outside(x, s)[3]])),
    "structure_texture": (rgb_frame, {"amount": (-1, -1)},
                          lambda x, y, s: lap_var(y[..., 28:36, 24:30]) < 0.5 * lap_var(x[..., 28:36, 24:30])
                          and torch.equal(y[inside_outside(x, s)[3]], x[inside_outside(x, s)[3]])),
    "colour_cast": (rgb_frame, {"gain": (0.6, 1.4)},
                    lambda x, y, s: ((y.mean((2, 3)) / y.mean((2, 3)).sum(1, keepdim=True))
                                     - (x.mean((2, 3)) / x.mean((2, 3)).sum(1, keepdim=True))).abs().max() > 0.02),
    "nbi": (rgb_frame, {"amount": (1, 1)},
            lambda x, y, s: (y[:, 0].mean() / y.mean()) < 0.7 * (x[:, 0].mean() / x.mean())),
    "vignetting": (rgb_frame, {"strength": (0.6, 0.6)},
                   lambda x, y, s: corner_centre(y)[0] / corner_centre(y)[1] < 0.8 * corner_centre(x)[0] / corner_centre(x)[1]),
    "exposure": (rgb_frame, {"gain": (0.5, 0.5), "gamma": (1, 1)}, lambda x, y, s: y.mean() < 0.6 * x.mean()),
    "uneven_illumination": (rgb_frame, {"strength": (0.6, 0.6)},
                            lambda x, y, s: F.avg_pool2d(y, 16).std() > 1.5 * F.avg_pool2d(x, 16).std()),
    "defocus_blur": (rgb_frame, {"sigma": (1.5, 1.5)}, lambda x, y, s: lap_var(y) < 0.3 * lap_var(x)),
    "motion_blur": (rgb_frame, {"length": (9, 9)}, lambda x, y, s: lap_var(y) < 0.5 * lap_var(x)),
    "sensor_noise": (rgb_frame, {"sigma": (0.05, 0.05)}, lambda x, y, s: lap_var(y) > 3 * lap_var(x)),
    "jpeg": (rgb_frame, {"quality": (10, 10)}, lambda x, y, s: blockiness(y) > 1.2 * blockiness(x)),
    "mucus_bubbles": (rgb_frame, {"count": (4, 4)},
                      lambda x, y, s: ((y - x).abs().amax(1) > 0.05).float().mean() > 0.01),
    "blood_tint": (rgb_frame, {"amount": (0.6, 0.6), "coverage": (0.4, 0.4)},
                   lambda x, y, s: (y[:, 0].mean() / y[:, 1].mean()) > 1.08 * (x[:, 0].mean() / x[:, 1].mean())),
    "black_borders": (rgb_frame, {"width": (0.2, 0.2)},
                      lambda x, y, s: y[..., :3, :3].abs().max() < 0.01 and x[..., :3, :3].min() > 0.1),
    "metal_streaks": (ct_volume, {"count": (2, 2), "amplitude": (400, 400)},
                      lambda x, y, s: (y - x).std() > 50 and y.max() > x.max() + 300),
    "low_dose_noise": (ct_volume, {"sigma": (40, 40)}, lambda x, y, s: (y - x).std() > 30),
    "hu_calibration": (ct_volume, {"offset": (50, 50), "scale": (1, 1)},
                       lambda x, y, s: abs((y - x).mean().item() - 50) < 1e-3),
    "slice_thickness": (ct_volume, {"sigma": (2, 2)},
                        lambda x, y, s: (y[:, :, 1:] - y[:, :, :-1]).abs().mean() < 0.5 * (x[:, :, 1:] - x[:, :, :-1]).abs().mean()),
    "cupping": (ct_volume, {"depth": (60, 60)},
                lambda x, y, s: (x - y)[..., 18:22, 18:22].mean() > 40 and (x - y)[..., :2, :2].abs().max() < 1e-3),
    "contrast_phase": (ct_volume, {"offset": (80, 80)},
                       lambda x, y, s: inside_outside(y, s)[0] - inside_outside(x, s)[0] > 60
                       and torch.equal(y[inside_outside(x, s)[3]], x[inside_outside(x, s)[3]])),
    "reconstruction_kernel": (ct_volume, {"sharpness": (1, 1)}, lambda x, y, s: lap_var(y) > 2 * lap_var(x)),
    "breathing_motion": (ct_volume, {"shift": (5, 5), "weight": (0.4, 0.4)},
                         lambda x, y, s: ((y - x) * (torch.roll(x, 5, 3) - x)).mean() > 0
                         and (y - x).abs().max() > 100),
    "truncated_fov": (ct_volume, {"radius": (0.8, 0.8)},
                      lambda x, y, s: (y[..., :3, :3] + 1000).abs().max() < 1),
    "bias_field": (mr_volume, {"strength": (0.5, 0.5)},
                   lambda x, y, s: torch.log(y[x > 0.3] / x[x > 0.3]).std() > 0.2),
    "rician_noise": (mr_volume, {"sigma": (0.05, 0.05)},
                     lambda x, y, s: y[x < 0.01].mean() > x[x < 0.01].mean() + 0.03),
    "ghosting": (mr_volume, {"spacing": (4, 4), "intensity": (0.8, 0.8)},
                 lambda x, y, s: y[x < 0.01].mean() > x[x < 0.01].mean() + 0.005),
    "mri_motion": (mr_volume, {"translation": (4, 4), "fraction": (0.5, 0.5)},
                   lambda x, y, s: y[x < 0.01].mean() > x[x < 0.01].mean() + 0.005),
    "gibbs_ringing": (mr_volume, {"keep": (0.4, 0.4)},
                      lambda x, y, s: y.amax() > 1.03 * x.amax()            # overshoot at the edges
                      and lap_var(y) < lap_var(x)),
    "contrast_remap": (mr_volume, {"layers": (3, 3)}, lambda x, y, s: (y - x).abs().mean() > 0.01),
    "tissue_contrast": (mr_volume, {"gain": (1.5, 1.5)},
                        lambda x, y, s: inside_outside(y, s)[0] > 1.3 * inside_outside(x, s)[0]
                        and torch.equal(y[inside_outside(x, s)[3]], x[inside_outside(x, s)[3]])),
    "wraparound": (mr_volume, {"fraction": (0.2, 0.2)}, lambda x, y, s: (y - x).abs().amax() > 0.2),
    # modality change (nnunet_causal/confounders/modality.py; more in test_modality.py)
    "structure_intensity": (ct_volume, {"level": (1, 1), "texture": (1, 1)},   # the organ's CT contrast is gone
                            lambda x, y, s: abs((inside_outside(y, s)[0] - y[(x > -500) & inside_outside(x, s)[3]]
                                                 .mean().item()) - 20) > 30),
    "intensity_curve": (ct_volume, {"randomness": (0, 0), "inversion": (1, 1)},   # air above tissue
                        lambda x, y, s: y[x < -500].mean() > y[x > 0].mean() + 500),
    "mr_appearance": (ct_volume, {"bias": (0, 0), "sigma": (0.05, 0.05)},         # Rician floor in the air
                      lambda x, y, s: y[x < -500].mean() > x[x < -500].mean() + 30),
    "ct_appearance": (mr_volume, {"floor": (0.2, 0.2), "sigma": (0, 0)},          # flat air
                      lambda x, y, s: y[x < 0.05].std() < 1e-5 and torch.allclose(y[x > 0.3], x[x > 0.3], atol=1e-5)),
}


def test_every_registered_simulator_has_a_measured_case():
    assert sorted(CASES) == sorted(SIMULATORS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulator_changes_what_it_names_and_not_the_label(name):
    build, ranges, check = CASES[name]
    x, seg = build()
    sim = get_simulator(name, **ranges)
    x0, seg0 = x.clone(), seg.clone()
    torch.manual_seed(1)
    y = sim.apply(x, seg, sim.draw(x.shape[0], x, torch.Generator().manual_seed(3)),
                  torch.Generator().manual_seed(4))
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.equal(seg, seg0) and torch.equal(x, x0), "inputs must not be modified in place"
    assert bool(check(x, y, seg)), f"{name} did not change what it names"


@pytest.mark.parametrize("name", sorted(n for n, c in SIMULATORS.items() if c.label_aware))
def test_label_aware_simulators_ignore_a_missing_label(name):
    build, ranges, _ = CASES[name]
    x, _ = build()
    sim = get_simulator(name, **ranges)
    assert torch.equal(sim.apply(x, None, sim.draw(x.shape[0], x)), x)


def test_parameter_bounds_and_names_are_checked():
    with pytest.raises(ValueError, match="outside the allowed"):
        get_simulator("jpeg", quality=(0, 50))
    with pytest.raises(ValueError, match="lo > hi"):
        get_simulator("jpeg", quality=(60, 50))
    with pytest.raises(ValueError, match="unknown parameter"):
        get_simulator("jpeg", qualty=(20, 50))
    with pytest.raises(ValueError, match="unknown simulator 'foo'"):
        get_simulator("foo")
    assert "needs 3 channel" in get_simulator("nbi").supports(2, 1)
    assert "3D" in get_simulator("slice_thickness").supports(2, 1)
    assert get_simulator("bias_field").supports(3, 4) is None
    assert math.isclose(float(get_simulator("jpeg", quality=(30, 30)).draw(3, torch.zeros(1))["quality"][0]), 30)
