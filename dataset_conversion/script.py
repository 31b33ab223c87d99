"""Command-line pieces shared by the converters: the common ``-i/-d/-o`` options, the script entry point that
turns this package's errors into one message and exit code 2, and a progress bar over cases."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from nnunet_causal.errors import NnunetCausalError


def add_common_arguments(p: argparse.ArgumentParser, default_id: int, composite: bool = False) -> None:
    """``-i RAW_DOWNLOAD``, ``-d ID``, ``-o NNUNET_RAW`` shared by every converter.

    For a composite ``-i`` is optional (each source may be given with its own option) and names the folder
    holding the downloads.
    """
    if composite:
        p.add_argument("-i", dest="input", type=Path, default=None,
                       help="folder holding the unpacked downloads (found by folder name)")
    else:
        p.add_argument("-i", dest="input", required=True, type=Path, help="the unpacked download (see above)")
    p.add_argument("-d", dest="dataset_id", type=int, default=default_id,
                   help=f"nnU-Net dataset id of the output (default {default_id})")
    p.add_argument("-o", dest="raw_root", type=Path, default=None,
                   help="nnU-Net raw folder to write DatasetXXX_Name into (default: $nnUNet_raw)")


def script_main(build: Callable[[argparse.ArgumentParser], None], run: Callable[[argparse.Namespace], Path],
                argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point of ``python -m dataset_conversion.NAME``: parse, run, turn our errors into exit 2."""
    import sys

    p = argparse.ArgumentParser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter)
    build(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = run(args)
    except NnunetCausalError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def progress(items: Sequence, desc: str):
    """tqdm over ``items`` (quiet for fewer than 20 items, e.g. in tests)."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, disable=len(items) < 20, unit="case")
