"""Counterfactual sampler: kinds drawn per sample, labels untouched, working-space frames, support checks."""
import collections

import pytest
import torch

from nnunet_causal.confounders.counterfactual import CounterfactualSampler
from nnunet_causal.confounders.dictionary import load_confounder_entries
from nnunet_causal.confounders.frames import ChannelFrame, IntensityFrame
from nnunet_causal.errors import DatasetError

RGB = IntensityFrame([ChannelFrame("unit")] * 3)


def _batch(b=6, size=32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, 3, size, size, generator=g)
    seg = torch.zeros(b, 1, size, size, dtype=torch.long)
    seg[:, :, 10:20, 10:20] = 1
    return x, seg


def test_probability_zero_is_the_identity_and_one_changes_every_sample():
    entries = load_confounder_entries("endoscopy")
    x, seg = _batch()
    none = CounterfactualSampler(entries, RGB, 2, 3, probability=0.0)(x, seg)
    assert torch.equal(none.data, x) and none.descriptions == [[]] * 6
    every = CounterfactualSampler(entries, RGB, 2, 3, probability=1.0)(x, seg, torch.Generator().manual_seed(1))
    assert all(every.descriptions) and torch.equal(seg, _batch()[1])
    changed = (every.data - x).flatten(1).abs().amax(1)
    assert bool((changed > 1e-4).all())
    # the known style of a sample is exactly the descriptions of the entries drawn for it
    for d, texts in zip(every.drawn, every.descriptions):
        assert texts == [entries[i].description for i in d]


def test_one_entry_per_kind_and_kinds_drawn_evenly():
    entries = load_confounder_entries("endoscopy")
    s = CounterfactualSampler(entries, RGB, 2, 3, probability=1.0, group_probability=0.5, max_entries=4)
    drawn = s.draw(3000, torch.Generator().manual_seed(0))
    for d in drawn:
        groups = [entries[i].group for i in d]
        assert 1 <= len(d) <= 4 and len(groups) == len(set(groups))
    per_group = collections.Counter(entries[i].group for d in drawn for i in d)
    rates = [n / 3000 for n in per_group.values()]
    assert min(rates) > 0.3 and max(rates) < 0.6      # each kind near group_probability (cap trims a little)


def test_normalised_statistics_are_kept_and_ct_offsets_survive():
    x, seg = _batch()
    entries = [e for e in load_confounder_entries("endoscopy") if e.simulators and e.simulators[0].name == "highlight_removal"]
    out = CounterfactualSampler(entries, RGB, 2, 3, probability=1.0).apply(x, seg, [[0]] * 6)
    # a per-channel affine change disappears under nnU-Net's z-scoring; the patch keeps its mean and std
    torch.testing.assert_close(out.mean((2, 3)), x.mean((2, 3)), atol=1e-4, rtol=0)
    ct = IntensityFrame([ChannelFrame("ct", mean=50.0, std=100.0, lower=-1000.0, upper=1000.0)])
    hu = [e for e in load_confounder_entries("ct") if "Siemens" in e.description]
    y = torch.zeros(2, 1, 16, 16)
    s = CounterfactualSampler(hu, ct, 2, 1, probability=1.0)
    shifted = s.apply(y, None, [[0], [0]], torch.Generator().manual_seed(0))
    assert shifted.abs().mean() > 0.01                  # HU calibration is not undone by CT normalisation


def test_unsupported_simulators_error_or_are_skipped(tmp_path):
    ct = load_confounder_entries("ct")
    frame = IntensityFrame([ChannelFrame("ct", 0, 1)])
    with pytest.raises(DatasetError, match=r"ct.txt, line \d+: simulator 'slice_thickness' works on 3D data only"):
        CounterfactualSampler(ct, frame, 2, 1)
    s = CounterfactualSampler(ct, frame, 2, 1, skip_unsupported=True)
    assert len(s.skipped) == 1 and "slice_thickness" in s.skipped[0]
    with pytest.raises(DatasetError, match="needs 3 channel"):
        CounterfactualSampler(load_confounder_entries("endoscopy"), IntensityFrame([ChannelFrame("unit")]), 2, 1)


