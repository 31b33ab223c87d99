"""``nnunet_causal env``: the export line on stdout, and on stderr a warning for an nnunetv2 older than 2.8 or
missing and for each unset nnU-Net path variable."""
from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

from nnunet_causal import env_cli
from nnunet_causal.cli import main

PATH_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def installed_nnunetv2(monkeypatch, version):
    """Make the version lookup of ``env_cli`` answer ``version`` for nnunetv2 (None: not installed)."""
    asked = []

    def lookup(name):
        asked.append(name)
        if version is None:
            raise metadata.PackageNotFoundError(name)
        return version
    monkeypatch.setattr(env_cli, "metadata", SimpleNamespace(version=lookup,
                                                             PackageNotFoundError=metadata.PackageNotFoundError))
    return asked


@pytest.fixture
def paths_set(monkeypatch, tmp_path):
    for var in PATH_VARIABLES:
        monkeypatch.setenv(var, str(tmp_path / var))


def run_env(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr()
    assert out.out == f"export nnUNet_extTrainer={env_cli.ext_trainer_folder()}\n"   # stdout: only what eval runs
    return [line for line in out.err.splitlines() if line.startswith("# warning: ")]


@pytest.mark.parametrize("version", ["2.7.1", "2.5", "2.8.0rc1"])
def test_an_nnunetv2_older_than_2_8_is_named_with_the_upgrade_command(monkeypatch, capsys, paths_set, version):
    asked = installed_nnunetv2(monkeypatch, version)
    warnings = run_env(capsys)
    assert asked == ["nnunetv2"]
    assert warnings == [f"# warning: nnunetv2 {version} is older than 2.8.0: it ignores nnUNet_extTrainer; "
                        f"upgrade with `pip install -U 'nnunetv2>=2.8.1'`"]


@pytest.mark.parametrize("version", ["2.8.0", "2.8.1", "2.9"])
def test_no_warning_from_2_8_on(monkeypatch, capsys, paths_set, version):
    installed_nnunetv2(monkeypatch, version)
    assert run_env(capsys) == []


def test_a_missing_nnunetv2_is_said(monkeypatch, capsys, paths_set):
    installed_nnunetv2(monkeypatch, None)
    assert run_env(capsys) == ["# warning: nnunetv2 is not installed in this environment"]


@pytest.mark.parametrize("unset", [("nnUNet_raw",), ("nnUNet_preprocessed",), ("nnUNet_results",), PATH_VARIABLES])
def test_each_unset_path_variable_is_named_with_its_export_line(monkeypatch, capsys, paths_set, unset):
    installed_nnunetv2(monkeypatch, "2.8.1")
    for var in unset:
        if var == "nnUNet_results":
            monkeypatch.setenv(var, "")          # set but empty counts as unset
        else:
            monkeypatch.delenv(var)
    assert run_env(capsys) == [f"# warning: {var} is not set: nnU-Net needs it (export {var}=/path/to/{var})"
                               for var in unset]


def test_old_nnunetv2_and_unset_variables_are_all_reported(monkeypatch, capsys):
    installed_nnunetv2(monkeypatch, "2.6.0")
    for var in PATH_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    warnings = run_env(capsys)
    assert len(warnings) == 4 and "nnunetv2 2.6.0 is older than 2.8.0" in warnings[0]
    assert [w.split()[2] for w in warnings[1:]] == list(PATH_VARIABLES)


def test_the_installed_command_prints_a_line_the_shell_can_eval(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    command = Path(sys.executable).parent / "nnunet_causal"
    out = subprocess.run(["bash", "-c", f'eval "$("{command}" env 2>/dev/null)" && echo "$nnUNet_extTrainer"'],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(env_cli.ext_trainer_folder())
    assert (env_cli.ext_trainer_folder() / "nnunet_causal_trainers.py").is_file()
