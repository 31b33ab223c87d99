"""Atomic writes keep the umask's permissions (colleagues on a shared cluster can read the files)."""
import os
import stat

import pytest

from nnunet_causal.data.raw_dataset import atomic_path, write_json_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_get_the_umask_mode(tmp_path, umask_022):
    write_json_atomic(tmp_path / "dataset.json", {"a": 1})
    assert mode(tmp_path / "dataset.json") == 0o644
    with atomic_path(tmp_path / "sub" / "image.nii.gz") as tmp:
        assert mode(tmp) == 0o644  # writers that only open the path (SimpleITK, PIL) keep this mode
        with open(tmp, "wb") as f:
            f.write(b"x")
    assert mode(tmp_path / "sub" / "image.nii.gz") == 0o644


def test_temporary_folders_get_the_umask_mode(tmp_path, umask_022):
    from nnunet_causal.data.raw_dataset import make_temp_dir
    assert mode(make_temp_dir(tmp_path, ".staging-")) == 0o755


def test_a_stricter_umask_is_respected(tmp_path):
    old = os.umask(0o077)
    try:
        write_json_atomic(tmp_path / "private.json", {})
    finally:
        os.umask(old)
    assert mode(tmp_path / "private.json") == 0o600
