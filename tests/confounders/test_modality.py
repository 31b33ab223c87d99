"""Modality-change simulators (CT <-> MR of the same anatomy) and the dictionaries' [modality] groups."""
import pytest
import torch

from nnunet_causal.confounders.counterfactual import CounterfactualSampler
from nnunet_causal.confounders.dictionary import load_confounder_entries
from nnunet_causal.confounders.frames import ChannelFrame, IntensityFrame
from nnunet_causal.confounders.modality import (CTAppearance, IntensityCurve, MODALITY_SIMULATORS, MRAppearance,
                                                StructureIntensity)
from nnunet_causal.confounders.registry import SIMULATORS, get_simulator


def ct_like(batch=4, size=32, ndim=2):
    """HU slices: air around a fat body with a bright organ (label 1) and a dark one (label 2)."""
    shape = (batch, 1) + (size,) * ndim
    x = torch.full(shape, -1000.0)
    seg = torch.zeros(shape, dtype=torch.long)
    body = (slice(None), slice(None)) + (slice(4, size - 4),) * ndim
    x[body] = -100.0
    organ = (slice(None), slice(None)) + (slice(8, 16),) * ndim
    x[organ] = 150.0
    seg[organ] = 1
    other = (slice(None), slice(None)) + (slice(18, 26),) * ndim
    x[other] = 10.0
    seg[other] = 2
    return x, seg


def run(sim, x, seg=None, seed=0):
    theta = sim.draw(x.shape[0], x, torch.Generator().manual_seed(seed))
    return sim.apply(x, seg, theta, torch.Generator().manual_seed(seed + 1))


def test_registered_with_bounds():
    for cls in MODALITY_SIMULATORS:
        assert SIMULATORS[cls.name] is cls
        assert isinstance(get_simulator(cls.name), cls)
    with pytest.raises(ValueError, match="outside the allowed"):
        get_simulator("structure_intensity", level=(0.5, 1.5))


@pytest.mark.parametrize("cls", MODALITY_SIMULATORS)
@pytest.mark.parametrize("ndim", [2, 3])
def test_same_result_in_either_working_space(cls, ndim):
    """Each simulator normalises per sample internally: acting on HU or on the same image scaled to [0, 1]
    gives the same image up to that affine map (one parameter range means the same in both spaces)."""
    hu, seg = ct_like(ndim=ndim, size=32 if ndim == 2 else 28)
    unit = (hu + 1000.0) / 1150.0
    sim = cls()
    out_hu = run(sim, hu, seg)
    out_unit = run(sim, unit, seg)
    assert out_hu.shape == hu.shape and torch.isfinite(out_hu).all()
    torch.testing.assert_close(out_hu, out_unit * 1150.0 - 1000.0, atol=1e-2, rtol=1e-4)
    assert not torch.allclose(out_hu, hu)


def test_structure_intensity_breaks_and_inverts_contrast_keeps_shape():
    x, seg = ct_like(batch=200)
    out = StructureIntensity(level=(1.0, 1.0), texture=(1.0, 1.0)).apply(
        x, seg, {"level": torch.ones(200), "texture": torch.ones(200), "separation": torch.full((200,), 0.2)},
        torch.Generator().manual_seed(0))
    organ = out[seg == 1].view(200, -1).mean(1)
    fat = out[(seg == 0) & (x == -100)].view(200, -1).mean(1)
    brighter = (organ > fat).float().mean().item()
    assert 0.3 < brighter < 0.7            # on CT the organ is always brighter than fat; here either way
    # shape kept: inside a structure (away from its blurred edge) the image stays one value, as the input
    inner = out[:, :, 10:14, 10:14].flatten(1)
    assert (inner.max(1).values - inner.min(1).values).abs().max() < 1.0   # HU, of a 1150 HU range
    # the label is read, never changed; without a label the image is returned as is
    assert StructureIntensity().apply(x, None, StructureIntensity().draw(200, x)) is x


