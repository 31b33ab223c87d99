"""Dictionary format: descriptions, simulator calls, kinds, and clear errors naming file and line."""
import pytest

from nnunet_causal.confounders.dictionary import (load_confounder_dictionary, load_confounder_entries, load_recipe,
                                                  recipe_for_dataset)
from nnunet_causal.confounders.recipe import RECIPE_KEYS, CounterfactualRecipe
from nnunet_causal.errors import DatasetError


@pytest.mark.parametrize("family", ["endoscopy", "ct", "mri"])
def test_shipped_dictionaries_simulate_almost_every_line(family):
    entries = load_confounder_entries(family)
    simulated = [e for e in entries if e.simulators]
    assert len(entries) >= 12 and len(simulated) >= len(entries) - 1
    assert len({e.group for e in entries}) >= 5          # kinds, not one group per line
    assert load_confounder_dictionary(family) == [e.description for e in entries]


def test_format_calls_ranges_and_groups(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("# comment\n"
                 "a loose line :: sensor_noise\n"
                 "[light]\n"
                 "a dark frame  ::  exposure(gain=0.5..0.7, gamma=1) + vignetting(strength=0.2..0.4)  # note\n"
                 "a frame described only\n"
                 "[lesion]\n"
                 "a lesion that looks different :: structure_colour(contrast=0.9..1.1)\n", encoding="utf-8")
    e = load_confounder_entries(str(f))
    assert [x.description for x in e] == ["a loose line", "a dark frame", "a frame described only",
                                          "a lesion that looks different"]
    assert e[0].group == "line 2" and e[1].group == e[2].group == "light" and e[3].group == "lesion"
    assert [s.name for s in e[1].simulators] == ["exposure", "vignetting"]
    assert e[1].simulators[0].ranges == {"gain": (0.5, 0.7), "gamma": (1.0, 1.0)}
    assert e[2].simulators == () and e[1].where.endswith("line 4")


@pytest.mark.parametrize("line, message", [
    ("a b :: no_such_sim", "line 2: unknown simulator 'no_such_sim'"),
    ("a b :: jpeg(quality=0..50)", "line 2: simulator 'jpeg': quality=0..50 lies outside the allowed 1..100"),
    ("a b :: jpeg(qual=20..50)", "line 2: unknown parameter"),
    ("a b :: jpeg(quality=60..50)", "lo > hi"),
    ("a b :: jpeg(quality=high)", "cannot read parameter 'quality=high'"),
    ("a b :: jpeg quality", "cannot read simulator call"),
    ("a b ::", "is followed by no simulator"),
    (":: jpeg", "no description before '::'"),
    ("[]", "empty group name"),
    ("a b :: jpeg @weight=0", "entry weight '0' must be a positive number"),
    ("a b :: jpeg @weight=many", "entry weight 'many' must be a positive number"),
    ("a b :: jpeg @ 3", "cannot read '@ 3' (expected a trailing @weight=w"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    f = tmp_path / "bad.txt"
    f.write_text(f"ok line :: sensor_noise\n{line}\n", encoding="utf-8")
    with pytest.raises(DatasetError) as e:
        load_confounder_entries(str(f))
    assert message in str(e.value) and str(f) in str(e.value)


def test_entry_weights_are_read_and_default_to_one(tmp_path):
    f = tmp_path / "w.txt"
    f.write_text("[lesion]\n"
                 "one :: structure_colour(contrast=0.9..1.1)\n"
                 "two :: structure_colour(contrast=1) + specular_highlights(count=2..4)  @weight=2.5  # joint\n"
                 "three, text only @weight=4\n", encoding="utf-8")
    e = load_confounder_entries(str(f))
    assert [(x.description, x.weight) for x in e] == [("one", 1.0), ("two", 2.5), ("three, text only", 4.0)]
    assert [s.name for s in e[1].simulators] == ["structure_colour", "specular_highlights"]


def test_not_utf8_and_missing(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("un cadre flou \xe9 :: defocus_blur\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_confounder_entries(str(f))
    with pytest.raises(DatasetError, match="does not exist"):
        load_confounder_entries(str(tmp_path / "nope.txt"))


# ---------------------------------------------------------------- recipe header
def test_shipped_headers_endoscopy_and_ct_hold_the_measured_recipes_mri_the_generic_one():
    endo = load_recipe("endoscopy")
    assert (endo.probability, endo.label_aware_probability, endo.weight_exponent) == (0.5, 1.0, 4.0)
    # every knob written out but the curriculum's start (unset: the same share in every epoch)
    assert set(endo.where) == set(RECIPE_KEYS) - {"probability_start"} and endo.probability_start is None
    assert all("endoscopy.txt, line " in w for w in endo.where.values())
    ct = load_recipe("ct")
    assert (ct.probability, ct.label_aware_probability, ct.group_probability) == (0.5, 1.0, 0.5)
    assert set(ct.where) == set(RECIPE_KEYS) - {"probability_start"}
    mri = load_recipe("mri")
    assert mri.values() == CounterfactualRecipe().values()     # the generic recipe, unchanged
    assert "label_aware_probability" not in mri.where          # "like any other kind" = left out


def _dictionary(tmp_path, header: str, body: str = "[light]\na dark frame :: exposure(gain=0.5..0.7)\n"
                "[lesion]\na lesion :: structure_colour(contrast=0.9..1.1)\n"):
    f = tmp_path / "mine.txt"
    f.write_text(header + body, encoding="utf-8")
    return f


def test_header_keys_defaults_and_dataset_override(tmp_path):
    f = _dictionary(tmp_path, "# mine\n@recipe probability = 0.25   # a comment\n@recipe\tmax_kinds=2\n")
    r = load_recipe(str(f))
    assert (r.probability, r.max_kinds, r.weight_exponent) == (0.25, 2, 1.0)
    assert r.where == {"probability": f"{f}, line 2", "max_kinds": f"{f}, line 3"}
    assert [e.description for e in load_confounder_entries(str(f))] == ["a dark frame", "a lesion"]
    dj = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "confounder_dictionary": str(f),
          "counterfactual_recipe": {"probability": 0.9, "image_intervention": "none"}}
    r2 = recipe_for_dataset(dj)
    assert (r2.probability, r2.max_kinds, r2.image_intervention) == (0.9, 2, "none")
    assert r2.where["probability"] == 'dataset.json "counterfactual_recipe"'
    assert recipe_for_dataset({"channel_names": {"0": "CT"}}) == load_recipe("ct")


@pytest.mark.parametrize("header, message", [
    ("@recipe colour = 3\n", "line 1: unknown recipe key 'colour'"),
    ("@recipe probability = 1.5\n", "line 1: recipe key 'probability' = 1.5 must lie in [0, 1]"),
    ("@recipe weight_exponent = -1\n", "line 1: recipe key 'weight_exponent' = -1 must be a finite number >= 0"),
    ("@recipe max_kinds = 0.5\n", "line 1: recipe key 'max_kinds' = 0.5 must be a whole number >= 1"),
    ("@recipe probability_start = 1.2\n", "line 1: recipe key 'probability_start' = 1.2 must lie in [0, 1]"),
    ("@recipe probability = half\n", "line 1: recipe key 'probability' needs a number, got 'half'"),
    ("@recipe probability = nan\n", "line 1: recipe key 'probability'"),
    ("@recipe image_intervention = blur\n", "must be one of gin_ipa, gin, none"),
    ("@recipe kinds = lighting,,sensor\n", "line 1: recipe key 'kinds' = lighting,,sensor must be 'all' or kind"),
    ("@recipe kinds = lighting\n", "line 1: kinds = lighting names 'lighting', not a kind of"),
    ("@recipe probability\n", "line 1: cannot read '@recipe probability'"),
    ("@recipes probability = 1\n", "line 1: cannot read"),
    ("@recipe probability = 1\n@recipe probability = 0.5\n", "line 2: recipe key 'probability' repeats"),
])
def test_bad_header_names_file_and_line(tmp_path, header, message):
    f = _dictionary(tmp_path, header)
    with pytest.raises(DatasetError) as e:
        load_recipe(str(f))
    assert message in str(e.value) and str(f) in str(e.value)


def test_recipe_line_after_the_first_entry_is_an_error(tmp_path):
    f = _dictionary(tmp_path, "", "a frame :: sensor_noise\n@recipe probability = 0.5\n")
    with pytest.raises(DatasetError, match="line 2: recipe lines belong to the header"):
        load_confounder_entries(str(f))


def test_recipe_that_cannot_draw_what_it_asks_for(tmp_path):
    f = _dictionary(tmp_path, "@recipe label_aware_probability = 1\n", "a dark frame :: exposure(gain=0.5..0.7)\n")
    with pytest.raises(DatasetError) as e:
        load_recipe(str(f))
    assert f"{f}, line 1: label_aware_probability = 1.0 asks for label-aware views" in str(e.value)
    g = _dictionary(tmp_path, "@recipe probability = 0.5\n", "a frame described only\n")
    with pytest.raises(DatasetError, match="line 1: probability = 0.5 asks for counterfactual views"):
        load_recipe(str(g))
    h = _dictionary(tmp_path, "@recipe probability = 0\n@recipe probability_start = 1\n", "a frame described only\n")
    with pytest.raises(DatasetError, match="line 2: probability_start = 1.0 asks for counterfactual views"):
        load_recipe(str(h))
    # the same through dataset.json: the override is named
    dj = {"channel_names": {"0": "R"}, "confounder_dictionary": str(_dictionary(tmp_path, "", "a :: sensor_noise\n")),
          "counterfactual_recipe": {"label_aware_probability": 0.5}}
    with pytest.raises(DatasetError, match='dataset.json "counterfactual_recipe": label_aware_probability = 0.5'):
        recipe_for_dataset(dj)
    with pytest.raises(DatasetError, match='dataset.json "counterfactual_recipe": unknown recipe key \'p\''):
        recipe_for_dataset({**dj, "counterfactual_recipe": {"p": 1}})
    with pytest.raises(DatasetError, match="must be an object of recipe keys"):
        recipe_for_dataset({**dj, "counterfactual_recipe": [0.5]})
