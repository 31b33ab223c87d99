"""``nnUNetv2_predict_text``: ``nnUNetv2_predict`` plus text prompts.

Per case it writes the label map (value i = i-th prompt, nnU-Net's file format), ``CASE.prompts.json``
(prompt -> label value, resolved terms, how it was segmented, voxel count, max probability, presence
decision: ``present`` true/false -- null when the model has no presence head -- with its score, threshold
and calibration; a prompt decided absent takes no voxel unless ``--keep_absent_masks``) and, with
``--save_binary``, ``CASE__<prompt>.<ending>`` with one independent binary mask per prompt (overlaps kept;
prompts whose file names would coincide, such as "left kidney" and "Left-Kidney", all get their label value
appended: ``CASE__left_kidney__1``, ``CASE__left_kidney__2``).

``--continue_prediction`` skips a case only when everything this run would write for it is there: the
label map, a sidecar listing the same prompts, the binary masks (``--save_binary``) and the probabilities
(``--save_probabilities``).
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from nnunet_causal.data.raw_dataset import atomic_path, write_json_atomic
from nnunet_causal.errors import NnunetCausalError, PromptError
from nnunet_causal.inference.model_folder import check_model_folder

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  nnUNetv2_predict_text -i imagesTs -o pred -d 1 -c 3d_fullres -f 0 -tr nnUNetTrainerText \\
      -prompts "liver" "renal organs" "spleen"
  nnUNetv2_predict_text -i imagesTs -o pred -d 1 -c 2d -f 0 -tr nnUNetTrainerText -prompt_file prompts.txt \\
      --save_binary -device cpu
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nnUNetv2_predict_text",
        description="Run an nnunet_causal text model (trained with -tr nnUNetTrainerText or a variant) on a "
                    "folder of images and segment the structures named by text prompts. Accepts every "
                    "nnUNetv2_predict flag.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", required=True, help="input folder (nnU-Net naming: CASE_0000.ext, ...)")
    p.add_argument("-o", required=True, help="output folder (created if missing)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("-d", help="dataset name or id (with -tr/-p/-c, as nnUNetv2_predict)")
    model.add_argument("-m", help="trained model folder (as nnUNetv2_predict_from_modelfolder)")
    p.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    p.add_argument("-tr", default="nnUNetTrainerText", help="trainer used for training (default nnUNetTrainerText)")
    p.add_argument("-c", help="configuration (required with -d)")
    p.add_argument("-f", nargs="+", default=["0", "1", "2", "3", "4"], help="folds (default 0 1 2 3 4)")
    p.add_argument("-step_size", type=float, default=0.5, help="sliding-window step (default 0.5)")
    p.add_argument("--disable_tta", action="store_true", help="no mirroring test-time augmentation")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--save_probabilities", action="store_true",
                   help="also write CASE.npz/.pkl (softmax over [background, prompts])")
    p.add_argument("--continue_prediction", "--c", action="store_true", help="skip cases already predicted")
    p.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint name (default checkpoint_final.pth)")
    p.add_argument("-npp", type=int, default=3, help="preprocessing processes (default 3)")
    p.add_argument("-nps", type=int, default=3, help="export processes (default 3)")
    p.add_argument("-prev_stage_predictions", default=None, help="previous stage predictions (cascade)")
    p.add_argument("-num_parts", type=int, default=1)
    p.add_argument("-part_id", type=int, default=0)
    p.add_argument("-device", default="cuda", choices=("cuda", "cpu", "mps"))
    p.add_argument("--disable_progress_bar", action="store_true")
    p.add_argument("--not_on_device", action="store_true")
    p.add_argument("-prompts", nargs="+", default=None, metavar="PROMPT",
                   help="prompts, one structure each; use 'a|b' for synonyms of one structure")
    p.add_argument("-prompt_file", default=None,
                   help="text file, one structure per line, '#' comments, synonyms separated by '|'")
    p.add_argument("--open_vocabulary", action="store_true",
                   help="segment prompts that name no known structure through their own text embedding "
                        "instead of stopping with an error")
    p.add_argument("--save_binary", action="store_true", help="write one binary mask per prompt and case")
    p.add_argument("--keep_absent_masks", action="store_true",
                   help="keep the voxels of prompts the presence head decides absent in the label map (the sidecar "
                        "still says present: false)")
    p.add_argument("--resample", default="auto", choices=("auto", "features", "logits"),
                   help="feature-space window: resample the embeddings or the logits (in chunks) to the original "
                        "spacing (default auto: embeddings when the resampling is linear and there are more prompts "
                        "than embedding channels)")
    return p


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()[:60].strip("_") or "prompt"


def binary_mask_suffixes(assignments: Sequence) -> Dict[int, str]:
    """``{label value: file-name part}`` of the binary masks, unique and deterministic.

    The part is the prompt's slug; prompts whose slugs coincide all get ``__<label value>`` appended (a slug
    never contains ``__``, so the result cannot collide with another prompt's plain slug).
    """
    counts = Counter(_slug(a.prompt) for a in assignments)
    return {a.label_value: _slug(a.prompt) + (f"__{a.label_value}" if counts[_slug(a.prompt)] > 1 else "")
            for a in assignments}


def case_is_finished(truncated: str, assignments: Sequence, ending: str, save_binary: bool,
                     save_probabilities: bool) -> bool:
    """Whether a run with these prompts and options already wrote every output of case ``truncated``."""
    files = [truncated + ending]
    if save_binary:
        files += [f"{truncated}__{s}{ending}" for s in binary_mask_suffixes(assignments).values()]
    if save_probabilities:
        files += [truncated + ".npz", truncated + ".pkl"]
    if not all(os.path.isfile(f) for f in files):
        return False
    try:
        with open(truncated + ".prompts.json", encoding="utf-8") as f:
            recorded = [r["prompt"] for r in json.load(f)["prompts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # missing or unreadable sidecar: the case was interrupted
    return recorded == [a.prompt for a in assignments]


def collect_prompts(prompts: Optional[List[str]], prompt_file: Optional[str]):
    from nnunet_causal.text.prompt_file import parse_prompts, read_prompt_file

    specs = []
    if prompt_file:
        specs.extend(read_prompt_file(prompt_file))
    if prompts:
        specs.extend(parse_prompts(prompts))
    if not specs:
        raise PromptError("give prompts with -prompts and/or -prompt_file")
    return specs


def write_case_outputs(predictor, output_folder: str, save_binary: bool, keep_probabilities: bool) -> int:
    """Sidecars (and binary masks) for every case predicted in this run; returns the number of cases."""
    from batchgenerators.utilities.file_and_folder_operations import load_pickle

    ending = predictor.dataset_json["file_ending"]
    rw = predictor.plans_manager.image_reader_writer_class()
    n = 0
    suffixes = binary_mask_suffixes(predictor.assignments)
    from nnunet_causal.inference.presence import unknown_record

    for truncated, peaks in predictor.case_max_probabilities.items():
        seg, _ = rw.read_seg(truncated + ending)
        records = []
        presence = getattr(predictor, "case_presence", {}).get(truncated) or \
            [unknown_record() for _ in predictor.assignments]
        for a, peak, pres in zip(predictor.assignments, peaks, presence):
            rec = {"prompt": a.prompt, "label_value": a.label_value, "terms": a.terms, "score": a.score,
                   "resolution": a.method, "source": a.source, "trained_structures": a.trained_structures,
                   "used_words": a.used_words, "ignored_words": a.ignored_words, "unknown_words": a.unknown_words,
                   "corrected": a.corrected, "resolution_message": a.resolution_message,
                   "voxel_count": int((seg == a.label_value).sum()), "max_probability": peak, **pres,
                   "mask_suppressed": pres["present"] is False and not getattr(predictor, "keep_absent_masks", False)}
            records.append(rec)
        binary = getattr(predictor, "case_binary", {}).get(truncated)
        if save_binary and binary:  # feature path: written during export
            for a, rec in zip(predictor.assignments, records):
                rec["binary_mask"], rec["binary_voxel_count"] = binary[a.label_value]
        elif save_binary:
            probs = np.load(truncated + ".npz")["probabilities"]
            props = load_pickle(truncated + ".pkl")
            for a, rec in zip(predictor.assignments, records):
                mask = (probs[a.label_value] > probs[0]).astype(np.uint8)  # <=> sigmoid(l_k) > 0.5
                out = f"{truncated}__{suffixes[a.label_value]}{ending}"
                with atomic_path(out) as tmp:
                    rw.write_seg(mask, tmp, props)
                rec["binary_mask"] = os.path.basename(out)
                rec["binary_voxel_count"] = int(mask.sum())
            if not keep_probabilities:
                os.remove(truncated + ".npz")
                os.remove(truncated + ".pkl")
        write_json_atomic(truncated + ".prompts.json",
                          {"case": os.path.basename(truncated), "prompts": records})
        n += 1
    return n


def predict_text(args) -> int:
    """The whole command as a plain function (tests call it directly)."""
    from nnunetv2.utilities.file_path_utilities import get_output_folder
    from nnunet_causal.inference.text_predictor import nnUNetTextPredictor

    if not os.path.isdir(args.i):
        raise NnunetCausalError(f"input folder {args.i} does not exist")
    specs = collect_prompts(args.prompts, args.prompt_file)
    if args.m:
        model_folder = args.m
    else:
        if not args.c:
            raise NnunetCausalError("-c CONFIGURATION is required with -d")
        model_folder = get_output_folder(args.d, args.tr, args.p, args.c)
    bad = [f for f in args.f if f != "all" and not f.isdigit()]
    if bad:
        raise NnunetCausalError(f"-f: folds are numbers or 'all', got {' '.join(bad)}")
    folds = [f if f == "all" else int(f) for f in args.f]
    check_model_folder(model_folder, folds, args.chk)
    device = torch.device(args.device)
    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    predictor = nnUNetTextPredictor(tile_step_size=args.step_size, use_gaussian=True,
                                    use_mirroring=not args.disable_tta,
                                    perform_everything_on_device=not args.not_on_device, device=device,
                                    verbose=args.verbose, allow_tqdm=not args.disable_progress_bar,
                                    verbose_preprocessing=args.verbose)
    predictor.initialize_from_trained_model_folder(model_folder, folds, args.chk)
    assignments = predictor.set_prompts(specs, open_vocabulary=args.open_vocabulary)
    predictor.keep_absent_masks = args.keep_absent_masks
    predictor.resample_mode = args.resample
    feature_path = predictor.uses_feature_window()
    if args.save_binary and feature_path:
        predictor.binary_mask_suffixes = binary_mask_suffixes(assignments)
    if not predictor.has_presence_head():
        logger.info("this model has no presence head: every prompt's presence is reported as unknown")
    for a in assignments:
        logger.info("prompt %d '%s' -> %s (%s, %s)", a.label_value, a.prompt, a.trained_structures or a.terms or "-",
                    a.method, a.source)
    Path(args.o).mkdir(parents=True, exist_ok=True)
    predictor.case_is_finished = functools.partial(
        case_is_finished, assignments=assignments, ending=predictor.dataset_json["file_ending"],
        save_binary=args.save_binary, save_probabilities=args.save_probabilities)
    keep_npz = args.save_probabilities or (args.save_binary and not feature_path)
    predictor.predict_from_files(args.i, args.o, save_probabilities=keep_npz,
                                 overwrite=not args.continue_prediction, num_processes_preprocessing=args.npp,
                                 num_processes_segmentation_export=args.nps,
                                 folder_with_segs_from_prev_stage=args.prev_stage_predictions,
                                 num_parts=args.num_parts, part_id=args.part_id)
    n = write_case_outputs(predictor, args.o, args.save_binary, args.save_probabilities)
    logger.info("wrote %d case(s) to %s", n, args.o)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return predict_text(args)
    except NnunetCausalError as e:
        print(f"nnUNetv2_predict_text: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
