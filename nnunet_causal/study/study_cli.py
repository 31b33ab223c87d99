"""``nnunet_causal study STUDY.yaml``: out-of-domain study (trainers x held-out domains x seeds), resumable."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_causal.study.config import BACKEND_KEYS, STATE_FILE, load_study
from nnunet_causal.study.runner import run_study


#: exit status after Ctrl-C (128 + SIGINT, as a shell reports a command stopped by it)
INTERRUPTED_EXIT = 130


def run_study_command(args) -> int:
    """Validate the study file, run (or, with --dry-run, plan) the study and print where the results are.
    Ctrl-C ends it with one line on stderr and :data:`INTERRUPTED_EXIT`."""
    config = load_study(args.study, output=args.output, backend=args.backend)
    try:
        result = run_study(config, dry_run=args.dry_run)
    except KeyboardInterrupt:
        print(f"nnunet_causal study: interrupted; run the same command again to continue (the runs in progress "
              f"are marked 'interrupted' in {config.output / STATE_FILE})", file=sys.stderr)
        return INTERRUPTED_EXIT
    if args.dry_run:
        print(f"{args.study}: valid; see the planned runs above (nothing was run)")
        return 0
    skipped = sum(1 for a in result.actions.values() if a == ["skipped"])
    print(f"{len(result.actions)} run(s), {skipped} already done and skipped")
    print((result.output / "table.md").read_text())
    print(f"report: {result.files['report']}")
    print(f"results: {result.files['results']}")
    return 0


def add_parser(subparsers) -> None:
    """Register ``study`` on an argparse sub-parser collection."""
    p = subparsers.add_parser(
        "study", help="run an out-of-domain study (trainers x held-out domains x seeds) and report it",
        description="Run every trainer of STUDY.yaml on every leave-one-domain-out fold and seed with the stock "
                    "nnUNetv2_train, score the held-out domain against labelsTr (Dice, HD95) and write "
                    "results.csv, table.md, bar charts, overlays and report.md into the study's output folder. "
                    "Re-running skips finished runs and continues interrupted ones (--c). The dataset must be "
                    "planned and preprocessed first. The runs go to the study's backend: this machine (local, "
                    "default), a SLURM cluster (submitit) or a Ray cluster. File format: see "
                    "nnunet_causal/study/__init__.py or examples/studies/.",
        epilog="Example:\n"
               "  nnunet_causal synth endoscopy2d -d 990 -n 30 --domains siteA siteB siteC siteD \\\n"
               "      --heldout siteD --spurious-cue specular --size 64 64\n"
               "  nnUNetv2_plan_and_preprocess -d 990 -c 2d\n"
               "  nnunet_causal study examples/studies/synthetic_endoscopy.yaml\n"
               "  nnunet_causal study examples/studies/synthetic_endoscopy.yaml --backend slurm --dry-run\n"
               "\n"
               "Exit status: 0 done, 2 bad input or failed runs, 130 interrupted (Ctrl-C; the same command\n"
               "continues the study).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", type=Path, help="study file (YAML)")
    p.add_argument("-o", "--output", default=None, help="output folder (overrides the study file's 'output')")
    p.add_argument("--backend", choices=tuple(BACKEND_KEYS), default=None,
                   help="where the runs execute, overriding the study file's 'backend' (that backend's "
                        "settings come from 'backend_settings', or from 'backend' when it names the same one)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the study file, dataset and trainers and list each run's next step and what the "
                        "backend would submit; run nothing")
    p.set_defaults(func=run_study_command)
