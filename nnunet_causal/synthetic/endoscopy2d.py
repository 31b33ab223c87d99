"""Synthetic colonoscopy-like RGB frames from several sites, written as an nnU-Net v2 raw dataset.

A frame (``(H, W, 3)`` uint8 RGB, saved as ``CASE_0000.png`` for nnU-Net's ``NaturalImage2DIO``; label
``CASE.png`` uint8 with 0 = background, 1 = polyp) shows pink mucosa (smoothed-noise texture, a dark lumen,
haustral folds as shaded bands, thin vessels) and 0-2 polyps: dome-shaped bumps with an irregular outline,
lit from the upper left, with a finer texture and no visible vessels -- the polyp's colour is the mucosa's
colour, so shape and shading, not hue, identify it.

Each site (domain) has an :class:`EndoscopyStyle`: colour cast, NBI-like channel mapping (green/blue
dominance), brightness, vignetting, blur, sensor noise, JPEG blockiness and a number of specular highlights.

Spurious cue (``spurious_cue="specular"``): in the source sites specular highlights (small saturated white
blobs) sit only on polyps and polyps are slightly redder; in the held-out site the highlights are twice as
many, scattered uniformly over the frame (so they land on mucosa far more often than on polyps) and polyps
have the mucosa's hue. A network that learned "white blob / red = polyp" fails on the held-out site, one
that learned the bump does not.

Everything is deterministic: case ``i`` of domain ``d`` is drawn from ``default_rng([seed, crc32(d), i])``,
so a case does not change when other domains or more cases are added.
"""
from __future__ import annotations

import io
import logging
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from nnunet_causal.data.raw_dataset import atomic_path, write_dataset_json
from nnunet_causal.errors import DatasetError
from nnunet_causal.synthetic.reports import write_endoscopy_report, write_reports_file
from nnunet_causal.synthetic.styles import describe_endoscopy_style

logger = logging.getLogger(__name__)

SPURIOUS_CUES = ("specular",)
LABELS = {"background": 0, "polyp": 1}
PROMPTS = {"polyp": ["polyp", "colorectal polyp"]}
MUCOSA_RGB = (0.85, 0.45, 0.42)      # linear-ish RGB in [0, 1] before the site style
CUE_POLYP_TINT = (1.08, 0.92, 0.92)  # "slightly redder" polyps of the source sites under the specular cue


@dataclass(frozen=True)
class EndoscopyStyle:
    """Imaging style of one site. Intensities are in [0, 1] (before the 8-bit conversion), sizes in pixels.

    colour_gain: per-channel RGB gain (colour cast); nbi: narrow-band-imaging look (red suppressed, green and
    blue carry the signal); vignetting: relative darkening at the corners (0..1); blur_sigma: Gaussian blur
    sigma (px); noise_sigma: additive Gaussian noise sigma; brightness: global gain; highlights: specular
    highlights per frame; jpeg_quality: JPEG round-trip quality (1-95) for blockiness, None for none;
    chromatic_aberration: lateral colour fringing, red and blue shifted radially by up to this many pixels in
    opposite directions; interlace: video interlacing, every other row shifted by 1 px and darkened by this
    fraction. The last two are on purpose *not* simulated by any shipped confounder dictionary entry: a site
    with them tests generalisation beyond the named confounders.
    """
    colour_gain: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    nbi: bool = False
    vignetting: float = 0.3
    blur_sigma: float = 0.0
    noise_sigma: float = 0.02
    brightness: float = 1.0
    highlights: int = 3
    jpeg_quality: Optional[int] = None
    chromatic_aberration: float = 0.0
    interlace: float = 0.0


