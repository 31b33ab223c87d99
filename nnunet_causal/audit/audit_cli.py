"""``nnunet_causal audit``: which imaging conditions would break a model (any nnU-Net model, stock included)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence

from nnunet_causal.errors import DatasetError, ModelError
from nnunet_causal.inference.model_folder import ModelFolder, parse_fold

logger = logging.getLogger(__name__)


def _load_predictor(model_folder: Path, fold: str, checkpoint: str, device):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    # the folder, fold and checkpoint were checked by run_audit before any work
    configuration = ModelFolder(model_folder).checkpoint_configuration(fold, checkpoint)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_folder), use_folds=(parse_fold(fold),),
                                                   checkpoint_name=checkpoint)
    return predictor, configuration


def run_audit(models: Sequence[str], images: str, out: str, labels: Optional[str] = None,
              dictionary: Optional[str] = None, fold: str = "0", checkpoint: str = "checkpoint_final.pth",
              strengths: Sequence[float] = (0.5, 1.0), draws: int = 1, device: str = "cpu",
              max_cases: Optional[int] = None, names: Optional[List[str]] = None, progress: bool = True) -> dict:
    """Audit every model in ``models`` on the same counterfactual images; write ``out``/audit.{md,csv,json},
    sensitivity.png and overlays/. Returns ``{model_name: ranked summary rows}``."""
    import torch

    from nnunet_causal.audit.measure import ModelAuditor, find_cases
    from nnunet_causal.audit.report import plot_sensitivity, summarise, write_overlays, write_tables
    from nnunet_causal.confounders.dictionary import load_confounder_entries

    if not models:
        raise ModelError("no model folder given (-m)")
    if any(not 0 < s <= 1 for s in strengths):
        raise DatasetError(f"strengths must lie in (0, 1], got {list(strengths)}")
    names = names or [Path(m).name for m in models]
    if len(set(names)) != len(names):  # same trainer of different datasets: use the full path
        names = [str(m) for m in models]
    for model in models:  # every folder checked before any work, so a bad one leaves nothing half-written
        ModelFolder(model).check([parse_fold(fold)], checkpoint)
    if dictionary:
        load_confounder_entries(dictionary)
    dev = torch.device(device)
    summaries, per_case = {}, {}
    for model, name in zip(models, names):
        folder = Path(model)
        predictor, configuration = _load_predictor(folder, str(fold), checkpoint, dev)
        entries = load_confounder_entries(dictionary) if dictionary else ModelFolder(folder).confounder_entries()
        ending = predictor.dataset_json["file_ending"]
        cases = find_cases(Path(images), Path(labels) if labels else None, ending, max_cases)
        auditor = ModelAuditor(predictor, configuration, entries, strengths, draws,
                               skip_unsupported=dictionary is None)
        for s in auditor.sampler.skipped:
            logger.warning("audit of %s: skipped %s", name, s)
        logger.info("audit of %s: %d case(s) x %d confounder(s) x %d strength(s)", name, len(cases),
                    len(auditor.sampler.active), len(strengths))
        result = auditor.run(cases, progress=progress)
        summaries[name] = summarise(name, result["rows"], entries, labels is not None)
        per_case[name] = [{**r, "entry": entries[r["entry"]].description} for r in result["rows"]]
        ranked = [r for r in summaries[name] if r["strength"] == max(strengths)][:3]
        index = {e.description: i for i, e in enumerate(entries)}
        top = [index[r["entry"]] for r in ranked]
        write_overlays(Path(out), name, result["examples"], entries, top)
    write_tables(Path(out), summaries, per_case, strengths)
    plot_sensitivity(Path(out), summaries, strengths)
    return summaries


def _run(args) -> int:
    from nnunet_causal.audit.report import markdown

    summaries = run_audit(args.m, args.i, args.o, args.r, args.dictionary, args.f, args.chk, args.strengths,
                          args.draws, args.device, args.max_cases)
    print(markdown(summaries, args.strengths))
    print(f"wrote {args.o}/audit.md, audit.csv, audit.json, sensitivity.png, overlays/")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "audit", help="causal audit: how a model's prediction moves under do(z) for each dictionary confounder",
        description="Apply every confounder of the dictionary (the model's own, or --dictionary) to every test "
                    "image at a few strengths and measure how the prediction moves: sensitivity (1 - Dice between "
                    "factual and counterfactual predictions), the change of Dice against reference labels (-r) and "
                    "the false-positive voxels created, ranked. Works on any nnU-Net model folder, stock ones "
                    "included; several -m are audited on the same counterfactual images.",
        epilog="Example: nnunet_causal audit -m $nnUNet_results/Dataset980_X/nnUNetTrainer__nnUNetPlans__2d "
               "-i imagesTs -r labelsTs -o audit_out -f 0")
    p.add_argument("-m", nargs="+", required=True, help="model folder(s) (…/TRAINER__PLANS__CONFIG)")
    p.add_argument("-i", required=True, help="folder of images named CASE_XXXX<file ending>")
    p.add_argument("-r", default=None, help="folder of reference labels CASE<file ending> (optional)")
    p.add_argument("-o", required=True, help="output folder")
    p.add_argument("--dictionary", default=None,
                   help="confounder dictionary (family name endoscopy|ct|mri or a file; default: the model's)")
    p.add_argument("-f", default="0", help="fold (default 0)")
    p.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint name (default checkpoint_final.pth)")
    p.add_argument("--strengths", type=float, nargs="+", default=[0.5, 1.0],
                   help="doses of each do(z), in (0, 1] (default 0.5 1.0)")
    p.add_argument("--draws", type=int, default=1, help="random draws of each confounder per image (default 1)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--max-cases", type=int, default=None, help="audit only the first N cases")
    p.set_defaults(func=_run)
