"""Publishing a converted dataset never loses the previous one (failed renames, interrupted runs)."""
import os
import shutil
import stat

import numpy as np
import pytest

import dataset_conversion.raw_writer as raw_writer
from dataset_conversion.common import RawDatasetWriter
from nnunet_causal.errors import DatasetError


def convert(raw_root, marker: str) -> None:
    """A one-case PNG dataset whose image value is ``marker`` (tells versions apart)."""
    with RawDatasetWriter(raw_root, 900, "Pub") as w:
        w.write_png("case_0", np.full((4, 4, 3), int(marker), np.uint8), channel=0)
        w.write_png("case_0", np.zeros((4, 4), np.uint8), channel=None)
        w.finish({"0": "R", "1": "G", "2": "B"}, {"background": 0, "polyp": 1}, ".png",
                 prompts={"polyp": ["polyp"]}, domains={"case_0": {"domain": "a", "modality": "e", "style": "s"}},
                 imaging_family="endoscopy")


def version(raw_root) -> int:
    from PIL import Image
    return int(np.asarray(Image.open(raw_root / "Dataset900_Pub" / "imagesTr" / "case_0_0000.png"))[0, 0, 0])


def fail_rename_of(name_start, real=os.replace, times=1):
    """``os.replace`` that fails (``times`` times) for a source whose file name starts with ``name_start``."""
    calls = {"n": 0}

    def replace(src, dst):
        if os.path.basename(src).startswith(name_start) and calls["n"] < times:
            calls["n"] += 1
            raise OSError(f"simulated failure renaming {src}")
        return real(src, dst)
    return replace


def test_published_folder_is_readable_by_others(raw_root):
    old = os.umask(0o022)
    try:
        convert(raw_root, "1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(raw_root / "Dataset900_Pub").st_mode) == 0o755


def test_failed_second_rename_keeps_the_previous_dataset(raw_root, monkeypatch):
    convert(raw_root, "1")
    monkeypatch.setattr(raw_writer.os, "replace", fail_rename_of(".Dataset900_Pub.partial-"))
    with pytest.raises(DatasetError, match="previous version is unchanged"):
        convert(raw_root, "2")
    assert version(raw_root) == 1
    assert sorted(p.name for p in raw_root.iterdir()) == ["Dataset900_Pub"]  # no staging, no backup left
    monkeypatch.undo()
    convert(raw_root, "3")
    assert version(raw_root) == 3


def test_backup_of_a_completed_dataset_survives_the_next_run(raw_root, monkeypatch):
    convert(raw_root, "1")
    # the new dataset cannot be put in place and the previous one cannot be moved back either
    monkeypatch.setattr(raw_writer.os, "replace", fail_rename_of(".Dataset900_Pub.partial-", real=fail_rename_of("previous")))
    with pytest.raises(DatasetError, match="previous dataset is kept in"):
        convert(raw_root, "2")
    backups = list(raw_root.glob(".Dataset900_Pub.old-*"))
    assert len(backups) == 1 and (backups[0] / "previous" / "dataset.json").exists()
    monkeypatch.undo()
    # the next run puts the backup back before anything else (it is not "clean-up" of a killed run)
    with pytest.raises(RuntimeError, match="without finish"):
        with RawDatasetWriter(raw_root, 900, "Pub"):
            assert version(raw_root) == 1 and not list(raw_root.glob(".Dataset900_Pub.old-*"))
    assert version(raw_root) == 1


def test_backup_beside_a_published_dataset_is_kept(raw_root, caplog):
    convert(raw_root, "1")
    backup = raw_root / ".Dataset900_Pub.old-abc"  # left by a run killed before it deleted its backup
    shutil.copytree(raw_root / "Dataset900_Pub", backup / "previous")
    convert(raw_root, "2")
    assert version(raw_root) == 2
    assert (backup / "previous" / "dataset.json").exists()
    assert "it is kept" in caplog.text
