"""`nnunet_causal convert`: lists every converter, runs one end to end, and nnU-Net's own check passes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_conversion import CONVERTER_MODULES
from nnunet_causal.cli import main
from test_polyp import make_cvc, make_etis, make_kvasir


def test_help_lists_all_datasets_and_composites(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    out = capsys.readouterr().out
    for name in ("btcv", "amos", "chaos", "brats", "kvasir", "cvc-clinicdb", "etis", "endoscopy-composite",
                 "abdomen-composite"):
        assert name in out and name in CONVERTER_MODULES
    for name in CONVERTER_MODULES:
        with pytest.raises(SystemExit):
            main(["convert", name, "--help"])
        text = capsys.readouterr().out
        assert "Download" in text or "download" in text, name  # says where to get the data
        assert "-i" in text and "-d" in text


def test_convert_then_stock_verify_dataset_integrity(tmp_path, nnunet_env):
    dl = tmp_path / "downloads"
    make_kvasir(dl / "Kvasir-SEG-download")
    make_cvc(dl / "CVC-ClinicDB")
    make_etis(dl / "ETIS-LaribPolypDB")
    raw = Path(nnunet_env["nnUNet_raw"])
    r = subprocess.run(["nnunet_causal", "convert", "endoscopy-composite", "-i", str(dl), "-d", "807"],
                       env=nnunet_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Dataset807_EndoscopyComposite" in r.stdout
    r = subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", "807", "--verify_dataset_integrity", "--no_pp",
                        "-npfp", "1"], env=nnunet_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    fp = json.loads((Path(nnunet_env["nnUNet_preprocessed"]) / "Dataset807_EndoscopyComposite" /
                     "dataset_fingerprint.json").read_text())
    assert len(fp["shapes_after_crop"]) == 8
    # a bad download: exit code 2 and one line naming the file, nothing written
    (dl / "ETIS-LaribPolypDB/GroundTruth/p1.tif").unlink()
    r = subprocess.run(["nnunet_causal", "convert", "etis", "-i", str(dl / "ETIS-LaribPolypDB"), "-d", "806"],
                       env=nnunet_env, capture_output=True, text=True)
    assert r.returncode == 2 and "1.tif: no mask" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset807_EndoscopyComposite"]
