"""Open-vocabulary Dice for ``mgcl_benchmark.py``: a trained text model predicts the test volumes with every
structure reworded (training names, two sets of held-out synonyms), each prompt embedded by one column's text
encoder; and the rows of the side-by-side table these give."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def prompt_sets(structures: dict) -> dict:
    """Prompt files for Dice: one line per trained structure, label order. The held-out sets take the first
    / the second held-out synonym of each structure (the first again where there is only one)."""
    from nnunet_causal.synthetic.reports import HELD_OUT_NAMES, REPORT_NAMES

    return {"training names": [REPORT_NAMES[n][0] for n in structures],
            "held-out synonyms #1": [HELD_OUT_NAMES[n][0] for n in structures],
            "held-out synonyms #2": [HELD_OUT_NAMES[n][-1] for n in structures]}


def open_vocabulary_dice(model: Path, encoders: dict, structures: dict, raw: Path, work: Path) -> dict:
    """``{column: {prompt set: {structure: Dice}}}``: one trained text model predicts the test volumes with
    every structure reworded by a prompt set, the prompts embedded by each column's text encoder.

    The path is stock ``nnUNetv2_predict`` with ``nnUNet_causal_prompt_file`` -- nnU-Net's own
    ``nnUNetPredictor`` and the package's :func:`reword_trained_prompts` (each line embedded by the given
    encoder: the open-vocabulary path) -- run in this process, so the model is loaded once (the shared CPU
    cannot afford a new interpreter per prediction); mirroring TTA off for the same reason.
    ``nnUNetv2_predict_text`` is not used: its resolver grounds a known synonym such as "hepar" back to the
    trained prompt's embedding, which would measure the resolver, not the text encoder."""
    import SimpleITK as sitk
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunet_causal.inference.stock_prompts import reword_trained_prompts
    from nnunet_causal.networks.text_plans import get_text_settings

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), (0,), "checkpoint_final.pth")
    reader = predictor.plans_manager.image_reader_writer_class()
    cases = []
    for img in sorted((raw / "imagesTs").glob("*_0000.nii.gz")):
        case = img.name[:-len("_0000.nii.gz")]
        data, props = reader.read_images([str(img)])
        gt = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTs" / f"{case}.nii.gz")))
        cases.append((data, props, gt))
    base = get_text_settings(predictor.plans_manager.plans, str(model / "plans.json"))
    out = {}
    for column, spec in encoders.items():
        settings = dict(base, text_encoder=spec)
        out[column] = {}
        for name, prompts in prompt_sets(structures).items():
            prompt_file = work / "prompts" / f"{name.replace(' ', '_').replace('#', '')}.txt"
            prompt_file.parent.mkdir(exist_ok=True)
            prompt_file.write_text("".join(f"{p}\n" for p in prompts))
            reword_trained_prompts(predictor.network, settings, str(prompt_file))
            scores = {n: [] for n in structures}
            for data, props, gt in cases:
                pred = np.asarray(predictor.predict_single_npy_array(data, props, None, None, False))
                for n, v in structures.items():
                    a, b = pred == v, gt == v
                    if b.any() or a.any():
                        scores[n].append(2 * (a & b).sum() / (a.sum() + b.sum()))
            out[column][name] = {n: float(np.mean(v)) for n, v in scores.items() if v}
    return out


def summarise_dice(per_structure: dict) -> tuple:
    """(mean over structures, mean over the two kidneys)."""
    kidneys = [per_structure[n] for n in ("kidney_left", "kidney_right") if n in per_structure]
    return (float(np.mean(list(per_structure.values()))) if per_structure else float("nan"),
            float(np.mean(kidneys)) if kidneys else float("nan"))


def add_dice_rows(results: dict, dice: dict, model_name: str) -> None:
    for column, sets in dice.items():
        for name, per in sets.items():
            mean, kidneys = summarise_dice(per)
            results[column][f"Dice, {model_name}, {name} (mean over structures)"] = mean
            results[column][f"Dice, {model_name}, {name} (the two kidneys)"] = kidneys
