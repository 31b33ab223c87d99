"""``nnunet_causal env``: print the shell lines that make nnU-Net find this package's trainers."""
from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

from packaging.version import Version

MIN_NNUNET = Version("2.8.0")
NNUNET_PATH_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def ext_trainer_folder() -> Path:
    """The shim folder that ``nnUNet_extTrainer`` must point at."""
    return Path(__file__).resolve().parent / "ext"


def environment_report() -> tuple[list[str], list[str]]:
    """``(shell lines, warnings)`` for the current interpreter and environment."""
    lines = [f"export nnUNet_extTrainer={ext_trainer_folder()}"]
    warnings = []
    try:
        version = Version(metadata.version("nnunetv2"))
        if version < MIN_NNUNET:
            warnings.append(f"nnunetv2 {version} is older than {MIN_NNUNET}: it ignores nnUNet_extTrainer; "
                            f"upgrade with `pip install -U 'nnunetv2>=2.8.1'`")
    except metadata.PackageNotFoundError:
        warnings.append("nnunetv2 is not installed in this environment")
    for var in NNUNET_PATH_VARIABLES:
        if not os.environ.get(var):
            warnings.append(f"{var} is not set: nnU-Net needs it (export {var}=/path/to/{var})")
    return lines, warnings


def run_env(args) -> int:
    lines, warnings = environment_report()
    for w in warnings:
        print(f"# warning: {w}", file=sys.stderr)
    print("\n".join(lines))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "env", help="print `export nnUNet_extTrainer=...` so nnU-Net finds the trainers",
        description="Print the environment line that lets unchanged nnU-Net commands find nnunet_causal's "
                    "trainers, and warn about an old nnunetv2 or unset nnU-Net path variables.",
        epilog="Example: eval \"$(nnunet_causal env)\" && nnUNetv2_train 1 2d 0 -tr nnUNetTrainerText")
    p.set_defaults(func=run_env)
