"""The trainer catalogue: every name nnU-Net's lookup can find, every source class listed, schedules defined once,
every former name still served (and one trained for a step and predicted with under it)."""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import pkgutil
import re
from pathlib import Path

import pytest

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

import nnunet_causal.training
from nnunet_causal.training.catalogue import DEPRECATED, ENTRIES, EXTERNAL, RECOMMENDED, TRAINERS, trainer_names
from nnunet_causal.training.schedules import SCHEDULES

#: every name the ext shim served before the catalogue (python -c over nnunet_causal/ext); prediction of a model
#: trained under one of them looks its class up by this name
FORMER_NAMES = """
nnUNetTrainerCausalText nnUNetTrainerCausalText_100epochs nnUNetTrainerCausalText_10epochs
nnUNetTrainerCausalText_1epoch nnUNetTrainerCausalText_20epochs nnUNetTrainerCausalText_250epochs
nnUNetTrainerCausalText_2epochs nnUNetTrainerCausalText_500epochs nnUNetTrainerCausalText_50epochs
nnUNetTrainerCausalText_5epochs nnUNetTrainerCausalText_AlwaysIntervene nnUNetTrainerCausalText_CPU2000steps
nnUNetTrainerCausalText_CPUDemo nnUNetTrainerCausalText_CPULong nnUNetTrainerCausalText_CueBreaking
nnUNetTrainerCausalText_CueBreakingFactual nnUNetTrainerCausalText_CueBreakingFactual40
nnUNetTrainerCausalText_CueBreakingFactual40_CPU5000steps nnUNetTrainerCausalText_CueBreakingFactual50
nnUNetTrainerCausalText_CueBreakingFactual50_CPU5000steps nnUNetTrainerCausalText_CueBreakingFactual_CPU2000steps
nnUNetTrainerCausalText_CueBreakingFactual_CPU5000steps nnUNetTrainerCausalText_CueBreakingNoGIN
nnUNetTrainerCausalText_CueBreakingNoGIN_CPU2000steps nnUNetTrainerCausalText_CueBreakingNoGIN_CPU5000steps
nnUNetTrainerCausalText_CueBreakingPaired nnUNetTrainerCausalText_CueBreakingPaired_CPU2000steps
nnUNetTrainerCausalText_CueBreaking_CPU2000steps nnUNetTrainerCausalText_CueBreaking_CPU4000steps
nnUNetTrainerCausalText_CueBreaking_CPU5000steps nnUNetTrainerCausalText_CueBreaking_CPULong
nnUNetTrainerCausalText_FrozenEncoder nnUNetTrainerCausalText_GINOnly nnUNetTrainerCausalText_NoBottleneck
nnUNetTrainerCausalText_NoCausalLoss nnUNetTrainerCausalText_NoCounterfactual
nnUNetTrainerCausalText_NoCounterfactual_CPULong nnUNetTrainerCausalText_NoImageIntervention
nnUNetTrainerCausalText_NoImageIntervention_CPUDemo nnUNetTrainerCausalText_NoLAD nnUNetTrainerCausalText_NoMTRS
nnUNetTrainerCausalText_NoPresence nnUNetTrainerCounterfactual nnUNetTrainerCounterfactual_100epochs
nnUNetTrainerCounterfactual_10epochs nnUNetTrainerCounterfactual_1epoch nnUNetTrainerCounterfactual_20epochs
nnUNetTrainerCounterfactual_250epochs nnUNetTrainerCounterfactual_500epochs nnUNetTrainerCounterfactual_50epochs
nnUNetTrainerCounterfactual_5epochs nnUNetTrainerCounterfactual_CPU2000steps nnUNetTrainerCounterfactual_CPUDemo
nnUNetTrainerCounterfactual_CPULong nnUNetTrainerGIN nnUNetTrainerGINIPA nnUNetTrainerGINIPA_100epochs
nnUNetTrainerGINIPA_10epochs nnUNetTrainerGINIPA_1epoch nnUNetTrainerGINIPA_20epochs nnUNetTrainerGINIPA_250epochs
nnUNetTrainerGINIPA_2epochs nnUNetTrainerGINIPA_500epochs nnUNetTrainerGINIPA_50epochs nnUNetTrainerGINIPA_5epochs
nnUNetTrainerGINIPA_AlwaysIntervene nnUNetTrainerGINIPA_CPUDemo nnUNetTrainerGINIPA_CPULong
nnUNetTrainerGIN_100epochs nnUNetTrainerGIN_10epochs nnUNetTrainerGIN_1epoch nnUNetTrainerGIN_20epochs
nnUNetTrainerGIN_250epochs nnUNetTrainerGIN_2epochs nnUNetTrainerGIN_500epochs nnUNetTrainerGIN_50epochs
nnUNetTrainerGIN_5epochs nnUNetTrainerGIN_AlwaysIntervene nnUNetTrainerGIN_CPUDemo nnUNetTrainerGIN_CPULong
nnUNetTrainerText nnUNetTrainerTextPresence nnUNetTrainerTextPresence_CPUDemo nnUNetTrainerTextPresence_CPULong
nnUNetTrainerText_100epochs nnUNetTrainerText_10epochs nnUNetTrainerText_1epoch nnUNetTrainerText_20epochs
nnUNetTrainerText_250epochs nnUNetTrainerText_2epochs nnUNetTrainerText_500epochs nnUNetTrainerText_50epochs
nnUNetTrainerText_5epochs nnUNetTrainerText_CPU2000steps nnUNetTrainerText_CPU5000steps nnUNetTrainerText_CPUDemo
nnUNetTrainerText_CPULong nnUNetTrainerText_CrossAttentionConnector nnUNetTrainerText_FrozenEncoders
nnUNetTrainerText_NoPresence nnUNetTrainer_CPU2000steps nnUNetTrainer_CPU4000steps nnUNetTrainer_CPU5000steps
nnUNetTrainer_CPUDemo nnUNetTrainer_CPULong
""".split()


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _source_trainer_classes():
    """Every nnUNetTrainer subclass written in the package's training modules and the MGCL trainer module."""
    modules = [m.name for m in pkgutil.walk_packages(nnunet_causal.training.__path__, "nnunet_causal.training.")]
    found = {}
    for name in modules + list(set(EXTERNAL.values())):
        if name == "nnunet_causal.training.catalogue":
            continue
        for obj in vars(importlib.import_module(name)).values():
            if isinstance(obj, type) and issubclass(obj, nnUNetTrainer) and obj.__module__ == name:
                found[obj.__name__] = obj
    return found


