"""``nnunet_causal benchmark``: what the text and causal modules cost against stock nnU-Net, side by side.

One run, same synthetic data and plans (stock ``nnUNetv2_plan_and_preprocess`` on a small synthetic 2D
set, so the plans are what nnU-Net chooses): trainers are built exactly as ``nnUNetv2_train`` builds them
and their ``train_step`` is timed on identical batches of the planned patch and batch size, interleaved
round-robin (so drifting machine load hits all alike; medians reported). Prediction times the sliding
window over one preprocessed case for the stock network and for ``nnUNetTextPredictor``'s network with the
trained structures and with 1, 8 and 32 prompts. Peak memory: CUDA's allocator peak on GPUs; on the CPU
each trainer's steps run in a fresh process and its peak resident set size is compared.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

TRAINERS = {"stock": "nnUNetTrainer", "text": "nnUNetTrainerText", "causal": "nnUNetTrainerCausalText"}


def _prepare(work: Path, size: int) -> Dict[str, str]:
    """Synthetic dataset + stock plans (no preprocessing needed for timing)."""
    from nnunet_causal.synthetic.endoscopy2d import make_endoscopy_dataset

    env = dict(os.environ, nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "pre"),
               nnUNet_results=str(work / "results"), nnUNet_def_n_proc="2")
    raw = work / "raw" / "Dataset999_Bench"
    if not raw.exists():
        make_endoscopy_dataset(raw, 6, domains=("siteA", "siteB"), image_size=(size, size), seed=0)
    plans = work / "pre" / "Dataset999_Bench" / "nnUNetPlans.json"
    if not plans.exists():
        cmd = [str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"), "-d", "999", "-c", "2d",
               "-np", "2", "-npfp", "2"]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    os.environ.update({k: env[k] for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
    return env


def _trainer(name: str, device: torch.device):
    from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    cls = {"nnUNetTrainer": nnUNetTrainer, "nnUNetTrainerText": nnUNetTrainerText,
           "nnUNetTrainerCausalText": nnUNetTrainerCausalText}[name]
    pre = Path(os.environ["nnUNet_preprocessed"]) / "Dataset999_Bench"
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    dj = json.loads((pre / "dataset.json").read_text())
    tr = cls(plans, "2d", 0, dj, device)
    tr.initialize()
    if name == "nnUNetTrainerCausalText":
        tr._gate = 1.0  # time the full intervention, not the warm-up
    tr.network.train()
    return tr


def _batch(tr, seed: int = 0):
    """A batch of the planned patch/batch size with deep-supervision targets."""
    g = torch.Generator().manual_seed(seed)
    cm = tr.configuration_manager
    b, patch = cm.batch_size, list(cm.patch_size)
    data = torch.randn((b, tr.num_input_channels, *patch), generator=g)
    seg = (torch.rand((b, 1, *patch), generator=g) > 0.7).float()
    scales = tr._get_deep_supervision_scales()
    target = [torch.nn.functional.interpolate(seg, scale_factor=[float(s) for s in sc], mode="nearest")
              for sc in scales]
    return {"data": data, "target": target, "keys": [f"siteA_{i:04d}" for i in range(b)]}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_train_steps(device: torch.device, repeats: int) -> Dict[str, float]:
    trainers = {k: _trainer(v, device) for k, v in TRAINERS.items()}
    batches = {k: _batch(t) for k, t in trainers.items()}
    times = {k: [] for k in trainers}
    for k, t in trainers.items():  # warm-up (allocator, text cache, lazy init)
        t.train_step(batches[k])
    for _ in range(repeats):
        for k, t in trainers.items():
            _sync(device)
            t0 = time.perf_counter()
            t.train_step(batches[k])
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_memory_of(trainer_key: str, device: torch.device, steps: int = 3) -> float:
    """Peak memory (bytes) of a few train steps of one trainer."""
    if device.type == "cuda":
        tr = _trainer(TRAINERS[trainer_key], device)
        batch = _batch(tr)
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            tr.train_step(batch)
        return float(torch.cuda.max_memory_allocated())
    code = (f"import resource, torch; from nnunet_causal.benchmarking.perf import _trainer, _batch; "
            f"t = _trainer({TRAINERS[trainer_key]!r}, torch.device('cpu')); b = _batch(t); "
            f"before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            f"[t.train_step(b) for _ in range({steps})]; "
            f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1]) * 1024


def time_prediction(device: torch.device, repeats: int, image_size: int) -> Dict[str, float]:
    """Sliding-window time on one case: stock network vs text network (trained prompts, 1, 8, 32 prompts)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    stock = _trainer("nnUNetTrainer", device)
    text = _trainer("nnUNetTrainerText", device)
    image = torch.randn(stock.num_input_channels, 1, image_size, image_size)
    preds = {}
    for key, tr in (("stock", stock), ("text", text)):
        p = nnUNetPredictor(tile_step_size=0.5, use_mirroring=False, device=device, verbose=False,
                            allow_tqdm=False, perform_everything_on_device=True)
        net = tr.network
        net.eval()
        tr.set_deep_supervision_enabled(False)
        p.manual_initialization(net, tr.plans_manager, tr.configuration_manager, [net.state_dict()],
                                tr.dataset_json, type(tr).__name__, None)
        preds[key] = p
    enc_dim = text.network.text_dim
    g = torch.Generator().manual_seed(0)
    prompt_sets = {"text_trained": None, "text_1": 1, "text_8": 8, "text_32": 32}
    times = {k: [] for k in ["stock", *prompt_sets]}

    def run(key):
        p = preds["stock" if key == "stock" else "text"]
        if key != "stock":
            n = prompt_sets[key]
            p.network.set_inference_prompts(None if n is None else torch.randn(n, enc_dim, generator=g))
            labels = {"background": 0, **{f"prompt {i + 1}": i + 1 for i in range(p.network.num_outputs - 1)}}
            p.label_manager = p.plans_manager.get_label_manager({**p.dataset_json, "labels": labels})
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            p.predict_sliding_window_return_logits(image)
        _sync(device)
        return time.perf_counter() - t0

    for k in times:
        run(k)
    for _ in range(repeats):
        for k in times:
            times[k].append(run(k))
    return {k: statistics.median(v) for k, v in times.items()}


