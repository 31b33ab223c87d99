"""``nnUNetv2_predict_text``: ``nnUNetv2_predict`` plus text prompts.

Per case it writes what :mod:`nnunet_causal.inference.case_outputs` defines: the label map (value i = i-th
prompt, nnU-Net's file format), ``CASE.prompts.json`` (per prompt: its grounding, presence decision and
score, voxel count, max probability, the label value holding its structure's voxels; a prompt decided absent
takes no voxel unless ``--keep_absent_masks``) and, with ``--save_binary``, ``CASE__<prompt><ending>``, one
binary mask per prompt (overlaps kept; prompts whose file names would coincide, such as "left kidney" and
"Left-Kidney", all get their label value appended: ``CASE__left_kidney__1``, ``CASE__left_kidney__2``).
Cases are preprocessed by nnU-Net in background processes and predicted and written one after the other.

``--continue_prediction`` skips a case only when everything this run would write for it is there: the
label map, a sidecar listing the same prompts, the binary masks (``--save_binary``) and the probabilities
(``--save_probabilities``).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from nnunet_causal.errors import DatasetError, NnunetCausalError, PromptError
from nnunet_causal.files import check_writable_folder
from nnunet_causal.inference import case_outputs
from nnunet_causal.inference.model_folder import ModelFolder, parse_fold

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
    p.add_argument("-i", required=True, help="input folder (nnU-Net naming: CASE_0000.ext, ...) or a folder of DICOM "
                                             "series")
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
    p.add_argument("--save_dicom", choices=("seg", "rtstruct", "both"), default=None,
                   help="with a folder of DICOM series as -i (one case per series): also write CASE.seg.dcm (DICOM-SEG) "
                        "and/or CASE.rtstruct.dcm (RTSTRUCT) referencing the series (docs/formats.md)")
    p.add_argument("--dicom_reference", action="store_true",
                   help="with --save_dicom and NIfTI/NRRD/MHA input of a CT model: write each image as a DICOM CT "
                        "series (CASE_dicom/) for the DICOM-SEG / RTSTRUCT to reference")
    return p


def binary_mask_suffixes(assignments: Sequence) -> Dict[int, str]:
    """``{label value: file-name part}`` of the binary masks (see :func:`case_outputs.binary_mask_parts`)."""
    return case_outputs.binary_mask_parts(assignments)


def case_is_finished(truncated: str, assignments: Sequence, ending: str, save_binary: bool,
                     save_probabilities: bool) -> bool:
    """Whether a run with these prompts and options already wrote every output of case ``truncated``."""
    folder, case = os.path.split(truncated)
    files = [truncated + ending]
    if save_binary:
        files += [os.path.join(folder, case_outputs.binary_mask_name(case, s, ending))
                  for s in binary_mask_suffixes(assignments).values()]
    if save_probabilities:
        files += [truncated + ".npz", truncated + ".pkl"]
    if not all(os.path.isfile(f) for f in files):
        return False
    try:
        recorded = [r["prompt"] for r in case_outputs.read_sidecar(truncated + case_outputs.PROMPTS_SUFFIX)["prompts"]]
    except DatasetError:
        return False  # missing, unreadable or older sidecar: the case is predicted again
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


def write_case_outputs(folder: str, truncated: str, result, assignments: Sequence, file_ending: str, image_writer,
                       properties: dict, keep_absent_masks: bool = False) -> dict:
    """Label map and ``CASE.prompts.json`` of one predicted case (``result``: a
    :class:`~nnunet_causal.inference.text_predictor.CasePrediction`) through the case contract."""
    records = case_outputs.prompt_records(assignments, result.segmentation, result.max_probability, result.presence,
                                          keep_absent_masks=keep_absent_masks, binary=result.binary)
    return case_outputs.write_case(folder, os.path.basename(truncated), file_ending, records=records,
                                   label_map=result.segmentation,
                                   write_seg=lambda a, path: image_writer.write_seg(a, path, properties))


def predict_text(args) -> int:
    """The whole command as a plain function (tests call it directly)."""
    from nnunetv2.utilities.file_path_utilities import get_output_folder
    from nnunet_causal.inference.text_predictor import PredictionOptions, nnUNetTextPredictor

    if not os.path.isdir(args.i):
        raise NnunetCausalError(f"input folder {args.i} does not exist")
    specs = collect_prompts(args.prompts, args.prompt_file)
    from nnunet_causal.formats.dicom_cases import check_dicom_request, dicom_input, write_dicom_outputs
    check_dicom_request(args.i, getattr(args, "save_dicom", None), getattr(args, "dicom_reference", False))
    if args.m:
        model_folder = args.m
    else:
        if not args.c:
            raise NnunetCausalError("-c CONFIGURATION is required with -d")
        model_folder = get_output_folder(args.d, args.tr, args.p, args.c)
    bad = [f for f in args.f if f != "all" and not f.isdigit()]
    if bad:
        raise NnunetCausalError(f"-f: folds are numbers or 'all', got {' '.join(bad)}")
    folds = [parse_fold(f) for f in args.f]
    try:
        check_writable_folder(args.o)
    except OSError as e:
        raise NnunetCausalError(f"output folder {args.o} cannot be written: {e.strerror or e}") from None
    ModelFolder(model_folder).check(folds, args.chk)
    device = torch.device(args.device)
    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    predictor = nnUNetTextPredictor(tile_step_size=args.step_size, use_gaussian=True,
                                    use_mirroring=not args.disable_tta,
                                    perform_everything_on_device=not args.not_on_device, device=device,
                                    verbose=args.verbose, allow_tqdm=not args.disable_progress_bar,
                                    verbose_preprocessing=args.verbose,
                                    options=PredictionOptions(resample_mode=args.resample,
                                                              keep_absent_masks=args.keep_absent_masks))
    predictor.initialize_from_trained_model_folder(model_folder, folds, args.chk)
    assignments = predictor.set_prompts(specs, open_vocabulary=args.open_vocabulary)
    if not predictor.has_presence_head():
        logger.info("this model has no presence head: every prompt's presence is reported as unknown")
    for a in assignments:
        logger.info("prompt %d '%s' -> %s (%s, %s)", a.label_value, a.prompt, a.trained_structures or a.terms or "-",
                    a.method, a.source)
    ending = predictor.dataset_json["file_ending"]
    with dicom_input(args.i, ending, args.o) as (input_folder, dicom_cases):
        inputs, outputs, previous = predictor.case_lists(input_folder, args.o, args.prev_stage_predictions,
                                                         args.part_id, args.num_parts)
        if args.continue_prediction:
            todo = [i for i, out in enumerate(outputs) if not case_is_finished(
                out, assignments, ending, args.save_binary, args.save_probabilities)]
            logger.info("continuing: %d of %d case(s) already finished, predicting %d", len(outputs) - len(todo),
                        len(outputs), len(todo))
            inputs, outputs, previous = [inputs[i] for i in todo], [outputs[i] for i in todo], \
                [previous[i] for i in todo]
        parts = binary_mask_suffixes(assignments) if args.save_binary else None
        writer = predictor.plans_manager.image_reader_writer_class()
        n = 0
        for item in predictor.iter_preprocessed(inputs, previous, outputs, args.npp) if inputs else ():
            truncated = item["ofile"]
            result = predictor.predict_case(item["data"], item["data_properties"], output_truncated=truncated,
                                            save_probabilities=args.save_probabilities, binary_masks=parts)
            write_case_outputs(args.o, truncated, result, assignments, ending, writer, item["data_properties"],
                               args.keep_absent_masks)
            n += 1
    if getattr(args, "save_dicom", None):
        for path in write_dicom_outputs(args.o, ending, dicom_cases, args.save_dicom,
                                        reference_from=args.i if args.dicom_reference else None,
                                        channel_names=predictor.dataset_json["channel_names"]):
            logger.info("wrote %s", path)
    logger.info("wrote %d case(s) to %s", n, args.o)
    return 0


def quiet_unclosable_files() -> None:
    """After a write failed and was reported (one line), a file object the failed write left half-closed may
    fail to close again when it is collected: that repeat of the same error is not printed."""
    report = sys.unraisablehook
    sys.unraisablehook = lambda u: None if isinstance(u.exc_value, OSError) else report(u)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return predict_text(args)
    except NnunetCausalError as e:
        print(f"nnUNetv2_predict_text: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:        # a full disk or a folder made read-only during the run: the finished cases stay
        where = e.filename or args.o
        print(f"nnUNetv2_predict_text: error: cannot write {where}: {e.strerror or e} (cases written before "
              f"this one are complete; rerun with --continue_prediction)", file=sys.stderr)
        quiet_unclosable_files()  # before the error (and the file objects its frames hold) is released
        return 2


if __name__ == "__main__":
    sys.exit(main())
