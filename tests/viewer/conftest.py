"""Fixtures of the viewer tests: one tiny text model with trained intervention weights and its test images."""
from __future__ import annotations

import time

import pytest

from tests.inference.tiny_model import find_our_trainers, use_fake_encoder
from tests.intervention.modulation.tci_fixtures import tiny_tci_setup


@pytest.fixture(scope="package")
def viewer_model(tmp_path_factory):
    """(model folder with fold 0 + 60 train-tci steps, images folder with 2 test cases, the raw dataset)."""
    from nnunet_causal.intervention.modulation.train_tci import run_train_tci

    with pytest.MonkeyPatch.context() as mp:
        use_fake_encoder(mp)
        find_our_trainers(mp)
        model, data, raw = tiny_tci_setup(tmp_path_factory.mktemp("viewer"))
        run_train_tci(model, "0", steps=60, preprocessed=str(data), progress=False, lr=3e-3)
    return model, raw / "imagesTs", raw


@pytest.fixture
def env(monkeypatch):
    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)


def wait_for_job(client, job: dict, headers: dict, timeout: float = 60.0) -> dict:
    """Poll ``/api/jobs/ID`` until the job is done or failed; returns its last record."""
    end = time.time() + timeout
    while job["state"] in ("queued", "running"):
        if time.time() > end:
            raise TimeoutError(f"job {job} did not finish in {timeout} s")
        time.sleep(0.05)
        job = client.get(f"/api/jobs/{job['id']}", headers=headers).json()
    return job