@pytest.mark.parametrize("ndim", [2, 3])
def test_structure_intensity_keeps_every_structure_visible_against_its_surroundings(ndim):
    """At level 1 with flat texture, each structure's new level lies at least ``separation`` of the range away
    from its surroundings (the background next to it), above or below."""
    size = 32 if ndim == 2 else 28
    x, seg = ct_like(batch=100, size=size, ndim=ndim)
    n = x.shape[0]
    out = StructureIntensity().apply(
        x, seg, {"level": torch.ones(n), "texture": torch.zeros(n), "separation": torch.full((n,), 0.3)},
        torch.Generator().manual_seed(0))
    unit = (out - out.flatten(1).amin(1).view(-1, *[1] * (ndim + 1))) / 1150.0   # the input's range
    inner = (slice(None), 0) + (slice(10, 14),) * ndim           # organ 1, away from its blurred edge
    beside = (slice(None), 0) + (slice(5, 7),) + (slice(10, 14),) * (ndim - 1)   # fat just outside it
    organ, fat = unit[inner].flatten(1).mean(1), unit[beside].flatten(1).mean(1)
    gap = (organ - fat).abs()
    assert gap.min() > 0.3 - 0.02                                   # blending at the edge costs a little
    assert 0.2 < (organ > fat).float().mean() < 0.8                 # brighter or darker than its surroundings


def test_intensity_curve_identity_and_inversion():
    x, _ = ct_like()
    lo, hi = x.amin(), x.amax()
    ident = IntensityCurve(randomness=(0, 0), inversion=(0, 0))
    torch.testing.assert_close(run(ident, x), x, atol=1e-3, rtol=0)
    inv = IntensityCurve(randomness=(0, 0), inversion=(1, 1))
    torch.testing.assert_close(run(inv, x), lo + hi - x, atol=1e-3, rtol=0)


def test_mr_appearance_rician_floor_and_bias():
    x = torch.zeros(8, 1, 64, 64)
    x[:, :, 16:48, 16:48] = 1.0
    flat = MRAppearance(bias=(0, 0), sigma=(0, 0))
    torch.testing.assert_close(run(flat, x), x)
    noisy = run(MRAppearance(bias=(0, 0), sigma=(0.05, 0.05)), x)
    air = noisy[:, :, :8, :8]
    assert (air >= 0).all()                                   # magnitude image: Rician, not Gaussian
    assert abs(air.mean().item() - 0.05 * (torch.pi / 2) ** 0.5) < 0.01
    biased = run(MRAppearance(bias=(0.8, 0.8), sigma=(0, 0)), x)[:, :, 16:48, 16:48]
    assert biased.flatten(1).std(1).min() > 0.05             # a smooth gain over the object


def test_ct_appearance_flattens_air_and_adds_noise():
    x = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(2, 1, 64, 64).clone()
    out = run(CTAppearance(floor=(0.2, 0.2), sigma=(0, 0)), x)
    assert (out[x < 0.19] == 0).all()
    torch.testing.assert_close(out[x > 0.21], x[x > 0.21])
    noisy = run(CTAppearance(floor=(0, 0), sigma=(0.02, 0.02)), x)
    assert 0.01 < (noisy - x).std().item() < 0.03


@pytest.mark.parametrize("family,other", [("ct", "MRI"), ("mri", "CT")])
def test_dictionaries_name_the_other_modality(family, other):
    entries = [e for e in load_confounder_entries(family) if e.group == "modality"]
    assert len(entries) >= 3
    for e in entries:
        assert other in e.description and "same anatomy" in e.description
        assert any(s.label_aware for s in e.simulators), e.where
        assert {s.name for s in e.simulators} & {"mr_appearance" if family == "ct" else "ct_appearance"}


@pytest.mark.parametrize("family,frame", [("ct", ChannelFrame("ct", 0.0, 120.0, -150.0, 250.0)),
                                          ("ct", ChannelFrame("unit")), ("mri", ChannelFrame("unit"))])
def test_sampler_draws_modality_views_in_either_frame(family, frame):
    entries = load_confounder_entries(family)
    modality = [i for i, e in enumerate(entries) if e.group == "modality"]
    sampler = CounterfactualSampler(entries, IntensityFrame([frame]), 2, 1, skip_unsupported=True)
    hu, seg = ct_like(batch=6)
    x = (hu - hu.mean()) / hu.std()
    out = sampler.apply(x, seg, [[i] for i in modality] + [[] for _ in range(6 - len(modality))],
                        torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[:len(modality)], x[:len(modality)])
    torch.testing.assert_close(out[len(modality):], x[len(modality):])


