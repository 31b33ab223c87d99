"""Dictionary format: descriptions, simulator calls, kinds, and clear errors naming file and line."""
import pytest

from nnunet_causal.confounders.dictionary import load_confounder_dictionary, load_confounder_entries
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
