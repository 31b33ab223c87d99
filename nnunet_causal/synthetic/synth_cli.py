"""``nnunet_causal synth``: write a synthetic multi-domain dataset in nnU-Net v2 raw format.

The dataset is generated into a hidden temporary folder beside its destination and renamed into place at
the end, so an interrupted run leaves no half-written dataset under the final name.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

from nnunet_causal.data.raw_dataset import make_temp_dir
from nnunet_causal.errors import DatasetError

logger = logging.getLogger(__name__)

DEFAULT_NAMES = {"endoscopy2d": "SynthEndoscopy", "ct3d": "SynthCT"}
DEFAULT_DOMAINS = {"endoscopy2d": ("siteA", "siteB", "siteC"), "ct3d": ("scannerA", "scannerB", "scannerC")}


def output_folder(kind: str, dataset_id: int, output=None) -> Path:
    """``output`` if given, else ``$nnUNet_raw/DatasetXXX_SynthEndoscopy`` (or ``_SynthCT``)."""
    if output:
        return Path(output)
    raw = os.environ.get("nnUNet_raw")
    if not raw:
        raise DatasetError("the environment variable nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw "
                           "(or run eval \"$(nnunet_causal env)\"), or pass -o FOLDER")
    return Path(raw) / f"Dataset{dataset_id:03d}_{DEFAULT_NAMES[kind]}"


def _check_destination(out: Path, dataset_id: int, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise DatasetError(f"{out} already exists; pass --overwrite to replace it")
    prefix = f"Dataset{dataset_id:03d}_"
    if out.name.startswith(prefix) and out.parent.is_dir():
        clash = sorted(p.name for p in out.parent.iterdir() if p.is_dir() and p.name.startswith(prefix)
                       and p.name != out.name)
        if clash:
            raise DatasetError(f"{out.parent} already holds {', '.join(clash)} with dataset id {dataset_id}; nnU-Net "
                               f"could not tell the two apart: choose another -d")


def run_synth(args) -> int:
    """Generate the dataset described by the parsed arguments (see :func:`add_parser`)."""
    from nnunet_causal.synthetic.ct3d import make_ct_dataset
    from nnunet_causal.synthetic.endoscopy2d import make_endoscopy_dataset

    kind = args.kind
    if kind == "ct3d" and (args.heldout or args.spurious_cue):
        raise DatasetError("--heldout and --spurious-cue apply to endoscopy2d only")
    if args.size is not None and len(args.size) != (2 if kind == "endoscopy2d" else 3):
        raise DatasetError(f"--size takes {'2 numbers (H W)' if kind == 'endoscopy2d' else '3 numbers (Z Y X)'} "
                           f"for {kind}, got {args.size}")
    if args.n < 1:
        raise DatasetError(f"-n must be at least 1, got {args.n}")
    out = output_folder(kind, args.dataset_id, args.output).absolute()
    _check_destination(out, args.dataset_id, args.overwrite)
    domains = args.domains or list(DEFAULT_DOMAINS[kind])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, prefix=f".tmp_{out.name}_")  # umask's mode, not mkdtemp's 0700
    try:
        if kind == "endoscopy2d":
            make_endoscopy_dataset(tmp, args.n, domains, heldout_domain=args.heldout, spurious_cue=args.spurious_cue,
                                   image_size=tuple(args.size or (96, 96)), seed=args.seed,
                                   test_fraction=args.test_fraction, dataset_name=out.name, reports=args.reports)
        else:
            make_ct_dataset(tmp, args.n, domains, shape=tuple(args.size or (32, 48, 48)), seed=args.seed,
                            test_fraction=args.test_fraction, dataset_name=out.name, reports=args.reports)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {out} ({kind}, domains {', '.join(domains)}"
          f"{', held-out ' + ' '.join(args.heldout) if args.heldout else ''}"
          f"{', spurious cue ' + args.spurious_cue if args.spurious_cue else ''})")
    return 0


def add_parser(subparsers) -> None:
    """Register ``synth`` on an argparse sub-parser collection."""
    p = subparsers.add_parser(
        "synth", help="generate a synthetic multi-domain dataset (nnU-Net raw format)",
        description="Generate 2D RGB endoscopy-like frames (endoscopy2d) or 3D CT-like abdominal phantoms (ct3d) "
                    "from several sites / scanners, with prompts and one domain record per case in dataset.json. "
                    "Deterministic for a given --seed.",
        epilog="Examples:\n"
               "  nnunet_causal synth endoscopy2d -d 990 -n 30 --domains siteA siteB siteC siteD \\\n"
               "      --heldout siteD --spurious-cue specular --size 64 64\n"
               "  nnunet_causal synth ct3d -d 991 -n 6 --size 32 48 48 -o /data/nnUNet_raw/Dataset991_SynthCT",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("endoscopy2d", "ct3d"), help="2D colonoscopy frames or 3D CT phantoms")
    p.add_argument("-d", dest="dataset_id", type=int, required=True, help="dataset id (folder DatasetXXX_...)")
    p.add_argument("-n", type=int, default=24, help="cases per domain, test cases included (default 24)")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="fraction of each domain's cases written to imagesTs/labelsTs (default 0.2)")
    p.add_argument("--domains", nargs="+", help="domain names (sites or scanners); known names have preset styles "
                                                "(siteA-siteE, scannerA-scannerD), others get a style drawn from "
                                                "the name")
    p.add_argument("--heldout", nargs="+", default=None,
                   help="endoscopy2d: the domain(s) where the spurious cue is broken")
    p.add_argument("--spurious-cue", choices=("specular",), default=None,
                   help="endoscopy2d: highlights only on (redder) polyps in the source domains, everywhere in the "
                        "held-out domain")
    p.add_argument("--size", type=int, nargs="+",
                   help="endoscopy2d: H W pixels (default 96 96); ct3d: Z Y X voxels at 3 mm slices "
                        "(default 32 48 48)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("-o", "--output", default=None,
                   help="dataset folder to write (default $nnUNet_raw/DatasetXXX_SynthEndoscopy or _SynthCT)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.add_argument("--reports", action="store_true",
                   help="also write reports.jsonl, one radiology-style report per case written from its known "
                        "organ facts (for nnunet_causal pretrain-text); ct3d phantoms may then lack organs and "
                        "carry lesions")
    p.set_defaults(func=run_synth)
