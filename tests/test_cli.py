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
