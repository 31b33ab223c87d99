"""The ``nnunet_causal`` command: thin argparse layer over plain functions.

Sub-commands are registered by their modules (``add_parser(subparsers)``); errors raised on purpose
(:class:`nnunet_causal.errors.NnunetCausalError`) become a one-line message and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional

from nnunet_causal.errors import NnunetCausalError

# module path of each sub-command (imported lazily so that `nnunet_causal env` stays instant)
SUBCOMMAND_MODULES = (
    "nnunet_causal.env_cli",
    "nnunet_causal.text.resolve_cli",
    "nnunet_causal.synthetic.synth_cli",
    "nnunet_causal.data.splits_cli",
    "nnunet_causal.data.cross_modality_cli",
    "nnunet_causal.planning.plan_stunet_cli",
    "nnunet_causal.evaluation.evaluate_cli",
    "nnunet_causal.study.study_cli",
    "nnunet_causal.audit.audit_cli",
    "nnunet_causal.confounders.simulators_cli",
    "nnunet_causal.training.trainers_cli",
    "nnunet_causal.mgcl.pretrain_cli",
    "nnunet_causal.benchmarking.perf",
    "nnunet_causal.intervention.commands.parse_command_cli",
    "nnunet_causal.demo",
    "nnunet_causal.intervention.modulation.train_tci", "nnunet_causal.intervention.modulation.intervene_cli",
    "nnunet_causal.viewer.serve_cli",
    "dataset_conversion.cli",  # the top floor: the only place that joins the two packages
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet_causal",
        description="Text-prompted, confounder-robust segmentation for nnU-Net v2. Training and prediction use "
                    "nnU-Net's own commands (nnUNetv2_train ... -tr nnUNetTrainerText); this command holds "
                    "the extras.",
        epilog="Example: eval \"$(nnunet_causal env)\"; nnunet_causal resolve \"renal organs\"")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        result = args.func(args)
    except NnunetCausalError as e:
        print(f"nnunet_causal {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
