"""Shared fixtures of the intervention tests: one tiny model folder with trained TCI weights per test run."""
from __future__ import annotations

import hashlib

import pytest

from tests.inference.tiny_model import find_our_trainers, use_fake_encoder
from tests.intervention.modulation.tci_fixtures import tiny_tci_setup


@pytest.fixture(scope="package")
def trained(tmp_path_factory):
    """A tiny model folder whose fold 0 got 60 train-tci steps; (model, preprocessed folder, raw folder)."""
    from nnunet_causal.intervention.modulation.train_tci import run_train_tci

    with pytest.MonkeyPatch.context() as mp:
        use_fake_encoder(mp)
        find_our_trainers(mp)
        tmp = tmp_path_factory.mktemp("tci")
        model, data, raw = tiny_tci_setup(tmp)
        ckpt = model / "fold_0" / "checkpoint_final.pth"
        before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
        result = run_train_tci(model, "0", steps=60, preprocessed=str(data), progress=False, lr=3e-3)
        assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before, "train-tci must not touch the checkpoint"
    # the patches end here: a package-scoped patch would outlive this folder's tests (pytest gives a folder
    # without __init__.py the session as its package) and hand the fake encoder to every later test
    return model, data, raw, result


@pytest.fixture
def env(monkeypatch):
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)


