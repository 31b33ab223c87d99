"""`nnunet_causal convert`: lists every converter, runs one end to end, and nnU-Net's own check passes."""
import json
import subprocess
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


def test_convert_command_and_its_errors(tmp_path, nnunet_env):
    dl = tmp_path / "downloads"
    make_kvasir(dl / "Kvasir-SEG-download")
    make_cvc(dl / "CVC-ClinicDB")
    make_etis(dl / "ETIS-LaribPolypDB")
    raw = Path(nnunet_env["nnUNet_raw"])
    r = subprocess.run(["nnunet_causal", "convert", "endoscopy-composite", "-i", str(dl), "-d", "807"],
                       env=nnunet_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Dataset807_EndoscopyComposite" in r.stdout
    dj = json.loads((raw / "Dataset807_EndoscopyComposite" / "dataset.json").read_text())
    assert dj["numTraining"] == 8 and {r["domain"] for r in dj["domains"].values()} == {"kvasir", "cvc-clinicdb",
                                                                                         "etis"}
    # a bad download: exit code 2 and one line naming the file, nothing written
    (dl / "ETIS-LaribPolypDB/GroundTruth/p1.tif").unlink()
    r = subprocess.run(["nnunet_causal", "convert", "etis", "-i", str(dl / "ETIS-LaribPolypDB"), "-d", "806"],
                       env=nnunet_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "1.tif: no mask" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset807_EndoscopyComposite"]


def test_every_converter_output_passes_stock_verify_dataset_integrity(tmp_path, nnunet_env):
    """All nine outputs, converted from fabricated official layouts, checked by one stock command."""

    from dataset_conversion import (abdomen_composite, amos, brats, btcv, chaos, cvc_clinicdb, endoscopy_composite,
                                    etis, kvasir)
    from test_amos import make_amos
    from test_brats import make_case
    from test_btcv import make_btcv
    from test_chaos import make_chaos

    dl = tmp_path / "dl"
    btcv.convert(make_btcv(dl / "BTCV"), 800)
    amos.convert(make_amos(dl / "amos22"), 801)
    chaos.convert(make_chaos(dl / "CHAOS"), 802)
    make_case(dl / "BraTS", "BraTS2021_00001", "brats2021", [0, 1, 2, 4])
    make_case(dl / "BraTS", "BraTS-GLI-00002-000", "brats2023", [0, 3])
    brats.convert(dl / "BraTS", 803)
    kvasir.convert(make_kvasir(dl / "Kvasir-SEG"), 804)
    cvc_clinicdb.convert(make_cvc(dl / "CVC-ClinicDB"), 805)
    etis.convert(make_etis(dl / "ETIS-LaribPolypDB"), 806)
    endoscopy_composite.convert(dl, 807)
    abdomen_composite.convert(dl, 808)
    ids = [str(i) for i in range(800, 809)]
    r = subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", *ids, "--verify_dataset_integrity", "--no_pp",
                        "-npfp", "1"], env=nnunet_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    pre = Path(nnunet_env["nnUNet_preprocessed"])
    assert len(list(pre.glob("Dataset8*/dataset_fingerprint.json"))) == 9
