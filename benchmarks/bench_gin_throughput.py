"""Data-augmentation throughput with and without GIN / IPA, side by side in one run.

Measures batches per second of (a) nnU-Net's own CPU augmentation pipeline for the plans' 2D patch and
batch size, (b) the same pipeline with :class:`GINTransform` (GIN, or IPA) appended in the workers, and
(c) the stock pipeline plus GIN / IPA applied to the collated batch on the training device (what the
trainers do by default). Runs on synthetic samples so that it needs no dataset.

Usage: python benchmarks/bench_gin_throughput.py [--device cpu|cuda] [--batches 20]
"""
from __future__ import annotations

import argparse
import time

import torch

from nnunet_causal.augmentation.gin import GINTransform, gin, ipa


def stock_pipeline(patch, dim):
    from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
    from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform
    from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
    from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
    return ComposeTransforms([
        SpatialTransform(patch, patch_center_dist_from_border=0, random_crop=False, p_elastic_deform=0,
                         p_rotation=0.2, rotation=(-3.14, 3.14), p_scaling=0.2, scaling=(0.7, 1.4),
                         p_synchronize_scaling_across_axes=1, bg_style_seg_sampling=False),
        GaussianNoiseTransform(noise_variance=(0, 0.1), p_per_channel=1, synchronize_channels=True),
        GaussianBlurTransform(blur_sigma=(0.5, 1.0), synchronize_channels=False, synchronize_axes=False,
                              p_per_channel=0.5, benchmark=True),
        MultiplicativeBrightnessTransform(multiplier_range=(0.75, 1.25), synchronize_channels=False,
                                          p_per_channel=1),
        ContrastTransform(contrast_range=(0.75, 1.25), preserve_range=True, synchronize_channels=False,
                          p_per_channel=1),
        MirrorTransform(allowed_axes=tuple(range(dim))),
    ])


def batches_per_second(pipeline, extra, batch, patch, channels, n, device):
    samples = [(torch.randn(channels, *patch), torch.randint(0, 2, (1, *patch)).to(torch.int16))
               for _ in range(batch)]
    t0 = time.perf_counter()
    for _ in range(n):
        out = [pipeline(image=img.clone(), segmentation=seg.clone()) for img, seg in samples]
        data = torch.stack([o["image"] for o in out]).to(device)
        if extra is not None:
            data = extra(data)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--patch", type=int, nargs="+", default=[128, 128])
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--channels", type=int, default=3)
    a = p.parse_args(argv)
    device = torch.device(a.device)
    patch = tuple(a.patch)
    base = stock_pipeline(patch, len(patch))
    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
    variants = {
        "stock": (base, None),
        "GIN in workers": (ComposeTransforms([*base.transforms, GINTransform()]), None),
        "IPA in workers": (ComposeTransforms([*base.transforms, GINTransform(use_ipa=True)]), None),
        "GIN on device": (base, lambda x: gin(x)),
        "IPA on device": (base, lambda x: ipa(x)),
    }
    rates = {k: [] for k in variants}
    for _ in range(3):  # interleaved rounds
        for k, (pipe, extra) in variants.items():
            rates[k].append(batches_per_second(pipe, extra, a.batch_size, patch, a.channels, a.batches // 3 + 1,
                                               device))
    stock = sorted(rates["stock"])[1]
    print(f"device {device}, patch {patch}, batch {a.batch_size}, {a.channels} channels (median of 3 rounds)")
    for k, v in rates.items():
        r = sorted(v)[1]
        print(f"  {k:16s} {r:7.2f} batches/s   ({r / stock:.2f} x stock)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
