"""The ``nnunet_causal`` command: thin argparse layer over plain functions.

Sub-commands are registered by their modules (``add_parser(subparsers)``), and a module is imported only
when its sub-command runs: ``nnunet_causal --help`` lists :data:`SUBCOMMANDS` without importing torch or
nnU-Net. Errors raised on purpose (:class:`nnunet_causal.errors.NnunetCausalError`) become a one-line message
and exit code 2.

Adding a sub-command: write ``add_parser(subparsers)`` in its module (``set_defaults(func=...)``) and add one
line below; ``tests/test_cli.py`` checks that every line matches what its module registers.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Dict, List, Optional, Tuple

from nnunet_causal.errors import NnunetCausalError

#: sub-command -> (module that registers it, one-line help shown by ``nnunet_causal --help``)
SUBCOMMANDS: Dict[str, Tuple[str, str]] = {
    "env": ("nnunet_causal.env_cli", "print `export nnUNet_extTrainer=...` so nnU-Net finds the trainers"),
    "trainers": ("nnunet_causal.training.trainers_cli",
                 "list the trainers (-tr names) by family, the recommended one marked"),
    "resolve": ("nnunet_causal.text.resolve_cli", "ground free-text prompts in the anatomical vocabulary"),
    "synth": ("nnunet_causal.synthetic.synth_cli", "generate a synthetic multi-domain dataset (nnU-Net raw format)"),
    "make-splits": ("nnunet_causal.data.splits_cli", "write splits_final.json with one fold per held-out domain"),
    "cross-modality": ("nnunet_causal.data.cross_modality_cli",
                       "declare a raw dataset for training on one modality and segmenting another"),
    "plan-stunet": ("nnunet_causal.planning.plan_stunet_cli",
                    "write nnUNetPlans_STUNet{S,B,L,H}.json (same preprocessed data)"),
    "evaluate": ("nnunet_causal.evaluation.evaluate_cli", "Dice and HD95 (mm) per case, structure and domain"),
    "study": ("nnunet_causal.study.study_cli",
              "run an out-of-domain study (trainers x held-out domains x seeds) and report it"),
    "audit": ("nnunet_causal.audit.audit_cli",
              "causal audit: how a model's prediction moves under do(z) for each dictionary confounder"),
    "simulators": ("nnunet_causal.confounders.simulators_cli",
                   "list the confounder simulators a dictionary line may name"),
    "pretrain-text": ("nnunet_causal.mgcl.pretrain_cli",
                      "MGCL: align a text encoder with a trained model's frozen image encoder"),
    "benchmark": ("nnunet_causal.benchmarking.perf",
                  "time/memory of the text and causal trainers and predictor against stock nnU-Net"),
    "parse-command": ("nnunet_causal.intervention.commands.parse_command_cli",
                      "turn a clinician's correction into structured edit actions (JSON)"),
    "demo": ("nnunet_causal.demo", "run the end-to-end CPU demo (about 10 minutes)"),
    "train-tci": ("nnunet_causal.intervention.modulation.train_tci",
                  "train the test-time intervention (FiLM) weights of a trained text model"),
    "intervene": ("nnunet_causal.intervention.modulation.intervene_cli",
                  "edit one case's segmentation with natural-language commands (test-time intervention)"),
    "serve": ("nnunet_causal.viewer.serve_cli",
              "local web viewer: prompts, test-time intervention commands, undo/redo, save"),
    # the top floor: the only place that joins the two packages
    "convert": ("dataset_conversion.cli",
                "convert a public dataset download to nnU-Net raw format (with prompts and domains)"),
}
#: the modules, in listing order (kept for callers that iterate over them)
SUBCOMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in SUBCOMMANDS.values()))


def _command_of(argv: List[str]) -> Optional[str]:
    """The sub-command named in ``argv`` (the first word that is one), else None."""
    for word in argv:
        if word in SUBCOMMANDS:
            return word
        if not word.startswith("-"):
            return None
    return None


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (every sub-command is listed either way)."""
    parser = argparse.ArgumentParser(
        prog="nnunet_causal",
        description="Text-prompted, confounder-robust segmentation for nnU-Net v2. Training and prediction use "
                    "nnU-Net's own commands (nnUNetv2_train ... -tr nnUNetTrainerCausalText, "
                    "nnUNetv2_predict_text); this command holds the extras.",
        epilog="Example: eval \"$(nnunet_causal env)\"; nnunet_causal resolve \"renal organs\"")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in SUBCOMMANDS.items():
        if name == command:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
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
