"""A converter killed with SIGKILL mid-way leaves no half-written dataset under the final name (the previous
version stays complete), and the next run cleans up and succeeds."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fabricate import snapshot
from dataset_conversion import kvasir

REPO = Path(__file__).resolve().parents[2]


def make_kvasir(root: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for sub in ("images", "masks"):
        (root / "Kvasir-SEG" / sub).mkdir(parents=True, exist_ok=True)
    mask = np.zeros((16, 20), np.uint8)
    mask[4:10, 5:12] = 255
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(
            root / "Kvasir-SEG" / "images" / f"f{i:04d}.png")
        Image.fromarray(mask).save(root / "Kvasir-SEG" / "masks" / f"f{i:04d}.png")
    return root


def count_cases(folder: Path) -> int:
    return json.loads((folder / "dataset.json").read_text())["numTraining"]


def test_kill_during_conversion_keeps_the_previous_dataset_and_a_rerun_succeeds(tmp_path, raw_root):
    final = raw_root / "Dataset804_KvasirSEG"
    kvasir.convert(make_kvasir(tmp_path / "small", 3), 804)  # the previous, complete version
    assert count_cases(final) == 3
    previous = snapshot(final)
    big = make_kvasir(tmp_path / "big", 150, seed=1)

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "dataset_conversion.kvasir", "-i", str(big), "-d", "804",
                             "-o", str(raw_root)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    staged = []
    try:
        t0 = time.time()
        while len(staged) < 10:  # mid-way: some cases written into the staging folder, most not yet
            assert proc.poll() is None, f"conversion ended (exit {proc.returncode}) before it could be killed"
            assert time.time() - t0 < 120, "conversion never started writing"
            staged = [p for s in raw_root.glob(".Dataset804_KvasirSEG.partial-*") for p in (s / "imagesTr").glob("*")]
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    partial = list(raw_root.glob(".Dataset804_KvasirSEG.partial-*"))
    assert len(partial) == 1 and len(list((partial[0] / "imagesTr").iterdir())) < 150  # killed mid-way
    # under the final name: the previous dataset, complete and valid; nothing else visible
    assert sorted(p.name for p in raw_root.iterdir() if not p.name.startswith(".")) == [final.name]
    assert snapshot(final) == previous

    # the re-run removes what the killed run left and publishes the full dataset
    assert kvasir.convert(big, 804) == final
    assert count_cases(final) == 150 and len(list((final / "labelsTr").iterdir())) == 150
    assert sorted(p.name for p in raw_root.iterdir()) == [final.name]  # no staging, no backup left
    assert np.array_equal(np.asarray(Image.open(final / "labelsTr" / "kvasir_f0149.png")) * 255,
                          np.asarray(Image.open(big / "Kvasir-SEG" / "masks" / "f0149.png")))
