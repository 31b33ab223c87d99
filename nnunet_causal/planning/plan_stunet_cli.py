"""``nnunet_causal plan-stunet``: write STU-Net plans beside nnU-Net's own."""
from __future__ import annotations

from nnunet_causal.planning.stunet_plans import write_stunet_plans


def run_plan_stunet(args) -> int:
    path = write_stunet_plans(args.dataset, args.size, args.pl, fit_patch_size=args.fit_patch_size)
    print(f"wrote {path}\ntrain with: nnUNetv2_train {args.dataset} CONFIG FOLD -tr nnUNetTrainerText "
          f"-p {path.stem}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "plan-stunet", help="write nnUNetPlans_STUNet{S,B,L,H}.json (same preprocessed data)",
        description="Copy a dataset's nnU-Net plans with the architecture replaced by STU-Net of the given size, "
                    "in STU-Net's own topology (6 stages, 3x3x3 kernels, the plan's first 5 strides padded "
                    "with 1), so released STU-Net checkpoints fit. No re-preprocessing: every configuration "
                    "keeps its data identifier.",
        epilog="Example: nnunet_causal plan-stunet -d 1 -s B && nnUNetv2_train 1 3d_fullres 0 "
               "-tr nnUNetTrainerText -p nnUNetPlans_STUNetB")
    p.add_argument("-d", dest="dataset", required=True, help="dataset name or id")
    p.add_argument("-s", dest="size", required=True, choices=("S", "B", "L", "H"), help="STU-Net size")
    p.add_argument("-pl", default="nnUNetPlans", help="source plans identifier (default nnUNetPlans)")
    p.add_argument("--fit-patch-size", action="store_true",
                   help="round a patch size that is not divisible by the product of STU-Net's strides down to "
                        "the nearest multiple (default: stop with an error)")
    p.set_defaults(func=run_plan_stunet)
