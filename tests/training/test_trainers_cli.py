"""``nnunet_causal trainers``: one line per trainer by family, the recommendation per imaging family marked."""
import pytest

from nnunet_causal.cli import main
from nnunet_causal.training.catalogue import DEPRECATED, ENTRIES, RECOMMENDED, trainer_names


def test_lists_every_source_trainer_once_and_marks_the_recommended_one(capsys):
    assert main(["trainers"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for e in ENTRIES:
        own = [ln for ln in lines if ln.split() and ln.split()[0] == e.name]
        assert len(own) == 1 and e.change in own[0], e.name
    marked = [ln for ln in lines if "[recommended:" in ln]
    assert len(marked) == 1 and marked[0].split()[0] == "nnUNetTrainerCausalText"
    assert all(f"{fam}: " in out or f"  {fam} " in out for fam in RECOMMENDED)
    assert "_CPUDemo" in out and "12 epochs x 25 iterations (300 steps)" in out
    assert f"{len(DEPRECATED)} deprecated names" in out


def test_names_family_and_deprecated(capsys):
    assert main(["trainers", "--names"]) == 0
    assert capsys.readouterr().out.split() == list(trainer_names())
    assert main(["trainers", "--names", "--family", "gin"]) == 0
    gin = capsys.readouterr().out.split()
    assert "nnUNetTrainerGINIPA_CPUDemo" in gin and not [n for n in gin if "Text" in n]
    assert main(["trainers", "--deprecated"]) == 0
    out = capsys.readouterr().out
    assert "nnUNetTrainerCausalText_CueBreakingFactual50  ->  the endoscopy dictionary's recipe is this one" in out
    assert main(["trainers", "--family", "nope"]) == 2
    assert "unknown trainer family 'nope'" in capsys.readouterr().err