def test_label_aware_kinds_can_be_drawn_more_often():
    entries = load_confounder_entries("endoscopy")
    s = CounterfactualSampler(entries, RGB, 2, 3, probability=1.0, label_aware_probability=1.0)
    drawn = s.draw(500, torch.Generator().manual_seed(0))
    aware = [any(sim.label_aware for i in d for sim in entries[i].simulators) for d in drawn]
    assert all(aware)
    with pytest.raises(ValueError, match="label-aware probability"):
        CounterfactualSampler(entries, RGB, 2, 3, label_aware_probability=1.5)


def test_entry_weights_set_how_often_an_entry_of_its_kind_is_drawn(tmp_path):
    f = tmp_path / "w.txt"
    f.write_text("[look]\nplain :: exposure(gain=1.2)\nheavy :: sensor_noise @weight=3\n", encoding="utf-8")
    entries = load_confounder_entries(str(f))
    drawn = CounterfactualSampler(entries, RGB, 2, 3, probability=1.0).draw(2000, torch.Generator().manual_seed(0))
    heavy = sum(d == [1] for d in drawn) / len(drawn)
    assert all(len(d) == 1 for d in drawn) and 0.70 < heavy < 0.80      # 3 / (3 + 1)
    f.write_text("[look]\nplain :: exposure(gain=1.2)\nheavy :: sensor_noise\n", encoding="utf-8")
    drawn = CounterfactualSampler(load_confounder_entries(str(f)), RGB, 2, 3, probability=1.0).draw(
        2000, torch.Generator().manual_seed(0))
    assert 0.45 < sum(d == [1] for d in drawn) / len(drawn) < 0.55


def test_weight_exponent_sharpens_or_flattens_the_draw_within_a_kind(tmp_path):
    f = tmp_path / "w.txt"
    f.write_text("[look]\nplain :: exposure(gain=1.2)\nheavy :: sensor_noise @weight=3\n", encoding="utf-8")
    entries = load_confounder_entries(str(f))

    def heavy_share(exponent):
        s = CounterfactualSampler(entries, RGB, 2, 3, probability=1.0, weight_exponent=exponent)
        drawn = s.draw(2000, torch.Generator().manual_seed(0))
        return sum(d == [1] for d in drawn) / len(drawn)
    assert 0.45 < heavy_share(0.0) < 0.55              # uniform
    assert 0.95 < heavy_share(3.0) < 0.99              # 27 / 28
    with pytest.raises(ValueError, match="weight exponent"):
        CounterfactualSampler(entries, RGB, 2, 3, weight_exponent=-1.0)


def test_reflections_are_removed_before_a_structure_is_recoloured_and_painted_after(tmp_path):
    """A removal listed after a recolouring must still find the reflections (which the recolouring dims), and
    new reflections must stay saturated on a recoloured structure: simulators run in their order in a stage."""
    from tests.confounders.test_simulators import rgb_frame

    d = tmp_path / "d.txt"
    d.write_text("dim the lesion, then remove :: structure_colour(contrast=0.6..0.6) + highlight_removal\n"
                 "paint, then dim the lesion :: specular_highlights(count=30..30) + structure_colour(contrast=0.5..0.5)\n")
    entries = load_confounder_entries(str(d))
    s = CounterfactualSampler(entries, RGB, 2, 3)
    x, seg = rgb_frame(b=2)
    lesion = seg[:, 0] > 0

    def near_white(y, level):  # every channel within the top (1 - level) of its range in the image
        lo, hi = y.amin((2, 3), keepdim=True), y.amax((2, 3), keepdim=True)
        return ((y - lo) / (hi - lo) >= level).all(1)

    assert int((near_white(x, 0.97) & lesion).sum()) > 10
    def peak(y):  # how far the lesion's brightest pixel stands above its median brightness
        lum = y.mean(1)[lesion]
        return float(lum.max() - lum.median())

    removed = s.apply(x, seg, [[0], [0]], torch.Generator().manual_seed(0))
    # the lesion's two reflections are gone, not dimmed into pale blobs
    assert peak(removed) < 0.3 * peak(x)
    painted = s.apply(x, seg, [[1], [1]], torch.Generator().manual_seed(0))
    # new reflections stay the brightest pixels, also where they fall on the (dimmed) lesion
    assert int((near_white(painted, 0.97) & lesion).sum()) > 0
