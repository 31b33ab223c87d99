"""``nnunet_causal intervene``: correct one case's prediction with natural-language commands.

Writes into ``-o`` what :mod:`nnunet_causal.inference.case_outputs` defines: ``CASE<file ending>`` (the
edited label map, nnU-Net's format and geometry), ``CASE.prompts.json`` (one record per trained structure
with its voxel count, peak probability and voxels changed after the edits) and ``CASE.edits.json`` (every
command, what the parser made of it, the retrieved causes / reasons, the structures each action touched and
the voxels that changed per structure). ``--undo`` drops the last command's edit before writing (repeat it to
drop more); the commands are replayed in order, so a list of ``-c`` is a reproducible edit script.
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional, Sequence

import numpy as np
import torch

from nnunet_causal.errors import DatasetError, PromptError
from nnunet_causal.inference import case_outputs
from nnunet_causal.intervention.commands.schema import MAX_COMMAND_CHARS

logger = logging.getLogger(__name__)
EDIT_PRESENCE_NOTE = "not decided: edits change the trained structures' logits; presence is not re-evaluated"


def check_command(command: str) -> None:
    """Empty or too long (the parser's limit, :data:`~nnunet_causal.intervention.commands.MAX_COMMAND_CHARS`)."""
    if not command or not command.strip():
        raise PromptError("empty command (-c)")
    if len(command) > MAX_COMMAND_CHARS:
        raise PromptError(f"command of {len(command)} characters is too long (at most {MAX_COMMAND_CHARS})")


def structure_records(session, seg: np.ndarray) -> List[dict]:
    """The sidecar records of the session's trained structures on ``seg`` (one prompt per structure), with
    their peak probability after the edits and the voxels the edits changed (plain data for
    :func:`~nnunet_causal.inference.case_outputs.write_case`)."""
    logits = session.current_logits().float()
    base = session.segmentation(session.base_logits)
    label_dict = session.predictor.label_manager.label_dict
    rows, peaks = [], []
    for k, name in enumerate(session.structures):
        value = label_dict[name]
        rows.append({"prompt": name, "label_value": int(max(value) if isinstance(value, (list, tuple)) else value),
                     "terms": [name], "score": 1.0, "method": "exact", "source": "trained",
                     "trained_structures": [name]})
        peaks.append(torch.sigmoid(logits[k + session.offset].amax()).item())
    presence = [dict(case_outputs.unknown_presence(), presence_calibration=EDIT_PRESENCE_NOTE) for _ in rows]
    return case_outputs.prompt_records(rows, seg, peaks, presence, base_label_map=base)


def edit_log(session) -> dict:
    """The session's edit log as :func:`~nnunet_causal.inference.case_outputs.write_case` takes it."""
    masks = session.structure_masks(session.segmentation())
    base = session.structure_masks(session.segmentation(session.base_logits))
    return {"model": str(session.model_folder), "fold": session.fold, "tci_weights": session.tci_settings or None,
            "timings": {k: round(v, 4) for k, v in session.timings.items()}, "edits": list(session.log),
            "applied": len(session.history),
            "voxels_changed_total": {n: int((masks[n] != base[n]).sum()) for n in session.structures}}


def write_outputs(session, out_folder, seg: Optional[np.ndarray] = None) -> dict:
    """Write the label map, the sidecar and the edit log of the session's case (the case contract); returns
    their paths (``mask``, ``sidecar``, ``log``)."""
    p = session.predictor
    seg = session.segmentation() if seg is None else seg
    rw = p.plans_manager.image_reader_writer_class()
    paths = case_outputs.write_case(
        out_folder, session.case, p.dataset_json["file_ending"], records=structure_records(session, seg),
        label_map=seg, write_seg=lambda a, path: rw.write_seg(a, path, session.properties),
        edited=bool(session.history), edits=edit_log(session))
    return {"mask": paths["mask"], "sidecar": paths["prompts"], "log": paths["edits"]}


def run_intervene(files: Sequence[str], model_folder: str, commands: Sequence[str], out: str, fold: str = "0",
                  checkpoint: str = "checkpoint_final.pth", device: str = "cpu", undo: int = 0,
                  use_mirroring: bool = True, keep_others: str = "exact") -> dict:
    """The whole command as a plain function: parse every command first, then predict, edit and write."""
    from nnunet_causal.inference.model_folder import ModelFolder, parse_fold
    from nnunet_causal.intervention.commands import parse_command
    from nnunet_causal.intervention.modulation.session import InterventionSession

    if not commands:
        raise PromptError("give at least one command with -c")
    for c in commands:
        check_command(c)
    missing = [f for f in files if not os.path.isfile(f)]
    if not files or missing:
        raise DatasetError(f"case file(s) {', '.join(missing) or '(none given with -i)'} do not exist")
    folder = ModelFolder(model_folder)
    folder.check([parse_fold(fold)], checkpoint)
    vocabulary, confounders = folder.vocabulary(), folder.confounders()
    style = folder.style(folder.case_name(files[0]))
    # every command parsed before any prediction: a bad one fails fast, and it is parsed once only
    parsed = [parse_command(c, vocabulary, confounders=confounders, style_description=style) for c in commands]
    needs_film = any(a.get("action") != "ignore_confounder" for p in parsed for a in p.get("actions") or [])
    session = InterventionSession(model_folder, fold, checkpoint, device, use_mirroring=use_mirroring,
                                  require_tci=needs_film, keep_others=keep_others)
    session.load_case(list(files), style_description=style)
    session.predict()
    for c, p in zip(commands, parsed):
        edit = session.apply(p, command=c)
        logger.info("'%s' -> %d action(s), voxels changed %s (%.3f s)", c, len(edit.actions), edit.voxels_changed,
                    edit.seconds)
    for _ in range(undo):
        if session.undo() is None:
            logger.warning("--undo: no edit left to undo")
            break
    return write_outputs(session, out)


def _run(args) -> int:
    from nnunet_causal.formats.dicom_cases import DICOM_OUTPUTS, dicom_case_input, write_case_dicom
    with dicom_case_input(args.i, args.m, args.save_dicom) as (files, series):  # a DICOM series folder as -i
        paths = run_intervene(files, args.m, args.c, args.o, args.f, args.chk, args.device, args.undo,
                              not args.disable_tta, args.keep_others)
    print(f"wrote {paths['mask']}, {paths['sidecar']}, {paths['log']}")
    for path in write_case_dicom(paths["mask"], paths["sidecar"], series, DICOM_OUTPUTS[args.save_dicom],
                                 edits_path=paths["log"]) if args.save_dicom else ():
        print(f"wrote {path}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "intervene", help="edit one case's segmentation with natural-language commands (test-time intervention)",
        description="Predict one case with a trained text model, then apply each command (-c, in order): "
                    "expand / shrink / remove / add a structure through the learned decoder modulation (cached "
                    "encoder features, decoder-only re-runs; weights from `nnunet_causal train-tci`), or ignore a "
                    "named confounder (bottleneck do-operation for causal models, else the image inverse of its "
                    "simulator). Writes the edited mask, CASE.prompts.json and CASE.edits.json.",
        epilog="Examples:\n"
               "  nnunet_causal intervene -i case_0000.png -m MODEL -c \"make the polyp slightly larger\" -o out\n"
               "  nnunet_causal intervene -i ct_0000.nii.gz -m MODEL -c \"remove the spleen\" "
               "-c \"ignore the metal artefact\" --undo -o out",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("-i", nargs="+", required=True,
                   help="the case's channel files (CASE_0000<ending> ...), or one folder holding a DICOM series")
    p.add_argument("-m", required=True, help="trained model folder (…/TRAINER__PLANS__CONFIG)")
    p.add_argument("-c", action="append", required=True, help="a command; repeat for several, applied in order")
    p.add_argument("-o", required=True, help="output folder")
    p.add_argument("-f", default="0", help="fold (default 0)")
    p.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint name (default checkpoint_final.pth)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--undo", type=int, nargs="?", const=1, default=0,
                   help="undo the last N commands' edits before writing (default 1 when given)")
    p.add_argument("--disable_tta", action="store_true", help="no mirroring (faster, as nnUNetv2_predict's flag)")
    p.add_argument("--keep-others", default="exact", choices=("exact", "learned"),
                   help="exact: other structures keep their logits (default); learned: the generator's output")
    p.add_argument("--save_dicom", choices=("seg", "rtstruct", "both"), default=None,
                   help="with a DICOM series as -i: also write CASE.seg.dcm / CASE.rtstruct.dcm referencing it, the "
                        "edit history in their private block (docs/formats.md)")
    p.set_defaults(func=_run)
