"""``nnunet_causal benchmark``: its cheapest real run (the resampling case, --quick) and its argument checks."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_causal.benchmarking.perf3d import PROMPT_COUNTS
from nnunet_causal.cli import main


def test_the_resampling_case_prints_one_row_per_prompt_count_with_identical_label_maps(tmp_path):
    """The two resampling modes are exact (docs/prediction.md): the label maps agree on every voxel; --json
    holds the printed measurements."""
    command = Path(sys.executable).parent / "nnunet_causal"
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run([str(command), "benchmark", "--cases", "resample", "--quick", "--device", "cpu",
                          "--json", str(tmp_path / "bench.json")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "resampling to the original spacing (24x40x40 -> 36x60x60, E = 32, medians, seconds):"
    assert lines[1].split() == ["prompts", "embeddings", "once", "logits", "in", "chunks", "label", "maps", "equal"]
    rows = [re.fullmatch(r"\s*(\d+)\s+(\d+\.\d\d)\s+(\d+\.\d\d)\s+(\d+\.\d{3})%", line) for line in lines[2:]]
    assert all(rows) and len(rows) == len(PROMPT_COUNTS), lines
    assert [int(r.group(1)) for r in rows] == list(PROMPT_COUNTS)
    assert [r.group(4) for r in rows] == ["100.000"] * len(PROMPT_COUNTS)
    assert all(float(r.group(2)) > 0 and float(r.group(3)) > 0 for r in rows)
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["network_shape"] == [24, 40, 40] and written["original_shape"] == [36, 60, 60]
    assert written["label_map_agreement"] == {str(k): 1.0 for k in PROMPT_COUNTS}
    for r in rows:
        k = r.group(1)
        assert f"{written['seconds'][f'features_{k}']:.2f}" == r.group(2)
        assert f"{written['seconds'][f'logits_{k}']:.2f}" == r.group(3)


@pytest.mark.parametrize("cases, case, path", [
    (["2d", "3d"], "2d", "b.json"), (["2d", "3d"], "3d", "b_3d.json"), (["3d"], "3d", "b.json"),
    (["3d", "resample"], "resample", "b_resample.json"), (["resample", "3d"], "3d", "b.json"),
    (["resample"], "resample", "b.json"),
])
def test_each_case_has_its_own_json_file(cases, case, path):
    from nnunet_causal.benchmarking.perf import json_path_for
    assert json_path_for("b.json", cases, case) == path


@pytest.mark.parametrize("argv, complaint", [
    (["--cases", "4d"], "argument --cases: invalid choice: '4d'"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["--volume", "32", "64"], "argument --volume: expected 3 arguments"),
    (["--patch", "big"], "argument --patch: invalid int value: 'big'"),
])
def test_bad_arguments_stop_before_any_work(capsys, argv, complaint):
    with pytest.raises(SystemExit) as stop:
        main(["benchmark", *argv])
    assert stop.value.code == 2
    assert complaint in capsys.readouterr().err


def test_help_names_the_cases_and_ends_with_examples(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["benchmark", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "{2d,3d,resample}" in text
    assert text.rstrip().endswith("nnunet_causal benchmark --cases 3d --volume 48 80 80 --patch 32 --device cpu")