def _nnunet_own_trainer_names():
    import nnunetv2.training.nnUNetTrainer as tree

    names = set()
    for m in pkgutil.walk_packages(tree.__path__, tree.__name__ + "."):
        try:
            mod = importlib.import_module(m.name)
        except ImportError:  # optional dependencies of some nnU-Net variants
            continue
        names |= {k for k, v in vars(mod).items() if isinstance(v, type) and issubclass(v, nnUNetTrainer)}
    return names


def test_every_former_name_is_still_served():
    assert len(FORMER_NAMES) == len(set(FORMER_NAMES)) == 105
    assert set(FORMER_NAMES) <= set(trainer_names())


def test_every_source_class_is_listed_once_and_none_is_a_schedule_combination():
    source = _source_trainer_classes()
    listed = {e.name for e in ENTRIES} | set(DEPRECATED)
    assert set(source) <= listed, f"not in the catalogue: {set(source) - listed}"
    assert len({e.name for e in ENTRIES}) == len(ENTRIES)
    suffixes = tuple(f"_{s.suffix}" for s in SCHEDULES)
    assert not [n for n in source if n.endswith(suffixes)], "schedules are generated, not written"
    assert all(e.change and e.family for e in ENTRIES)


def test_schedules_apply_to_every_trainer_and_are_defined_once():
    for e in ENTRIES:
        if e.cls is None or e.cls is nnUNetTrainer:
            continue
        for s in SCHEDULES:
            cls = TRAINERS[f"{e.name}_{s.suffix}"]
            assert issubclass(cls, e.cls) and cls.schedule is s
    # stock nnUNetTrainer: nnU-Net's own nnUNetTrainer_Xepochs stay nnU-Net's
    assert "nnUNetTrainer_5epochs" not in TRAINERS and "nnUNetTrainer_2epochs" in TRAINERS
    demo = TRAINERS["nnUNetTrainerCausalText_CPUDemo"].schedule
    assert (demo.epochs, demo.iterations, demo.val_iterations) == (12, 25, 5)
    assert TRAINERS["nnUNetTrainerCausalText_CueBreakingFactual50_CPU5000steps"].schedule.steps == 5000


