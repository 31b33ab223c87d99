"""``nnunet_causal simulators``: the list it prints is the registry's, and ``--check`` shows a dictionary's lines."""
from __future__ import annotations

import pytest

from nnunet_causal.cli import main
from nnunet_causal.confounders.dictionary import load_confounder_entries
from nnunet_causal.confounders.registry import SIMULATORS


def test_lists_every_registered_simulator_once_with_its_dimensions_channels_and_bounds(capsys):
    assert main(["simulators"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert names == sorted(SIMULATORS)   # one line per simulator, nothing else
    for line in lines:
        words = line.split()
        cls = SIMULATORS[words[0]]
        assert words[1] == "/".join(f"{d}D" for d in cls.dims), line
        assert words[2:4] == ([str(cls.channels), "ch"] if cls.channels else ["any", "ch"]), line
        assert ("label-aware" in words) == bool(cls.label_aware), line
        for key, p in cls.params.items():
            assert f"{key}={p.default[0]:g}..{p.default[1]:g} (allowed {p.bounds[0]:g}..{p.bounds[1]:g})" in line


def test_known_simulators_are_listed_as_defined():
    """Two fixed rows, written out: a change of the listing format or of these definitions shows here."""
    from nnunet_causal.confounders.registry import describe_simulators

    rows = {line.split()[0]: " ".join(line.split()) for line in describe_simulators().splitlines()}
    assert rows["jpeg"] == "jpeg 2D 3 ch quality=20..70 (allowed 1..100)"
    assert rows["contrast_phase"] == "contrast_phase 2D/3D 1 ch label-aware offset=-60..60 (allowed -400..400)"


@pytest.mark.parametrize("family", ["endoscopy", "ct", "mri"])
def test_check_shows_each_line_of_a_family_dictionary(capsys, family):
    entries = load_confounder_entries(family)
    assert main(["simulators", "--check", family]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(entries) + 1
    for entry, line in zip(entries, lines):
        assert line.startswith(f"[{entry.group}] {entry.description}  ::  ")
        assert line.endswith("(text only)") == (not entry.simulators)
    with_simulator = sum(bool(e.simulators) for e in entries)
    assert lines[-1] == f"{family}: {len(entries)} entries, {with_simulator} with a simulator"


def test_check_of_a_user_file_and_its_errors(tmp_path, capsys):
    good = tmp_path / "mine.txt"
    good.write_text("a frame with text overlays\n[light]\na dark frame :: exposure(gain=0.5..0.8)\n")
    assert main(["simulators", "--check", str(good)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "[line 1] a frame with text overlays  ::  (text only)"   # no [kind]: its own group
    assert out[1].startswith("[light] a dark frame  ::  ") and "exposure" in out[1]
    assert out[2] == f"{good}: 2 entries, 1 with a simulator"

    bad = tmp_path / "bad.txt"
    bad.write_text("a dark frame :: no_such_simulator(x=1..2)\n")
    assert main(["simulators", "--check", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnunet_causal simulators: error: ") and str(bad) in err and "line 1" in err
    assert len(err.splitlines()) == 1

    assert main(["simulators", "--check", str(tmp_path / "missing.txt")]) == 2
    assert f"confounder dictionary {tmp_path / 'missing.txt'} does not exist" in capsys.readouterr().err
