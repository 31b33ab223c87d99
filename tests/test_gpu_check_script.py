"""``scripts/gpu_check.sh`` without a CUDA device: one line on stderr, exit 2, nothing run or written.

(On a CUDA machine the script itself is the check; here the GPUs are hidden with CUDA_VISIBLE_DEVICES.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run_script(tmp_path, python: str):
    env = dict(os.environ, PYTHON=python, CUDA_VISIBLE_DEVICES="", TMPDIR=str(tmp_path))
    return subprocess.run([str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_without_cuda_it_says_so_in_one_line_and_exits_2(tmp_path):
    out = run_script(tmp_path, sys.executable)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr == f"gpu_check: no CUDA device visible to torch ({sys.executable}): nothing was checked\n"
    assert list(tmp_path.iterdir()) == []   # no work folder: nothing was started


def test_an_interpreter_without_torch_counts_as_no_cuda(tmp_path):
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = run_script(tmp_path, str(fake))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == f"gpu_check: no CUDA device visible to torch ({fake}): nothing was checked\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]


def test_the_script_is_executable_and_documented():
    assert os.access(SCRIPT, os.X_OK)
    assert "./scripts/gpu_check.sh" in (ROOT / "docs" / "testing.md").read_text()