def test_modality_kind_is_drawn_only_on_a_declared_dataset():
    """The ``[modality]`` kind of the shipped CT dictionary: skipped (with the reason) on an in-modality
    dataset, drawable once the dataset is declared cross-modality."""
    from nnunet_causal.confounders.counterfactual import CounterfactualSampler
    from nnunet_causal.confounders.dictionary import confounder_entries_for_dataset
    from nnunet_causal.confounders.frames import ChannelFrame, IntensityFrame
    from nnunet_causal.data.cross_modality import declare_cross_modality
    from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import excluded_kinds

    plain = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}, "imaging_family": "ct"}
    declared = declare_cross_modality(plain)
    frame = IntensityFrame([ChannelFrame("unit")])
    entries = confounder_entries_for_dataset(plain)
    modality = [i for i, e in enumerate(entries) if e.group == "modality"]
    assert modality
    off = CounterfactualSampler(entries, frame, 2, 1, skip_unsupported=True, excluded_kinds=excluded_kinds(plain))
    on = CounterfactualSampler(entries, frame, 2, 1, skip_unsupported=True, excluded_kinds=excluded_kinds(declared))
    assert not set(modality) & set(off.active)
    assert sum("kind [modality]" in s for s in off.skipped) == len(modality)
    assert set(modality) <= set(on.active)


def test_declared_dataset_recipe_draws_views_of_the_modality_kind_alone():
    """The cross-modality recipe (dataset.json after ``declare_cross_modality``): about 35 % of the samples
    get a view, each view is exactly one ``[modality]`` entry, no in-modality kind is ever drawn; the recipe
    asks for GIN/IPA views on 25 % of the samples."""
    from nnunet_causal.confounders.counterfactual import CounterfactualSampler
    from nnunet_causal.confounders.dictionary import confounder_entries_for_dataset, recipe_for_dataset
    from nnunet_causal.confounders.frames import ChannelFrame, IntensityFrame
    from nnunet_causal.data.cross_modality import declare_cross_modality
    from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import excluded_kinds

    for family, channel in (("ct", "CT"), ("mri", "T1")):
        declared = declare_cross_modality({"channel_names": {"0": channel}, "labels": {"background": 0, "liver": 1},
                                           "imaging_family": family})
        entries = confounder_entries_for_dataset(declared)
        r = recipe_for_dataset(declared)
        assert (r.kinds, r.probability, r.max_kinds) == ("modality", 0.35, 1)
        assert (r.image_intervention, r.intervention_probability) == ("gin_ipa", 0.25)
        excluded = excluded_kinds(declared, r.kinds, [e.group for e in entries], r.where["kinds"])
        sampler = CounterfactualSampler(entries, IntensityFrame([ChannelFrame("unit")]), 2, 1,
                                        r.probability, r.group_probability, r.max_kinds, skip_unsupported=True,
                                        label_aware_probability=r.label_aware_probability, excluded_kinds=excluded)
        modality = {i for i, e in enumerate(entries) if e.group == "modality"}
        assert set(sampler.active) == modality
        assert any('dataset.json "counterfactual_recipe": kinds = modality' in s for s in sampler.skipped)
        drawn = sampler.draw(2000, torch.Generator().manual_seed(0))
        views = [d for d in drawn if d]
        assert all(len(d) == 1 and d[0] in modality for d in views)
        assert abs(len(views) / len(drawn) - 0.35) < 0.03
        # the same recipe on an undeclared dataset leaves nothing to draw: no silent factual training
        plain = {"channel_names": {"0": channel}, "imaging_family": family}
        none_left = CounterfactualSampler(entries, IntensityFrame([ChannelFrame("unit")]), 2, 1, 0.8, 0.0, 1,
                                          skip_unsupported=True,
                                          excluded_kinds=excluded_kinds(plain, "modality", [e.group for e in entries]))
        assert not none_left.groups
