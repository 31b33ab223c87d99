"""``ignore_confounder``: a do-operation on a named confounder, on the bottleneck where the model has one, else
on the image where the confounder's simulators can be undone.

* **Causal models** (``nnUNetTrainerCausalText``: confounder cross-attention, MCDRL seed 001): the named
  dictionary entry is taken out of the keys and values the bottleneck attends to (its row of
  ``confounder_embeddings`` dropped), so its attention contribution is removed and the softmax renormalises
  over the remaining entries; with no entry left the bottleneck contributes nothing (the identity). Only the
  bottleneck and the decoder re-run, on the cached encoder features.
* **Other text models**: the entry of the model's confounder dictionary is looked up; if every simulator it
  names has an inverse here (:data:`INVERSES`), those inverses are applied to the preprocessed image in the
  simulators' working space (:class:`~nnunet_causal.confounders.frames.IntensityFrame`) in reverse order and
  the case is predicted again (encoder included: the image changed). The inverses are estimators, not exact
  algebraic inverses (the simulators draw random parameters): denoising for noise, unsharp masking for blur,
  flat-field division for illumination, grey-world balance for colour casts, gamma normalisation for
  exposure.
* Anything else is a :class:`~nnunet_causal.errors.ModelError` naming what the model lacks.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, List, Sequence

import torch

from nnunet_causal.confounders.base import gaussian_blur
from nnunet_causal.errors import ModelError


def _words(text: str) -> set:
    return set(re.findall(r"[a-z0-9]+", text.lower())) - {"a", "an", "the", "with", "and", "of", "frame", "image",
                                                          "scan", "on", "in"}


def match_confounder(name: str, descriptions: Sequence[str]) -> int:
    """Index of the dictionary entry ``name`` refers to: exact (case-insensitive), then containment, then the
    largest word overlap; a :class:`ModelError` listing the entries when nothing matches."""
    if not name or not name.strip():
        raise ModelError("ignore_confounder needs the confounder's name")
    low = " ".join(name.lower().split())
    norm = [" ".join(d.lower().split()) for d in descriptions]
    if low in norm:
        return norm.index(low)
    contained = [i for i, d in enumerate(norm) if low in d or d in low]
    if len(contained) == 1:
        return contained[0]
    words = _words(name)
    scores = [len(words & _words(d)) / max(1, len(words | _words(d))) for d in descriptions]
    best = max(range(len(descriptions)), key=scores.__getitem__) if descriptions else None
    if best is None or scores[best] == 0:
        raise ModelError(f"confounder '{name}' is not in the model's dictionary; its entries are: "
                         + "; ".join(f"'{d}'" for d in descriptions))
    return best


def bottleneck_without(network, drop: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f(deepest encoder feature) -> bottleneck output`` with the entries ``drop`` removed from attention."""
    bottleneck = network.bottleneck
    m = bottleneck.confounder_embeddings.shape[0]
    keep = [i for i in range(m) if i not in set(drop)]

    def run(deepest: torch.Tensor) -> torch.Tensor:
        if not keep or bottleneck.num_layers == 0:
            return deepest
        saved = bottleneck.confounder_embeddings
        bottleneck.confounder_embeddings = saved[keep]
        try:
            out, _ = bottleneck(deepest, network.prompt_embeddings)
        finally:
            bottleneck.confounder_embeddings = saved
        return out
    return run


# ------------------------------------------------------------------ image-side inverses (working space, (B, C, *S))
def _sigma(x, value):
    return torch.full((x.shape[0],), float(value), device=x.device, dtype=x.dtype)


def _denoise(x):
    return gaussian_blur(x, _sigma(x, 0.8))


def _sharpen(x):
    return x + 1.0 * (x - gaussian_blur(x, _sigma(x, 1.0)))


def _flat_field(x):
    big = max(2.0, min(x.shape[2:]) / 8)
    low = gaussian_blur(x, _sigma(x, big))
    dims = tuple(range(2, x.ndim))
    return x / low.clamp_min(1e-3) * low.mean(dims, keepdim=True)


def _grey_world(x):
    dims = tuple(range(2, x.ndim))
    mean = x.mean(dims, keepdim=True)
    return x * (mean.mean(1, keepdim=True) / mean.clamp_min(1e-6))


def _gamma_normalise(x):
    dims = tuple(range(2, x.ndim))
    m = x.clamp(1e-4, 1).mean(dims, keepdim=True).clamp(1e-3, 0.999)
    return x.clamp(0, 1) ** (torch.log(torch.tensor(0.5, dtype=x.dtype, device=x.device)) / torch.log(m))


#: simulator name -> estimator of its inverse (working space)
INVERSES: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sensor_noise": _denoise, "rician_noise": _denoise, "low_dose_noise": _denoise,
    "defocus_blur": _sharpen, "motion_blur": _sharpen,
    "vignetting": _flat_field, "uneven_illumination": _flat_field, "bias_field": _flat_field,
    "colour_cast": _grey_world, "exposure": _gamma_normalise,
}


def inverse_steps(entry) -> List[str]:
    """Simulator names of a dictionary entry in the order their inverses are applied; ModelError if one has
    none (or the entry is text only)."""
    names = [s.name for s in entry.simulators]
    if not names:
        raise ModelError(f"confounder '{entry.description}' ({entry.where}) is text only (no simulator) and the "
                         f"model has no confounder bottleneck: it cannot be ignored by this model; train it with "
                         f"-tr nnUNetTrainerCausalText")
    missing = [n for n in names if n not in INVERSES]
    if missing:
        raise ModelError(f"the model cannot ignore '{entry.description}': it has no confounder bottleneck "
                         f"(not trained with nnUNetTrainerCausalText) and simulator(s) {', '.join(missing)} have "
                         f"no inverse (inverses exist for {', '.join(sorted(INVERSES))})")
    return names[::-1]


def invert_image(data: torch.Tensor, steps: Sequence[str], frame, two_d: bool) -> torch.Tensor:
    """Apply the inverses ``steps`` to a preprocessed image (C, *spatial); a 2D model's (C, Z, H, W) image is a
    batch of Z slices, as the network sees it (``two_d``)."""
    x = data.permute(1, 0, 2, 3) if two_d else data[None]
    w = frame.to_working(x)
    for name in steps:
        w = INVERSES[name](w)
    out = frame.from_working(w, x)
    return out.permute(1, 0, 2, 3).contiguous() if two_d else out[0]