def test_deprecated_names_are_thin_aliases_that_say_what_to_use():
    assert "nnUNetTrainerCausalText_CueBreakingFactual50" in DEPRECATED
    for name in DEPRECATED:
        cls = TRAINERS[name]
        assert "eprecated" in (cls.__doc__ or ""), name
    alias = TRAINERS["nnUNetTrainerCausalText_CueBreakingFactual50_CPU5000steps"]
    assert issubclass(alias, TRAINERS["nnUNetTrainerCausalText"]) and "counterfactual_recipe" in alias.use_instead
    assert set(RECOMMENDED) == {"endoscopy", "ct", "mri"}
    assert all(RECOMMENDED[f][0] in TRAINERS and RECOMMENDED[f][0] not in DEPRECATED for f in RECOMMENDED)


def test_every_listed_name_resolves_through_nnunets_lookup(monkeypatch):
    """nnU-Net's own tree does not shadow any name, and the ext folder serves each one (nnU-Net's lookup of
    ``nnUNet_extTrainer`` paths, with its import clean-up between lookups)."""
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_causal.env_cli import ext_trainer_folder

    ext = str(ext_trainer_folder())
    assert set(trainer_names()) & _nnunet_own_trainer_names() == {"nnUNetTrainer"}  # the stock entry: the same class
    wrong = []
    for name in trainer_names():
        cls = _quiet(recursive_find_python_class, ext, name, None, base_folder=ext,
                     cleanup_imports_from_base_folder=True)
        if cls is None or cls.__name__ != name:
            wrong.append(name)
    assert not wrong
    # the whole lookup, as nnUNetv2_train and the predictor call it, for the former recipe names and the MGCL one
    monkeypatch.setenv("nnUNet_extTrainer", ext)
    for name in [*DEPRECATED, *EXTERNAL]:
        assert _quiet(recursive_find_trainer_class_by_name, name).__name__ == name


# ---------------------------------------------------------------- a model trained under a former name
@pytest.mark.slow
def test_train_one_step_under_a_former_name_and_predict_under_it(nnunet_env, tmp_path, monkeypatch):
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    from tests.conftest import make_tiny_2d_dataset
    from tests.integration.test_stock_cli_text import run

    old = "nnUNetTrainerCausalText_CueBreakingFactual50_CPU5000steps"
    raw = make_tiny_2d_dataset(Path(nnunet_env["nnUNet_raw"]), n_train=6)
    dj = json.loads((raw / "dataset.json").read_text())
    del dj["domains"]                                   # the trainer says what it falls back to, once
    (raw / "dataset.json").write_text(json.dumps(dj))
    run(["nnUNetv2_plan_and_preprocess", "-d", "1", "-c", "2d", "-np", "1", "-npfp", "1"], nnunet_env)

    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated"):
        trainer = _quiet(get_trainer_from_args, "1", "2d", 0, old, device=torch.device("cpu"))
    assert trainer.num_epochs == 200 and trainer.counterfactual_probability == 0.5
    trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = 1, 1, 1
    _quiet(trainer.run_training)
    folder = Path(nnunet_env["nnUNet_results"]) / "Dataset001_Tiny2D" / f"{old}__nnUNetPlans__2d"
    assert (folder / "fold_0" / "checkpoint_final.pth").exists()
    log = "\n".join(f.read_text() for f in (folder / "fold_0").glob("training_log_*.txt"))
    assert f"WARNING: {old} is deprecated" in log
    assert re.search(rf"counterfactual recipe: probability=0.5, .*label_aware_probability=1.0.* \({old}'s own\)", log)
    assert log.count("no domain records in dataset.json") == 1 and "WARNING: no domain record for case" not in log

    out = tmp_path / "pred"
    run(["nnUNetv2_predict_text", "-i", str(raw / "imagesTs"), "-o", str(out), "-d", "1", "-c", "2d", "-f", "0",
         "-tr", old, "-device", "cpu", "-prompts", "lesion", "-npp", "1", "-nps", "1"], nnunet_env)
    assert sorted(p.name for p in out.glob("*.png")) == ["tiny_006.png", "tiny_007.png"]
