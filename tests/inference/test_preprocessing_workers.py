"""nnU-Net's preprocessing workers behind ``nnUNetTextPredictor.iter_preprocessed`` end with the iteration: a
caller that stops early (an error while writing, a ``break``) leaves no worker behind to report its vanished
queue with a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.inference.tiny_model import find_our_trainers

ROOT = Path(__file__).resolve().parents[2]

STOP_EARLY = '''
import multiprocessing, sys, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from tests.inference.tiny_model import make_model_folder
from nnunet_causal.inference.text_predictor import nnUNetTextPredictor

root = Path(sys.argv[1])
model = make_model_folder(root)
(root / "in").mkdir()
rng = np.random.default_rng(0)
for i in range(6):
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "in" / f"c{i}_0000.png")
p = nnUNetTextPredictor(device=torch.device("cpu"), allow_tqdm=False)
p.initialize_from_trained_model_folder(str(model), (0,))
inputs, outputs, previous = p.case_lists(str(root / "in"), str(root / "out"))
cases = p.iter_preprocessed(inputs, previous, outputs, 2)
first = next(cases)
cases.close()                      # the caller stops after one of six cases
time.sleep(1)                      # a worker left running would now find its queue gone
print("first case", Path(first["ofile"]).name, "workers left", sum(c.daemon for c in multiprocessing.active_children()))
'''


def test_stopping_after_the_first_case_ends_the_workers_without_a_traceback(tmp_path, monkeypatch):
    find_our_trainers(monkeypatch)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", STOP_EARLY, str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "first case c0 workers left 0"
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
