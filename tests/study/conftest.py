"""Fixtures of the study tests."""
import pytest

from tests.study.study_fakes import make_fake_dataset


@pytest.fixture
def fake_dataset(nnunet_env):
    """Tiny raw 2D dataset plus a stand-in for nnU-Net's preprocessed folder (plans, data folder, dataset.json)."""
    return make_fake_dataset(nnunet_env)
