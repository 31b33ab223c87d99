"""``nnunet_causal evaluate``: Dice and HD95 per case, structure and domain."""
from __future__ import annotations

from nnunet_causal.evaluation.evaluate_folder import evaluate_folders, markdown_table


def run_evaluate(args) -> int:
    result = evaluate_folders(args.ref_folder, args.pred_folder, args.djfile, args.o, args.json, args.np)
    print(markdown_table(result["summary"]))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="Dice and HD95 (mm) per case, structure and domain",
        description="Compare a folder of predictions with references (argument order of "
                    "nnUNetv2_evaluate_folder). Writes CSV, JSON and a Markdown table; domains come from "
                    "dataset.json 'domains'.",
        epilog="Example: nnunet_causal evaluate $nnUNet_raw/Dataset990_X/labelsTs pred/ -djfile "
               "$nnUNet_raw/Dataset990_X/dataset.json --json metrics.json")
    p.add_argument("ref_folder")
    p.add_argument("pred_folder")
    p.add_argument("-djfile", required=True, help="dataset.json (labels, file ending, domains)")
    p.add_argument("-o", default=None, help="output prefix (default PRED_FOLDER/evaluation)")
    p.add_argument("--json", default=None, help="also write {records, summary} JSON here")
    p.add_argument("-np", type=int, default=2, help="processes (default 2)")
    p.set_defaults(func=run_evaluate)
