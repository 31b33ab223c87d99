"""Publishing files and folders: fsync before and after every rename, folder replacement with a backup,
stale temporary files removed on the next write, and torch files loaded without running code."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
import torch

from nnunet_causal import files
from nnunet_causal.files import (atomic_path, load_torch_file, make_temp_file, recover_folder, remove_stale_temps,
                                 replace_folder, write_json_atomic)


@pytest.fixture
def journal(monkeypatch):
    """Records ("fsync", path) and ("replace", src, dst) in the order they happen."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, *a, **kw):
        events.append(("replace", str(src), str(dst)))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_a_published_file_is_flushed_before_its_rename_and_its_folder_after(tmp_path, journal):
    write_json_atomic(tmp_path / "out" / "result.json", {"a": 1})
    (kind1, tmp), (kind2, src, dst), (kind3, folder) = journal
    assert (kind1, kind2, kind3) == ("fsync", "replace", "fsync")
    assert tmp == src and os.path.basename(src).startswith(".tmp_result_") and dst == str(tmp_path / "out" / "result.json")
    assert folder == str(tmp_path / "out")


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    final = tmp_path / "case.nii.gz"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            assert tmp.endswith(".nii.gz")
            open(tmp, "wb").write(b"half")
            raise RuntimeError("disk full")
    assert final.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["case.nii.gz"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(timeout=60)
    return p.pid


def test_stale_temporary_files_of_dead_writers_go_and_live_ones_stay(tmp_path):
    dead = _dead_pid()
    host = files._HOST
    names = {
        "dead": f".tmp_case_{host}-{dead}-0123abcd.nii.gz",                    # killed writer on this machine
        "live": f".tmp_case_{host}-{os.getppid()}-0123abcd.nii.gz",             # a writer still running
        "other_host": f".tmp_case_ffffff-{dead}-0123abcd.nii.gz" if host != "ffffff" else ".tmp_x_000000-1-0123abcd",
        "old": ".tmp_case_7f3a9c2b1d0e.nii.gz",                                 # untagged, two days old
        "young": ".tmp_case_aaaaaaaaaaaa.nii.gz",                               # untagged, just written
        "case": "case.nii.gz",
    }
    for n in names.values():
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / f".tmp_folder_{host}-{dead}-0123abcd").mkdir()
    two_days = time.time() - 2 * 24 * 3600
    os.utime(tmp_path / names["old"], (two_days, two_days))
    removed = sorted(p.name for p in remove_stale_temps(tmp_path))
    assert removed == sorted([names["dead"], names["old"], f".tmp_folder_{host}-{dead}-0123abcd"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names["live"], names["other_host"], names["young"],
                                                                names["case"]])


def test_the_next_write_into_a_folder_cleans_what_a_killed_run_left(tmp_path):
    folder = tmp_path / "predictions"
    folder.mkdir()
    code = ("import os, sys; from nnunet_causal.files import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    open(tmp, 'wb').write(b'half')\n"
            "    os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(folder / "case_000.nii.gz")], timeout=120)
    assert proc.returncode == -9
    left = [p.name for p in folder.iterdir()]
    assert len(left) == 1 and left[0].startswith(".tmp_case_000_") and left[0].endswith(".nii.gz")
    files._cleaned.discard(os.path.abspath(folder))
    write_json_atomic(folder / "summary.json", {})
    assert sorted(p.name for p in folder.iterdir()) == ["summary.json"]


def _folder(path, text):
    path.mkdir()
    (path / "a.txt").write_text(text)
    (path / "sub").mkdir()
    (path / "sub" / "b.txt").write_text(text)
    return path


def test_a_folder_is_replaced_by_renames_flushed_and_the_backup_goes_last(tmp_path, journal):
    final = _folder(tmp_path / "encoder", "old")
    staging = _folder(tmp_path / ".tmp_encoder_x", "new")
    replace_folder(staging, final)
    assert (final / "a.txt").read_text() == "new" and (final / "sub" / "b.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder"]
    synced = [e[1] for e in journal if e[0] == "fsync"]
    renames = [e for e in journal if e[0] == "replace"]
    assert {str(staging / "a.txt"), str(staging / "sub" / "b.txt"), str(staging), str(staging / "sub")} <= set(synced)
    assert renames[0][1:] == (str(final), renames[0][2]) and os.path.basename(renames[0][2]).startswith(".old_encoder_")
    assert renames[1][1:] == (str(staging), str(final))
    assert journal[-1] == ("fsync", str(tmp_path))


def test_a_failed_replacement_keeps_the_old_folder(tmp_path, monkeypatch):
    final = _folder(tmp_path / "encoder", "old")
    staging = _folder(tmp_path / ".tmp_encoder_x", "new")
    real_replace, calls = os.replace, []

    def failing(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space"):
        replace_folder(staging, final)
    monkeypatch.undo()
    assert (final / "a.txt").read_text() == "old" and not list(tmp_path.glob(".old_*"))


def test_a_replacement_killed_between_its_renames_is_repaired_on_the_next_run(tmp_path):
    final = _folder(tmp_path / "encoder", "old")
    code = ("import os, sys; from nnunet_causal import files\n"
            "real = os.replace\n"
            "def once(src, dst):\n"
            "    real(src, dst)\n"
            "    os.kill(os.getpid(), 9)\n"
            "os.replace = once\n"
            "os.mkdir(sys.argv[2]); files.replace_folder(sys.argv[2], sys.argv[1])\n")
    proc = subprocess.run([sys.executable, "-c", code, str(final), str(tmp_path / ".tmp_new")], timeout=120)
    assert proc.returncode == -9 and not final.exists() and len(list(tmp_path.glob(".old_encoder_*"))) == 1
    recover_folder(final)
    assert (final / "a.txt").read_text() == "old" and not list(tmp_path.glob(".old_*"))


def test_temporary_names_carry_the_writer(tmp_path):
    name = os.path.basename(make_temp_file(tmp_path, ".tmp_case_", ".png"))
    assert files._TAG.search(name).group(2) == str(os.getpid()) and name.endswith(".png")


class NotATensor:
    pass


def test_our_torch_files_load_without_unpickling_code_and_foreign_ones_warn(tmp_path, caplog):
    import numpy as np
    ours = tmp_path / "ours.pth"
    torch.save({"w": torch.ones(2), "epoch": 3, "log": [np.float64(0.5)], "device": torch.device("cpu")}, ours)
    loaded = load_torch_file(ours)
    assert loaded["epoch"] == 3 and float(loaded["log"][0]) == 0.5 and torch.equal(loaded["w"], torch.ones(2))
    foreign = tmp_path / "foreign.model"
    torch.save({"state_dict": {"w": torch.ones(1)}, "extra": NotATensor()}, foreign)
    import pickle
    with pytest.raises(pickle.UnpicklingError):
        load_torch_file(foreign)
    with caplog.at_level(logging.WARNING, logger="nnunet_causal.files"):
        assert torch.equal(load_torch_file(foreign, trusted_fallback=True)["state_dict"]["w"], torch.ones(1))
    assert "foreign.model holds Python objects" in caplog.text and "NotATensor" in caplog.text
    assert "sources you trust" in caplog.text