DEFAULT_SITE_STYLES: Dict[str, EndoscopyStyle] = {
    "siteA": EndoscopyStyle((1.0, 0.97, 0.95), False, 0.3, 0.0, 0.015, 1.0, 3, None),
    "siteB": EndoscopyStyle((1.18, 0.88, 0.82), False, 0.5, 0.8, 0.03, 0.92, 3, 60),
    "siteC": EndoscopyStyle((0.92, 1.0, 1.06), False, 0.15, 0.4, 0.02, 1.08, 4, None),
    "siteD": EndoscopyStyle((0.85, 1.05, 1.12), True, 0.4, 0.5, 0.04, 0.95, 4, 35),
    "siteE": EndoscopyStyle((1.05, 1.0, 0.85), False, 0.6, 1.2, 0.05, 0.85, 5, 50),
    # a site whose style includes shifts that no dictionary entry simulates (lateral chromatic aberration,
    # interlacing), plus an unseen warm cast
    "siteU": EndoscopyStyle((1.1, 0.95, 0.8), False, 0.35, 0.3, 0.03, 1.0, 4, None, 2.5, 0.25),
}


class Frame(NamedTuple):
    """One rendered frame: ``image`` (H, W, 3) uint8 RGB, ``label`` (H, W) uint8 in {0, 1}, ``highlights``
    (H, W) bool -- the specular-highlight pixels (ground truth for checking the spurious cue)."""
    image: np.ndarray
    label: np.ndarray
    highlights: np.ndarray


def domain_seed(name: str) -> int:
    """A stable integer for a domain name (``zlib.crc32``; Python's ``hash`` changes between runs)."""
    return zlib.crc32(name.encode("utf-8"))


def style_for_domain(name: str, styles: Optional[Dict[str, EndoscopyStyle]] = None) -> EndoscopyStyle:
    """The style of a site: from ``styles``, else :data:`DEFAULT_SITE_STYLES`, else drawn from the name."""
    if styles and name in styles:
        return styles[name]
    if name in DEFAULT_SITE_STYLES:
        return DEFAULT_SITE_STYLES[name]
    rng = np.random.default_rng([domain_seed(name), 17])
    return EndoscopyStyle(colour_gain=tuple(float(g) for g in rng.uniform(0.85, 1.15, 3)), nbi=bool(rng.random() < 0.2),
                          vignetting=float(rng.uniform(0.1, 0.6)), blur_sigma=float(rng.uniform(0, 1.2)),
                          noise_sigma=float(rng.uniform(0.01, 0.05)), brightness=float(rng.uniform(0.85, 1.1)),
                          highlights=int(rng.integers(2, 6)),
                          jpeg_quality=None if rng.random() < 0.5 else int(rng.integers(30, 80)))


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return n / (n.std() + 1e-8)


def _irregular_disc(rng: np.random.Generator, shape, centre, radius: float) -> np.ndarray:
    """Boolean disc whose radius is modulated by random low harmonics of the polar angle (px units)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dy, dx = yy - centre[0], xx - centre[1]
    angle = np.arctan2(dy, dx)
    wobble = sum(rng.uniform(-0.12, 0.12) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    return np.hypot(dy, dx) <= radius * (1 + wobble)


def _mucosa(rng: np.random.Generator, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Mucosa without vessels ``(H, W, 3)`` and a vessel mask ``(H, W)``."""
    h, w = size
    scale = max(h, w) / 64.0
    tex = 0.05 * _smooth_noise(rng, size, 2.0 * scale) + 0.04 * _smooth_noise(rng, size, 6.0 * scale)
    img = np.asarray(MUCOSA_RGB)[None, None] * (1 + tex[..., None])
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    # dark lumen: a broad darkening centred somewhere off the middle
    cy, cx = rng.uniform(0.2, 0.8, 2)
    lumen = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(0.08, 0.15) ** 2))
    img *= (1 - rng.uniform(0.4, 0.7) * lumen)[..., None]
    # haustral folds: shaded bands with a bright crest and a dark trough
    theta = rng.uniform(0, np.pi)
    phase = (np.cos(theta) * yy + np.sin(theta) * xx) * rng.uniform(9, 15) + rng.uniform(0, 2 * np.pi)
    img *= (1 + 0.08 * np.sin(phase) - 0.1 * np.clip(np.cos(phase), 0, 1) ** 4)[..., None]
    # vessels: thin curves along a level set of smooth noise
    vessels = np.abs(_smooth_noise(rng, size, 3.0 * scale)) < 0.06
    return img, vessels


