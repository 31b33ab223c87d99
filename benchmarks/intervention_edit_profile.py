"""Where an edit's time goes: median milliseconds of each part of a full prediction and of an edit
on one case of a trained model with TCI weights, measured in one process, side by side.

Parts: encoder and each decoder stage per network call (forward hooks during the base prediction), nnU-Net's
sliding window (whole, with mirroring), the FiLM generator, the label-map conversion, and whole edits
through nnU-Net's loop (``replay="nnunet"``) and through the decoder tail (``replay="tail"``), each with and
without replayed mirroring.

Usage: ``python benchmarks/intervention_edit_profile.py --work /tmp/tci_bench [--tci-weights FILE]``
(the model and cases of ``intervention_benchmark.py``).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--dataset-id", type=int, default=981)
    ap.add_argument("--tci-weights", default=None, help="generator file (default: the model folder's)")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    work = Path(args.work).absolute()
    from nnunet_causal.env_cli import ext_trainer_folder
    os.environ.update({"nnUNet_raw": str(work / "raw"), "nnUNet_preprocessed": str(work / "pre"),
                       "nnUNet_results": str(work / "results"), "nnUNet_extTrainer": str(ext_trainer_folder()),
                       "nnUNet_compile": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    import torch
    from nnunet_causal.intervention.modulation.film import FILM_ACTIONS, condition_vectors, target_queries
    from nnunet_causal.intervention.modulation.session import InterventionSession

    name = f"Dataset{args.dataset_id}_TCIBench"
    model = next((work / "results" / name).glob("*__*__2d"))
    case = sorted((work / "raw" / name / "imagesTs").glob("*_0000.png"))[0]
    s = InterventionSession(model, "0", tci_weights=args.tci_weights)
    s.load_case([str(case)])
    s.predict()
    print(f"model {model.name}, case {case.name}, generator stages {s.generator.stages}, "
          f"{len(s.cached.cache)} network calls per prediction (tiles x mirrors), torch threads "
          f"{torch.get_num_threads()}")
    parts = {}
    dec = s.network.decoder
    modules = {"encoder": s.network.backbone.encoder, "decoder (whole)": dec,
               **{f"decoder stage {i}": st for i, st in enumerate(dec.stages)}}
    handles = []
    for label, module in modules.items():
        handles.append(module.register_forward_pre_hook(
            lambda m, i, label=label: parts.setdefault(label, []).append(-time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda m, i, o, label=label: parts[label].__setitem__(-1, parts[label][-1] + time.perf_counter())))
    full = median_ms(s.predict, args.repeats)
    for h in handles:
        h.remove()
    rows = [(f"{k} (per call)", 1000 * float(np.median(v))) for k, v in parts.items()]
    rows.append(("sliding window, whole prediction (all calls + aggregation)", full))
    q = target_queries(s.network).detach()

    def generator():
        with torch.no_grad():
            s.generator(condition_vectors(q, torch.tensor([0]), torch.tensor([FILM_ACTIONS.index("expand")]),
                                          torch.tensor([2 / 3])))
    rows.append(("FiLM generator (once per target and action)", median_ms(generator, args.repeats)))
    rows.append(("label map conversion (segmentation())", median_ms(s.segmentation, args.repeats)))
    action = [{"action": "expand", "target": [s.structures[0]], "strength": "moderate"}]
    for replay in ("nnunet", "tail"):
        for mirrored in (True, False):
            s.replay, s.edit_mirroring = replay, mirrored
            s.apply(action)  # per-case set-up (stacked features, unmirrored reference) outside the median
            s.undo()
            ms = median_ms(lambda: (s.apply(action), s.undo()), args.repeats)
            rows.append((f"edit, replay={replay}, edit_mirroring={mirrored}", ms))
    print("\n| part | median ms | / whole prediction |\n|---|---|---|")
    for label, ms in rows:
        print(f"| {label} | {ms:.2f} | {ms / full:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
