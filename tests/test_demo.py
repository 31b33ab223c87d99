"""The demo (``./scripts/demo.sh`` -> ``python -m nnunet_causal.demo``), end to end on its smallest settings:
one training case per site, 32 x 32 frames, one trainer with a 2 x 4-step schedule found through the user's own
``nnUNet_extTrainer`` folder (the demo adds the package's trainer folder after it).

What the demo promises and the test checks: ``report.md`` with one Dice row per trainer and per site (the
held-out site D and the in-domain site A), one column per prompt of the prompt file; each Dice the mean over
the site's test cases of the Dice between the written binary mask and ``labelsTs`` (recomputed here from the
files); the synonym never seen in training grounded to the trained query (the same mask as ``polyp``); PNG
overlays that are the input frame upscaled x3 with the reference contour in green and the prediction's in red.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY_TRAINER_MODULE

TRAINER = "nnUNetTrainerCausalText_Tiny"  # 2 epochs x 4 iterations (tests/conftest.py)
SIZE = 32
DATASET = "Dataset990_DemoPolypSites"
PROMPTS = ["polyp", "polypoid lesion", "raised mucosal bump"]  # the first name of each prompt-file line
SITES = {"siteD": "held-out", "siteA": "in-domain"}
GREEN, RED = (0, 255, 0), (255, 0, 0)


def reference_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks, 1.0 when both are empty."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def contour(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (outside the image counts as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


def test_the_demo_keeps_the_users_trainer_folders_and_adds_the_package_folder_after_them(tmp_path):
    from nnunet_causal.demo import ext_trainer_path
    from nnunet_causal.env_cli import ext_trainer_folder

    ours, a, b = str(ext_trainer_folder()), str(tmp_path / "a"), str(tmp_path / "b")
    assert ext_trainer_path(None) == ext_trainer_path("") == ours
    assert ext_trainer_path(os.pathsep.join([a, b])) == os.pathsep.join([a, b, ours])
    assert ext_trainer_path(os.pathsep.join([ours, a, ""])) == os.pathsep.join([ours, a])  # named once, in place


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    """Run the demo once as a user would (a subprocess), with a test-only trainer folder in nnUNet_extTrainer."""
    root = tmp_path_factory.mktemp("demo")
    trainers = root / "user_trainers"
    trainers.mkdir()
    (trainers / "demo_test_trainers.py").write_text(TINY_TRAINER_MODULE)
    env = dict(os.environ, nnUNet_extTrainer=str(trainers), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               nnUNet_compile="false", OMP_NUM_THREADS="2")
    out = root / "demo_output"
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "nnunet_causal.demo", "--output", str(out), "--cases-per-site", "1",
                           "--size", str(SIZE), "--trainers", TRAINER], env=env, capture_output=True, text=True,
                          timeout=840)
    print(f"demo: {time.time() - t0:.0f} s")
    log = out / "commands.log"
    assert proc.returncode == 0, (f"demo failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n"
                                  + (log.read_text()[-3000:] if log.is_file() else ""))
    return out, proc.stdout


def report_rows(report: str):
    """``(header cells, {(trainer, site cell): value cells})`` of the Dice table."""
    lines = [l for l in report.splitlines() if l.startswith("|")]
    cells = [[c.strip() for c in l.strip("|").split("|")] for l in lines]
    return cells[0], {(c[0], c[1]): c[2:] for c in cells[2:]}


@pytest.mark.slow
def test_the_user_trainer_folder_is_kept_and_the_report_names_every_trainer_and_site(demo_output):
    out, stdout = demo_output
    log = (out / "commands.log").read_text()
    assert f"Using trainer '{TRAINER}' from: {out.parent / 'user_trainers'}" in log
    report = (out / "report.md").read_text()
    assert f"report: {out / 'report.md'}" in stdout
    header, rows = report_rows(report)
    assert header == ["trainer", "site"] + [f"`{p}`" for p in PROMPTS]
    assert list(rows) == [(TRAINER, f"{site} ({tag})") for site, tag in SITES.items()]


@pytest.mark.slow
def test_each_dice_is_the_mean_over_the_sites_test_cases_of_the_written_masks(demo_output):
    out, _ = demo_output
    raw = out / "nnUNet_raw" / DATASET
    domains = json.loads((raw / "dataset.json").read_text())["domains"]
    _, rows = report_rows((out / "report.md").read_text())
    for site, tag in SITES.items():
        pred = out / "predictions" / TRAINER / site
        cases = sorted(c for c, r in domains.items()
                       if r["domain"] == site and (raw / "labelsTs" / f"{c}.png").exists())
        assert len(cases) == 8  # the demo's fixed test cases per site
        assert sorted(p.name[: -len(".prompts.json")] for p in pred.glob("*.prompts.json")) == cases
        scores = {p: [] for p in PROMPTS}
        for case in cases:
            ref = read_png(raw / "labelsTs" / f"{case}.png") == 1
            entries = {e["prompt"]: e for e in json.loads((pred / f"{case}.prompts.json").read_text())["prompts"]}
            assert list(entries) == PROMPTS
            masks = {p: read_png(pred / e["binary_mask"]) > 0 for p, e in entries.items()}
            for p, mask in masks.items():
                assert mask.shape == ref.shape == (SIZE, SIZE)
                assert int(mask.sum()) == entries[p]["binary_voxel_count"]
                scores[p].append(reference_dice(mask, ref))
            # the unseen synonym goes through the knowledge base to the trained query: polyp's own mask
            assert entries["polypoid lesion"]["structure"] == entries["polyp"]["structure"] == "trained: polyp"
            assert np.array_equal(masks["polypoid lesion"], masks["polyp"])
            assert entries["raised mucosal bump"]["source"] == "open_vocabulary"
        expected = [f"{np.mean(scores[p]):.3f}" for p in PROMPTS]
        assert rows[(TRAINER, f"{site} ({tag})")] == expected, site


@pytest.mark.slow
def test_overlays_are_the_frame_upscaled_with_reference_and_prediction_contours(demo_output):
    out, _ = demo_output
    raw = out / "nnUNet_raw" / DATASET
    report = (out / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(figures/([^)]+)\)", report)
    expected = [f"{TRAINER}_{site}_{img.name[:-len('_0000.png')]}.png" for site in SITES
                for img in sorted((out / "inputs" / site).glob("*_0000.png"))[:2]]
    assert linked == expected
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(expected)
    for name in linked:
        site, case = re.fullmatch(rf"{TRAINER}_(site\w)_(\w+)\.png", name).groups()
        with Image.open(out / "figures" / name) as im:
            im.verify()  # a whole, valid PNG
        overlay = read_png(out / "figures" / name)
        assert overlay.shape == (3 * SIZE, 3 * SIZE, 3)
        assert np.array_equal(overlay, np.repeat(np.repeat(overlay[::3, ::3], 3, 0), 3, 1))  # nearest-neighbour x3
        small = overlay[::3, ::3]
        frame = read_png(out / "inputs" / site / f"{case}_0000.png")[..., :3]
        ref = read_png(raw / "labelsTs" / f"{case}.png") == 1
        sidecar = json.loads((out / "predictions" / TRAINER / site / f"{case}.prompts.json").read_text())
        pred = read_png(out / "predictions" / TRAINER / site / sidecar["prompts"][0]["binary_mask"]) > 0
        expected_small = frame.copy()
        expected_small[contour(ref)] = GREEN
        expected_small[contour(pred)] = RED  # drawn second: on top where the contours meet
        assert np.array_equal(small, expected_small), name