def _add_polyp(rng: np.random.Generator, img: np.ndarray, label: np.ndarray, tint) -> None:
    """Draw one polyp into ``img`` (in place) and mark it in ``label``."""
    h, w = label.shape
    r = rng.uniform(0.1, 0.2) * min(h, w)
    centre = (rng.uniform(r, h - r), rng.uniform(r, w - r))
    m = _irregular_disc(rng, (h, w), centre, r) & (label == 0)
    if m.sum() < 4:
        return
    label[m] = 1
    dist = ndimage.distance_transform_edt(m)
    height = np.sqrt(dist / (dist.max() + 1e-8))      # dome profile, 0 at the rim, 1 at the top
    gy, gx = np.gradient(height * r / 4)              # light from the upper left
    shade = np.clip(1 + 0.6 * (-gy - gx), 0.6, 1.5) * (0.97 + 0.08 * height)
    fine = 1 + 0.06 * _smooth_noise(rng, (h, w), 0.8)  # finer grain than the mucosa
    soft = np.clip(ndimage.gaussian_filter(m.astype(float), 0.7) * 1.5, 0, 1)  # soft edge for the colour only
    polyp_rgb = img * np.asarray(tint)[None, None] * (shade * fine)[..., None]
    rim = m & ~ndimage.binary_erosion(m)
    polyp_rgb[rim] *= 0.88                             # thin shadow line along the outline
    img[:] = img * (1 - soft[..., None]) + polyp_rgb * soft[..., None]


def _add_highlights(rng: np.random.Generator, img: np.ndarray, allowed: np.ndarray, count: int) -> np.ndarray:
    """Paint ``count`` small saturated white blobs centred in ``allowed`` (and clipped to it); return their mask."""
    h, w = allowed.shape
    mask = np.zeros((h, w), bool)
    ys, xs = np.nonzero(allowed)
    if len(ys) == 0:
        return mask
    scale = max(h, w) / 64.0
    for _ in range(count):
        i = rng.integers(len(ys))
        mask |= _irregular_disc(rng, (h, w), (ys[i], xs[i]), rng.uniform(0.8, 1.8) * scale) & allowed
    glow = np.clip(ndimage.gaussian_filter(mask.astype(float), 0.6) * 2.0, 0, 1)
    glow[mask] = 1.0
    img[:] = img * (1 - glow[..., None]) + glow[..., None] * 1.5   # over-exposed: stays saturated after blur
    return mask


