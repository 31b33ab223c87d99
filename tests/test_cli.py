"""The ``nnunet_causal`` command: env line, warnings, sub-commands, error exit codes."""
import pytest

from nnunet_causal.cli import build_parser, main
from nnunet_causal.env_cli import environment_report, ext_trainer_folder


def test_env_prints_the_ext_trainer_line_and_warns(monkeypatch, capsys):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(var, raising=False)
    assert main(["env"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"export nnUNet_extTrainer={ext_trainer_folder()}"
    assert "nnUNet_raw is not set" in out.err
    assert (ext_trainer_folder() / "nnunet_causal_trainers.py").exists()


def test_env_quiet_when_configured(monkeypatch, tmp_path):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(var, str(tmp_path))
    lines, warnings = environment_report()
    assert not warnings and lines[0].startswith("export nnUNet_extTrainer=")


def test_all_subcommands_registered():
    help_text = build_parser().format_help()
    for cmd in ("env", "resolve", "synth", "make-splits", "plan-stunet", "evaluate", "study", "benchmark", "demo",
                "convert"):
        assert cmd in help_text


def test_bad_input_exits_2(capsys, monkeypatch):
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    assert main(["plan-stunet", "-d", "1", "-s", "B"]) == 2
    assert "nnUNet_preprocessed is not set" in capsys.readouterr().err


def test_help_imports_no_sub_command_module_nor_torch():
    """``nnunet_causal --help`` lists every sub-command from the table alone (the package stays light)."""
    import subprocess
    import sys

    code = ("import sys\nfrom nnunet_causal.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'nnunetv2', 'numpy', 'nnunet_causal.viewer.serve_cli', "
            "'dataset_conversion.cli') if m in sys.modules)\nprint('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout and "intervene" in out.stdout and "convert" in out.stdout


def test_every_listed_sub_command_is_what_its_module_registers():
    import argparse
    import importlib

    from nnunet_causal.cli import SUBCOMMANDS

    for name, (module, help_text) in SUBCOMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).add_parser(sub)
        registered = {a.dest: a.help for a in sub._choices_actions}
        assert registered == {name: help_text}, module


def test_a_sub_command_runs_with_only_its_module_imported(capsys):
    assert main(["resolve", "renal organs"]) == 0
    assert "kidney" in capsys.readouterr().out
