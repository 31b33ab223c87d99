"""The 3D prediction case of ``nnunet_causal benchmark``: many prompts vs stock nnU-Net with many classes.

One preprocessed volume (default 96 x 160 x 160, 64^3 patches, step 0.5, mirroring on) is predicted to a
label map by

* ours: ``nnUNetTextPredictor``'s feature-space window (embeddings aggregated once, prompts applied in chunks,
  running argmax) with 1, 32 and 117 prompts;
* stock: ``nnUNetPredictor``'s sliding window and export (``convert_predicted_logits_to_segmentation_with_
  correct_shape``) for 2, 33 and 118 classes (background + the same counts),

with the same backbone: nnU-Net's PlainConvUNet for a 64^3 patch (5 stages, 32..320 features, two
convolutions per stage); ours emits E = 32 embedding channels instead of the class count. Each measurement
runs in a fresh process (peak memory is then the process's own: CUDA allocator peak on GPUs, peak resident
set size on the CPU, also given above the process's level before the prediction), round robin over the
configurations and repeated (medians), so drifting machine load hits all alike. Random weights: timing and
memory do not depend on them. The 32-prompt run is also predicted through nnU-Net's logit path with our
network, and the two label maps are compared (voxel agreement; nnU-Net aggregates in float16).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Sequence

import torch

from nnunet_causal.benchmarking.plans_builder import plain_unet_arch, plain_unet_plans

PROMPT_COUNTS = (1, 32, 117)


def _plans(volume: Sequence[int], patch: int) -> dict:
    arch = plain_unet_arch(3, [32, 64, 128, 256, 320], [[1, 1, 1]] + [[2, 2, 2]] * 4)
    unit = {"max": 1.0, "mean": 0.0, "median": 0.0, "min": -1.0, "percentile_00_5": -1.0, "percentile_99_5": 1.0,
            "std": 1.0}
    return plain_unet_plans(
        "Dataset998_Bench3D", "3d_fullres", arch, [patch] * 3, volume, {"0": unit}, "SimpleITKIO", "bench_3d",
        [1.0] * 3, volume,
        extra={"nnunet_causal": {"text_encoder": "minilm", "text_encoder_id": "minilm", "text_dim": 384,
                                 "embed_dim": 32, "connector": "mlp", "add_background": True,
                                 "prompts": {"structure": ["structure"]}}})


def _dataset_json(n_foreground: int) -> dict:
    return {"channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
            "labels": {"background": 0, **{f"s{i + 1}": i + 1 for i in range(n_foreground)}}}


def _predictor(system: str, count: int, volume, patch: int, mirror: bool, device: torch.device):
    """The function that predicts a label map from a preprocessed volume, and its predictor."""
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_causal.inference.text_predictor import nnUNetTextPredictor
    from nnunet_causal.networks.builder import build_text_network

    pm = PlansManager(_plans(volume, patch))
    cm = pm.get_configuration("3d_fullres")
    torch.manual_seed(0)

    def props(data):
        shape = tuple(data.shape[1:])
        return {"spacing": [1.0] * 3, "shape_after_cropping_and_before_resampling": shape,
                "shape_before_cropping": shape, "bbox_used_for_cropping": [[0, s] for s in shape]}
    kw = dict(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror, device=device, verbose=False,
              allow_tqdm=False, perform_everything_on_device=True)
    if system == "stock":
        net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, 1, count + 1, deep_supervision=False)
        p = nnUNetPredictor(**kw)
        p.manual_initialization(net, pm, cm, [net.state_dict()], _dataset_json(count), "nnUNetTrainer", (0, 1, 2))
        return (lambda data: convert_predicted_logits_to_segmentation_with_correct_shape(
            p.predict_logits_from_preprocessed_data(data), pm, cm, p.label_manager, props(data))), p
    net = build_text_network(pm, cm, 1, 2, enable_deep_supervision=False)
    p = nnUNetTextPredictor(**kw)
    p.manual_initialization(net, pm, cm, [net.state_dict()], _dataset_json(1), "nnUNetTrainerText", (0, 1, 2))
    g = torch.Generator().manual_seed(1)
    net.set_inference_prompts(torch.nn.functional.normalize(torch.randn(count, 384, generator=g), dim=1))
    if system == "ours_logits":  # nnU-Net's logit path with our network (the reference of the feature path)
        p.label_manager = pm.get_label_manager(_dataset_json(count))
        return (lambda data: convert_predicted_logits_to_segmentation_with_correct_shape(
            p.predict_logits_from_preprocessed_data(data), pm, cm, p.label_manager, props(data))), p
    return (lambda data: p.predict_case_from_features(data, props(data)).segmentation), p


def _memory(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated())
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def measure_one(system: str, count: int, volume, patch: int, mirror: bool, device: str, save: str = "") -> dict:
    """Time and peak memory of one label-map prediction in this process (warm-up on one patch first)."""
    dev = torch.device(device)
    torch.set_num_threads(os.cpu_count() or 1)
    predict, _ = _predictor(system, count, volume, patch, mirror, dev)
    data = torch.randn((1, *volume), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        predict(data[:, :patch, :patch, :patch].clone())  # allocator, kernels, thread pools
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = float(torch.cuda.memory_allocated()) if dev.type == "cuda" else _memory(dev)
    t0 = time.perf_counter()
    with torch.no_grad():
        seg = predict(data)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    if save:
        import numpy as np
        np.save(save, np.asarray(seg))
    return {"seconds": seconds, "peak_bytes": _memory(dev), "before_bytes": before}


def measure_breakdown(volume, patch: int, mirror: bool, device: str, repeats: int = 5) -> dict:
    """Ours, split where the prompt count enters: the window (embeddings of every tile, independent of K by
    construction, timed once) and the head + export per prompt count (timed ``repeats`` times, interleaved,
    medians) -- robust against machine load that swamps whole-prediction timings."""
    from nnunet_causal.inference.chunked_export import export_case
    from nnunet_causal.inference.feature_window import AggregatedFeatures, aggregate_case

    dev = torch.device(device)
    torch.set_num_threads(os.cpu_count() or 1)
    _, p = _predictor("ours", 1, volume, patch, mirror, dev)
    data = torch.randn((1, *volume), generator=torch.Generator().manual_seed(2))
    t0 = time.perf_counter()
    agg = aggregate_case(p, data)
    window = time.perf_counter() - t0
    g = torch.Generator().manual_seed(1)
    props = {"spacing": [1.0] * 3, "shape_after_cropping_and_before_resampling": tuple(volume),
             "shape_before_cropping": tuple(volume), "bbox_used_for_cropping": [[0, s] for s in volume]}
    heads = {}
    for k in PROMPT_COUNTS:
        q = torch.randn(k, agg.features.shape[0], generator=g)
        heads[k] = AggregatedFeatures(agg.features, q, torch.randn(k, generator=g), torch.arange(k)[:, None],
                                      torch.ones(k, 1, dtype=torch.bool))
    times = {k: [] for k in PROMPT_COUNTS}
    for _ in range(repeats):
        for k in PROMPT_COUNTS:
            t0 = time.perf_counter()
            export_case(heads[k], props, p.plans_manager, p.configuration_manager, _dataset_json(k), None)
            times[k].append(time.perf_counter() - t0)
    return {"window_seconds": window, "export_seconds": {str(k): statistics.median(v) for k, v in times.items()}}


def _run_child(system, count, volume, patch, mirror, device, save="") -> dict:
    code = (f"import json; from nnunet_causal.benchmarking.perf3d import measure_one; "
            f"print('RESULT ' + json.dumps(measure_one({system!r}, {count}, {list(volume)}, {patch}, {mirror}, "
            f"{device!r}, {save!r})))")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"3D benchmark child {system} {count} failed:\n{out.stderr[-3000:]}")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def benchmark_3d(volume=(96, 160, 160), patch: int = 64, mirror: bool = True, repeats: int = 3,
                 device: str = "cpu", work: str = "") -> Dict:
    """Round robin over ours (1/32/117 prompts) and stock (2/33/118 classes); medians and ratios."""
    import numpy as np
    from tqdm import tqdm

    configs = [("ours", k) for k in PROMPT_COUNTS] + [("stock", k) for k in PROMPT_COUNTS]
    runs: Dict[str, List[dict]] = {f"{s}_{k}": [] for s, k in configs}
    with tqdm(total=repeats * len(configs) + 3, desc="3D benchmark") as bar:
        for _ in range(repeats):
            for s, k in configs:
                runs[f"{s}_{k}"].append(_run_child(s, k, volume, patch, mirror, device))
                bar.update()
        work = work or os.getcwd()
        files = {s: os.path.join(work, f"bench3d_{s}_32.npy") for s in ("ours", "ours_logits")}
        for s, f in files.items():
            _run_child(s, 32, volume, patch, mirror, device, save=f)
            bar.update()
        code = (f"import json; from nnunet_causal.benchmarking.perf3d import measure_breakdown; print('RESULT ' + "
                f"json.dumps(measure_breakdown({list(volume)}, {patch}, {mirror}, {device!r})))")
        out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"3D benchmark breakdown failed:\n{out.stderr[-3000:]}")
        breakdown = json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
        bar.update()
    a, b = np.load(files["ours"]), np.load(files["ours_logits"])
    agreement = float((a == b).mean())
    for f in files.values():
        os.remove(f)
    res = {"volume": list(volume), "patch": patch, "mirroring": mirror, "repeats": repeats, "device": device,
           "seconds": {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()},
           "peak_bytes": {k: max(r["peak_bytes"] for r in v) for k, v in runs.items()},
           "peak_above_start_bytes": {k: max(r["peak_bytes"] - r["before_bytes"] for r in v) for k, v in runs.items()},
           "label_map_agreement_feature_vs_logit_path_32_prompts": agreement, "breakdown": breakdown}
    ratios = {}
    for key in ("seconds", "peak_bytes", "peak_above_start_bytes"):
        m = res[key]
        ratios[key] = {"ours_32_vs_1": m["ours_32"] / m["ours_1"], "ours_117_vs_1": m["ours_117"] / m["ours_1"],
                       "stock_33_vs_2": m["stock_32"] / m["stock_1"], "stock_118_vs_2": m["stock_117"] / m["stock_1"],
                       "ours_117_vs_stock_118": m["ours_117"] / m["stock_117"],
                       "ours_1_vs_stock_2": m["ours_1"] / m["stock_1"]}
    res["ratios"] = ratios
    return res


def print_3d(res: Dict) -> None:
    mb = 2 ** 20
    print(f"3D prediction: volume {'x'.join(map(str, res['volume']))}, patch {res['patch']}^3, mirroring "
          f"{'on' if res['mirroring'] else 'off'}, {res['repeats']} repeat(s), {res['device']} (medians)")
    print(f"  {'':24s}{'time (s)':>10s}{'peak (MiB)':>12s}{'above start (MiB)':>19s}")
    for s, label in (("ours", "ours, {} prompt(s)"), ("stock", "stock, {} classes")):
        for k in PROMPT_COUNTS:
            key = f"{s}_{k}"
            n = k if s == "ours" else k + 1
            print(f"  {label.format(n):24s}{res['seconds'][key]:10.2f}{res['peak_bytes'][key] / mb:12.0f}"
                  f"{res['peak_above_start_bytes'][key] / mb:19.0f}")
    r = res["ratios"]
    print(f"  {'ratio':24s}{'time':>10s}{'peak':>12s}{'above start':>19s}")
    for name, label in (("ours_32_vs_1", "ours 32/1 prompts"), ("ours_117_vs_1", "ours 117/1 prompts"),
                        ("stock_33_vs_2", "stock 33/2 classes"), ("stock_118_vs_2", "stock 118/2 classes"),
                        ("ours_117_vs_stock_118", "ours 117 / stock 118"), ("ours_1_vs_stock_2", "ours 1 / stock 2")):
        print(f"  {label:24s}{r['seconds'][name]:10.3f}{r['peak_bytes'][name]:12.3f}"
              f"{r['peak_above_start_bytes'][name]:19.3f}")
    b = res["breakdown"]
    e = b["export_seconds"]
    w = b["window_seconds"]
    print(f"  ours, split: window (embeddings, any K) {w:.2f} s; head + export {e['1']:.3f} / {e['32']:.3f} / "
          f"{e['117']:.3f} s for 1 / 32 / 117 prompts -> 117/1 = {(w + e['117']) / (w + e['1']):.3f}, "
          f"32/1 = {(w + e['32']) / (w + e['1']):.3f}")
    print(f"  label maps, feature vs logit path (32 prompts): {100 * res['label_map_agreement_feature_vs_logit_path_32_prompts']:.4f}% "
          f"of voxels equal")


def time_resampling_modes(network_shape=(48, 80, 80), original_shape=(72, 120, 120), embed_dim: int = 32,
                          counts: Sequence[int] = PROMPT_COUNTS, repeats: int = 2) -> Dict:
    """Seconds of the chunked export to the original spacing, resampling the embeddings once (``features``)
    vs each chunk's logits (``logits``), on random embeddings; and the largest difference of the two label
    maps' source logits (both exact, so only rounding). In this process, interleaved, medians."""
    from nnunet_causal.inference.chunked_export import export_case
    from nnunet_causal.inference.feature_window import AggregatedFeatures
    from nnunet_causal.networks.text_head import MLPConnector  # noqa: F401 - documents where queries come from
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    torch.set_num_threads(os.cpu_count() or 1)
    pm = PlansManager(_plans(network_shape, 32))
    cm = pm.get_configuration("3d_fullres")
    spacing = [a / b for a, b in zip(network_shape, original_shape)]
    props = {"spacing": spacing, "shape_after_cropping_and_before_resampling": tuple(original_shape),
             "shape_before_cropping": tuple(original_shape), "bbox_used_for_cropping": [[0, s] for s in original_shape]}
    g = torch.Generator().manual_seed(0)
    feats = torch.randn((embed_dim, *network_shape), generator=g)
    times = {(m, k): [] for k in counts for m in ("features", "logits")}
    agree = {}
    for _ in range(repeats):
        for k in counts:
            agg = AggregatedFeatures(feats, torch.randn(k, embed_dim, generator=g) / embed_dim ** 0.5,
                                     torch.randn(k, generator=g), torch.arange(k)[:, None], torch.ones(k, 1, dtype=torch.bool))
            segs = {}
            for m in ("features", "logits"):
                t0 = time.perf_counter()
                segs[m] = export_case(agg, props, pm, cm, _dataset_json(k), None, mode=m)["segmentation"]
                times[(m, k)].append(time.perf_counter() - t0)
            agree[k] = float((segs["features"] == segs["logits"]).mean())
    return {"network_shape": list(network_shape), "original_shape": list(original_shape), "embed_dim": embed_dim,
            "seconds": {f"{m}_{k}": statistics.median(v) for (m, k), v in times.items()},
            "label_map_agreement": agree}


def print_resampling(res: Dict) -> None:
    print(f"resampling to the original spacing ({'x'.join(map(str, res['network_shape']))} -> "
          f"{'x'.join(map(str, res['original_shape']))}, E = {res['embed_dim']}, medians, seconds):")
    print(f"  {'prompts':>8s}{'embeddings once':>17s}{'logits in chunks':>18s}{'label maps equal':>18s}")
    for k in PROMPT_COUNTS:
        if f"features_{k}" in res["seconds"]:
            print(f"  {k:8d}{res['seconds'][f'features_{k}']:17.2f}{res['seconds'][f'logits_{k}']:18.2f}"
                  f"{100 * res['label_map_agreement'][k]:17.3f}%")
