"""``nnunet_causal convert NAME -i RAW_DOWNLOAD [-d ID]``: the converters behind one command.

This is the only module that joins ``nnunet_causal``'s command line and ``dataset_conversion``.
"""
from __future__ import annotations

import argparse
import importlib
import logging

from dataset_conversion import CONVERTER_MODULES

logger = logging.getLogger(__name__)


def _summary(module) -> str:
    return (module.__doc__ or "").strip().splitlines()[0]


def run_convert(args: argparse.Namespace) -> int:
    module = importlib.import_module(CONVERTER_MODULES[args.dataset])
    out = module.run(args)
    print(f"wrote {out}")
    print(f"next: nnUNetv2_plan_and_preprocess -d {args.dataset_id} --verify_dataset_integrity")
    return 0


def add_parser(subparsers) -> None:
    """Register ``convert`` with one sub-command per dataset."""
    modules = {name: importlib.import_module(path) for name, path in CONVERTER_MODULES.items()}
    listing = "\n".join(f"  {name:<20} {_summary(m)}" for name, m in modules.items())
    p = subparsers.add_parser(
        "convert", help="convert a public dataset download to nnU-Net raw format (with prompts and domains)",
        description="Convert a public dataset, exactly as its official download unpacks, to "
                    "$nnUNet_raw/DatasetXXX_Name with dataset.json prompts and a domain record per case.\n\n"
                    f"Datasets:\n{listing}\n\n'nnunet_causal convert NAME --help' says where to download NAME "
                    "and which layout it expects.",
        epilog="Example:\n  nnunet_causal convert kvasir -i ~/downloads/kvasir-seg -d 804\n"
               "  nnUNetv2_plan_and_preprocess -d 804 --verify_dataset_integrity",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="dataset", metavar="NAME")
    sub.required = True
    for name, module in modules.items():
        sp = sub.add_parser(name, help=_summary(module), formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sp)
        sp.set_defaults(func=run_convert)
