"""Fixture of the converter tests: an empty nnU-Net raw folder."""
import pytest


@pytest.fixture
def raw_root(tmp_path, monkeypatch):
    root = tmp_path / "nnUNet_raw"
    root.mkdir()
    monkeypatch.setenv("nnUNet_raw", str(root))
    return root