def _colour_style(img: np.ndarray, style: EndoscopyStyle) -> np.ndarray:
    """Colour cast, brightness, NBI mapping and vignetting of a ``(H, W, 3)`` image."""
    img = img * np.asarray(style.colour_gain)[None, None] * style.brightness
    if style.nbi:
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        img = np.stack([0.3 * r + 0.1 * g, 0.5 * r + 0.8 * g, 0.4 * r + 0.9 * b + 0.1], -1)
    h, w = img.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    rr2 = (((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2) / 2
    return img * (1 - style.vignetting * rr2)[..., None]


def _lens_and_video(img: np.ndarray, style: EndoscopyStyle) -> np.ndarray:
    """Lateral chromatic aberration (red scaled out, blue scaled in about the centre) and interlacing."""
    h, w = img.shape[:2]
    if style.chromatic_aberration > 0:
        yy, xx = np.mgrid[:h, :w].astype(float)
        cy, cx = (h - 1) / 2, (w - 1) / 2
        for ch, sign in ((0, 1.0), (2, -1.0)):
            k = 1 + sign * style.chromatic_aberration / (max(h, w) / 2)
            coords = [cy + (yy - cy) / k, cx + (xx - cx) / k]
            img[..., ch] = ndimage.map_coordinates(img[..., ch], coords, order=1, mode="nearest")
    if style.interlace > 0:
        img[1::2] = np.roll(img[1::2], 1, axis=1) * (1 - style.interlace)
    return img


def _sensor_style(rng: np.random.Generator, img: np.ndarray, style: EndoscopyStyle) -> np.ndarray:
    """Blur, noise, 8-bit quantisation and JPEG round trip; returns uint8 ``(H, W, 3)``."""
    img = _lens_and_video(img, style)
    if style.blur_sigma > 0:
        img = ndimage.gaussian_filter(img, (style.blur_sigma, style.blur_sigma, 0))
    img = img + rng.normal(0, style.noise_sigma, img.shape)
    out = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    if style.jpeg_quality is not None:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(style.jpeg_quality))
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy()
    return out


def render_frame(rng: np.random.Generator, size: Tuple[int, int], style: EndoscopyStyle,
                 spurious_cue: Optional[str] = None, heldout: bool = False) -> Frame:
    """Render one frame of ``size = (H, W)`` pixels in a site's ``style``.

    ``spurious_cue="specular"``: source frames (``heldout=False``) get highlights only on polyps and redder
    polyps; held-out frames get twice the highlights, uniformly over the frame, and no tint. Without a cue,
    highlights fall anywhere.
    """
    if spurious_cue not in (None, *SPURIOUS_CUES):
        raise DatasetError(f"unknown spurious cue '{spurious_cue}' (known: {', '.join(SPURIOUS_CUES)} or None)")
    h, w = size
    img, vessels = _mucosa(rng, (h, w))
    label = np.zeros((h, w), np.uint8)
    cue_source = spurious_cue == "specular" and not heldout
    tint = CUE_POLYP_TINT if cue_source else (1.0, 1.0, 1.0)
    for _ in range(int(rng.choice([0, 1, 1, 2]))):
        _add_polyp(rng, img, label, tint)
    img[vessels & (label == 0)] *= np.array([0.78, 0.62, 0.7])
    img = _colour_style(img, style)
    if cue_source:
        allowed, count = label == 1, max(style.highlights, 2)
    elif spurious_cue == "specular":
        allowed, count = np.ones((h, w), bool), 2 * style.highlights + 2
    else:
        allowed, count = np.ones((h, w), bool), style.highlights
    highlights = _add_highlights(rng, img, allowed, count)
    return Frame(_sensor_style(rng, img, style), label, highlights)


def _polyp_facts(label: np.ndarray) -> list:
    """Each connected polyp of a frame: size word (area over that of the mean drawn radius) and position."""
    from nnunet_causal.synthetic.reports import frame_position, size_word

    components, n = ndimage.label(label == 1)
    reference = np.pi * (0.15 * min(label.shape)) ** 2
    return [{"size": size_word(float((components == k).sum()) / reference),
             "position": frame_position(components == k)} for k in range(1, n + 1)]


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def make_endoscopy_dataset(out_folder, n_cases_per_domain: int = 24,
                           domains: Sequence[str] = ("siteA", "siteB", "siteC"),
                           heldout_domain=None, spurious_cue: Optional[str] = None,
                           image_size: Tuple[int, int] = (96, 96), seed: int = 0, test_fraction: float = 0.2,
                           styles: Optional[Dict[str, EndoscopyStyle]] = None,
                           dataset_name: Optional[str] = None, reports: bool = False) -> Path:
    """Write a multi-site raw dataset of synthetic frames to ``out_folder`` (``.../DatasetXXX_Name``).

    ``reports=True`` also writes ``reports.jsonl`` (:mod:`nnunet_causal.synthetic.reports`): per frame the
    polyps found in its label, each with a size word and its position in the frame; images and labels are
    the same as without reports.

    Per domain ``n_cases_per_domain`` frames are drawn; ``round(test_fraction * n)`` of them go to
    imagesTs/labelsTs, the rest to imagesTr/labelsTr. Cases of every domain (held-out one included) are in
    imagesTr so that leave-one-domain-out folds can be made; dataset.json holds a domain record for every
    case (train and test; ``"heldout": true`` marks the domain where the spurious cue is broken).
    ``image_size`` is (H, W) in pixels. ``heldout_domain``: one name or a list of names. Returns the dataset
    folder.
    """
    domains = list(domains)
    if not domains or len(set(domains)) != len(domains):
        raise DatasetError(f"domains must be distinct names, got {domains}")
    heldout = [] if heldout_domain is None else ([heldout_domain] if isinstance(heldout_domain, str)
                                                 else list(heldout_domain))
    for h in heldout:
        if h not in domains:
            raise DatasetError(f"held-out domain '{h}' is not among the domains {domains}")
    if spurious_cue not in (None, *SPURIOUS_CUES):
        raise DatasetError(f"unknown spurious cue '{spurious_cue}' (known: {', '.join(SPURIOUS_CUES)} or None)")
    if not 0 <= test_fraction < 1:
        raise DatasetError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n_test = int(round(test_fraction * n_cases_per_domain))
    if n_cases_per_domain - n_test < 1:
        raise DatasetError(f"{n_cases_per_domain} case(s) per domain with test_fraction {test_fraction} leave no "
                           f"training case")
    size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 16:
        raise DatasetError(f"image_size must be (H, W) with both >= 16 pixels, got {image_size}")
    out = Path(out_folder)
    records: Dict[str, dict] = {}
    n_train = 0
    site_styles = {d: style_for_domain(d, styles) for d in domains}
    jobs = [(d, i) for d in domains for i in range(n_cases_per_domain)]
    texts: Dict[str, str] = {}
    facts: Dict[str, dict] = {}
    for domain, i in tqdm(jobs, desc=f"synth endoscopy2d -> {dataset_name or out.name}", disable=len(jobs) < 50):
        style, is_heldout = site_styles[domain], domain in heldout
        frame = render_frame(np.random.default_rng([seed, domain_seed(domain), i]), size, style, spurious_cue, is_heldout)
        split = "Ts" if i >= n_cases_per_domain - n_test else "Tr"
        case = f"{domain}_{i:04d}"
        _save_png(frame.image, out / f"images{split}" / f"{case}_0000.png")
        _save_png(frame.label, out / f"labels{split}" / f"{case}.png")
        records[case] = {"domain": domain, "site": domain, "modality": "endoscopy",
                         "scanner": "NBI colonoscope" if style.nbi else "white-light colonoscope",
                         "style": describe_endoscopy_style(domain, style), "source": "nnunet_causal synthetic",
                         "split": "train" if split == "Tr" else "test", "heldout": is_heldout}
        n_train += split == "Tr"
        if reports:
            polyps = _polyp_facts(frame.label)
            facts[case] = {"polyp": {"present": bool(polyps), "count": len(polyps), "polyps": polyps}}
            texts[case] = write_endoscopy_report(np.random.default_rng([seed, domain_seed(domain), i, 7]), polyps)
    (out / "imagesTs").mkdir(parents=True, exist_ok=True)  # nnU-Net expects the folder even when empty
    extra = {"reports": write_reports_file(out, texts, facts).name} if reports else {}
    write_dataset_json(out, {"0": "R", "1": "G", "2": "B"}, LABELS, n_train, ".png", prompts=PROMPTS,
                       domains=records, dataset_name=dataset_name or out.name, imaging_family="endoscopy",
                       description=f"synthetic colonoscopy frames from sites {domains}; held-out site(s) "
                                   f"{heldout or None}; spurious cue {spurious_cue}",
                       synthetic={"generator": "endoscopy2d", "seed": seed, "spurious_cue": spurious_cue,
                                  "heldout_domain": heldout[0] if len(heldout) == 1 else (heldout or None), "image_size": list(size),
                                  "styles": {d: asdict(s) for d, s in site_styles.items()}}, **extra)
    logger.info("wrote %d training and %d test frames to %s", n_train, len(records) - n_train, out)
    return out
