"""Checkpoints of the text trainers are written atomically: a run killed while it writes one keeps the previous
checkpoint whole for ``--c``."""
from __future__ import annotations

import os
import stat

import pytest
import torch

from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText


class FakeLogger:
    def get_checkpoint(self):
        return {"train_losses": [1.0]}


def bare_trainer(epoch: int) -> nnUNetTrainerText:
    """A trainer with just what nnU-Net's save_checkpoint reads (no plans, no data)."""
    t = nnUNetTrainerText.__new__(nnUNetTrainerText)
    t.local_rank, t.disable_checkpointing, t.is_ddp = 0, False, False
    t.network = torch.nn.Linear(64, 64)
    t.optimizer = torch.optim.SGD(t.network.parameters(), 0.1)
    t.grad_scaler, t.logger, t._best_ema, t.current_epoch = None, FakeLogger(), 0.5, epoch
    t.my_init_kwargs, t.inference_allowed_mirroring_axes = {}, (0, 1)
    return t


class Killed(BaseException):
    pass


def test_a_write_interrupted_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    latest = tmp_path / "checkpoint_latest.pth"
    old = os.umask(0o022)
    try:
        bare_trainer(3).save_checkpoint(str(latest))
    finally:
        os.umask(old)
    assert torch.load(latest, weights_only=False)["current_epoch"] == 4
    assert stat.S_IMODE(os.stat(latest).st_mode) == 0o644  # readable by colleagues, as torch.save's own file

    real_save = torch.save

    def killed_while_writing(obj, f, *a, **kw):  # half of the bytes reach the disk, then the process dies
        real_save(obj, f, *a, **kw)
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
        raise Killed()

    monkeypatch.setattr(torch, "save", killed_while_writing)
    with pytest.raises(Killed):
        bare_trainer(7).save_checkpoint(str(latest))
    monkeypatch.undo()
    assert torch.load(latest, weights_only=False)["current_epoch"] == 4  # the previous one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_latest.pth"]


def test_a_checkpoint_reaches_the_disk_before_its_rename_and_the_rename_after(tmp_path, monkeypatch):
    """A node crash right after the rename must not leave a renamed but empty checkpoint_latest.pth."""
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync", path, os.path.getsize(path) if os.path.isfile(path) else None))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", lambda s, d: (events.append(("replace", str(s), str(d))), real_replace(s, d)))
    latest = tmp_path / "checkpoint_latest.pth"
    bare_trainer(5).save_checkpoint(str(latest))
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    assert events[0][1] == events[1][1] and events[0][2] == os.path.getsize(latest) > 0  # the whole file, flushed
    assert events[1][2] == str(latest) and events[2][1] == str(tmp_path)
    monkeypatch.undo()
    from nnunet_causal.files import load_torch_file
    assert load_torch_file(latest)["current_epoch"] == 6  # loaded without unpickling code