def text_encoder_seconds() -> float:
    from nnunet_causal.text.embedding_cache import get_text_encoder
    enc = get_text_encoder("minilm")
    enc.backend.encode(["warm up"])  # loads the model; the timed call is one uncached prompt
    t0 = time.perf_counter()
    enc.backend.encode([f"a never seen prompt {time.time()}"])
    return time.perf_counter() - t0


def trainable_fraction_peft(device) -> float:
    tr = _trainer("nnUNetTrainerCausalText", device)
    net = tr.network
    for p in net.backbone.encoder.parameters():
        p.requires_grad_(False)
    total = sum(p.numel() for p in net.parameters())
    return sum(p.numel() for p in net.parameters() if p.requires_grad) / total


def json_path_for(json_arg: str, cases, case: str) -> str:
    """Where ``case``'s measurements go: ``--json`` itself for the first of the cases run (in the order 2d, 3d,
    resample), ``<stem>_<case>.json`` beside it for the others."""
    first = next(c for c in ("2d", "3d", "resample") if c in cases)
    stem = json_arg[:-5] if json_arg.endswith(".json") else json_arg
    return json_arg if case == first else f"{stem}_{case}.json"


def run_benchmark(args) -> int:
    from nnunet_causal.files import write_json_atomic
    if "resample" in args.cases:
        from nnunet_causal.benchmarking.perf3d import print_resampling, time_resampling_modes
        shapes = ((24, 40, 40), (36, 60, 60)) if args.quick else ((48, 80, 80), (72, 120, 120))
        res_resample = time_resampling_modes(*shapes)
        print_resampling(res_resample)
        if args.json:
            write_json_atomic(json_path_for(args.json, args.cases, "resample"), res_resample)
    if "3d" in args.cases:
        from nnunet_causal.benchmarking.perf3d import benchmark_3d, print_3d
        volume = tuple(args.volume) if args.volume else ((32, 64, 64) if args.quick else (96, 160, 160))
        patch = args.patch or (32 if args.quick else 64)
        mirror = not (args.disable_tta or args.quick)
        res3d = benchmark_3d(volume, patch, mirror=mirror, repeats=args.repeats_3d or (2 if args.quick else 3),
                             device=args.device, work=args.work or "")
        print_3d(res3d)
        if args.json:
            write_json_atomic(json_path_for(args.json, args.cases, "3d"), res3d)
    if "2d" not in args.cases:
        return 0
    device = torch.device(args.device)
    quick = args.quick
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="nnunet_causal_bench_"))
    _prepare(work, 96 if quick else 128)
    torch.set_num_threads(os.cpu_count() or 1)
    steps = time_train_steps(device, 4 if quick else 10)
    mem = {k: peak_memory_of(k, device) for k in ("stock", "causal")}
    pred = time_prediction(device, 3 if quick else 7, 192 if quick else 320)
    res = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "train_step_seconds": steps,
        "predict_seconds": pred,
        "peak_memory_bytes": mem,
        "train_step_ratio_text_vs_stock": steps["text"] / steps["stock"],
        "train_step_ratio_causal_vs_text": steps["causal"] / steps["text"],
        "predict_ratio_32_vs_1_prompts": pred["text_32"] / pred["text_1"],
        "predict_ratio_8_vs_1_prompts": pred["text_8"] / pred["text_1"],
        "predict_ratio_ours_vs_stock": pred["text_trained"] / pred["stock"],
        "peak_memory_ratio_causal_vs_stock": mem["causal"] / mem["stock"],
        "text_encoder_seconds_new_prompt": text_encoder_seconds(),
        "trainable_fraction_peft": trainable_fraction_peft(device),
    }
    print(f"device: {res['device']}  torch {res['torch']}")
    print(f"train step (s): stock {steps['stock']:.3f} | text {steps['text']:.3f} | causal {steps['causal']:.3f}")
    print(f"  ratio text/stock   {res['train_step_ratio_text_vs_stock']:.3f}  (target <= 1.10)")
    print(f"  ratio causal/text  {res['train_step_ratio_causal_vs_text']:.3f}  (target <= 1.25)")
    print(f"prediction (s): stock {pred['stock']:.3f} | trained prompts {pred['text_trained']:.3f} | "
          f"1 prompt {pred['text_1']:.3f} | 8 {pred['text_8']:.3f} | 32 {pred['text_32']:.3f}")
    print(f"  ratio 32/1 prompts {res['predict_ratio_32_vs_1_prompts']:.3f}  (target <= 1.10)")
    print(f"  ratio ours/stock   {res['predict_ratio_ours_vs_stock']:.3f}  (target <= 1.10)")
    print(f"peak memory causal/stock {res['peak_memory_ratio_causal_vs_stock']:.3f}  (target <= 1.20)")
    print(f"text encoder, one new prompt: {res['text_encoder_seconds_new_prompt'] * 1000:.1f} ms")
    print(f"trainable fraction with a frozen encoder: {100 * res['trainable_fraction_peft']:.1f}%")
    if args.json:
        write_json_atomic(json_path_for(args.json, args.cases, "2d"), res)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "benchmark", help="time/memory of the text and causal trainers and predictor against stock nnU-Net",
        description=__doc__.split("\n\n")[0],
        epilog="Examples: nnunet_causal benchmark --quick --device cpu --json bench.json\n"
               "          nnunet_causal benchmark --cases 3d --volume 48 80 80 --patch 32 --device cpu")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller images (< 10 min on 2 CPU cores)")
    p.add_argument("--json", default=None, help="write the measurements and ratios here")
    p.add_argument("--work", default=None, help="keep the synthetic data and plans in this folder")
    p.add_argument("--cases", nargs="+", default=["2d", "3d"], choices=("2d", "3d", "resample"),
                   help="2d: trainers and the small 2D predictor case; 3d: 1/32/117 prompts vs stock 2/33/118 classes "
                        "on a 3D volume; resample: embeddings-once vs logits-in-chunks resampling (default 2d 3d)")
    p.add_argument("--volume", nargs=3, type=int, default=None, metavar=("Z", "Y", "X"),
                   help="3D case volume (default 96 160 160, hours on 2 CPU cores with mirroring; 32 64 64 and no "
                        "mirroring with --quick)")
    p.add_argument("--patch", type=int, default=None, help="3D case cubic patch edge (default 64; 32 with --quick)")
    p.add_argument("--disable_tta", action="store_true", help="3D case without mirroring (always so with --quick)")
    p.add_argument("--repeats_3d", type=int, default=None, help="3D case repeats (default 3; 2 with --quick)")
    p.set_defaults(func=run_benchmark)
