"""Publishing files and folders so that a reader sees the old version or the new one, never a mix.

* :func:`atomic_path` / :func:`write_json_atomic`: a file is written under a temporary name in its destination
  folder, flushed to the disk (``fsync``), renamed into place, and the folder's entry is flushed too: after a
  crash of the machine the file is the old one or the new one, never renamed but empty.
* :func:`replace_folder`: a folder assembled under a temporary name replaces the old one by renames only; the
  old one is moved to a backup first and deleted only after the new one is in place. An interrupted
  replacement is repaired by :func:`recover_folder` (the backup is put back when the folder is missing).
* Stale temporary files: every temporary name carries the writing process (``.tmp_<stem>_<host>-<pid>-<rand>``).
  The first write into a folder by a process removes the ``.tmp_*`` files there whose writer has died (same
  host, no such process) or that are older than :data:`STALE_AFTER_S` -- so a killed run leaves nothing that
  a stock tool could read as a case once the next run writes there; a concurrent writer's files are kept.
* Modes: files and folders get the umask's mode (``0644`` / ``0755`` under umask 022), not ``tempfile``'s
  private ``0600`` / ``0700``: on a shared cluster colleagues can read what was written.

Written by hand: the standard library has the pieces (``os.replace``, ``os.fsync``) but no kept library
combines them with umask modes and stale-file recovery.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp_"
BACKUP_PREFIX = ".old_"
STALE_AFTER_S = 24 * 3600
_ATTEMPTS = 100
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8")).hexdigest()[:6]
_TAG = re.compile(r"_([0-9a-f]{6})-(\d+)-[0-9a-f]{8}(?:\.|$)")
_cleaned: set = set()
_cleaned_lock = threading.Lock()


def _tag() -> str:
    return f"{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def _random_names(folder: Path, prefix: str, suffix: str) -> Iterator[Path]:
    sep = "" if prefix.endswith(("_", "-", ".")) else "_"
    for _ in range(_ATTEMPTS):
        yield folder / f"{prefix}{sep}{_tag()}{suffix}"


def fsync_file(path: os.PathLike | str) -> None:
    """Flush the file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: os.PathLike | str) -> None:
    """Flush a folder's entries (a rename into it) to the disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not sync folders: nothing more can be done
        pass
    finally:
        os.close(fd)


def fsync_tree(folder: os.PathLike | str) -> None:
    """Flush every file and folder under ``folder`` (before the folder is published by a rename)."""
    for root, dirs, files in os.walk(folder):
        for name in files:
            fsync_file(os.path.join(root, name))
        fsync_dir(root)


def _writer_is_gone(name: str, mtime: float, now: float) -> bool:
    if now - mtime > STALE_AFTER_S:
        return True
    m = _TAG.search(name)
    if not m or m.group(1) != _HOST:
        return False  # another machine's (shared file system), or an untagged name: only age decides
    pid = int(m.group(2))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_stale_temps(folder: os.PathLike | str) -> List[Path]:
    """Remove the ``.tmp_*`` files and folders in ``folder`` whose writer is gone; return what was removed."""
    folder = Path(folder)
    removed, now = [], time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        try:
            if not _writer_is_gone(entry.name, entry.stat(follow_symlinks=False).st_mtime, now):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.remove(entry.path)
        except FileNotFoundError:
            continue
        except OSError as e:
            logger.warning("cannot remove %s, left by an interrupted run: %s", entry.path, e)
            continue
        removed.append(Path(entry.path))
    if removed:
        logger.warning("removed %d temporary file(s) left in %s by an interrupted run", len(removed), folder)
    return removed


def _clean_once(folder: Path) -> None:
    key = os.path.abspath(folder)
    with _cleaned_lock:
        if key in _cleaned:
            return
        _cleaned.add(key)
    remove_stale_temps(folder)


def make_temp_file(folder: os.PathLike | str, prefix: str = TEMP_PREFIX, suffix: str = "") -> str:
    """Create an empty file with a new name ``<prefix><host>-<pid>-<random><suffix>`` in ``folder``.

    Unlike :func:`tempfile.mkstemp` (mode ``0600``) the file gets ``0666`` minus the umask, the mode any
    other newly written file would have."""
    for path in _random_names(Path(folder), prefix, suffix):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return str(path)
    raise FileExistsError(f"{folder}: no free temporary name {prefix}*{suffix} after {_ATTEMPTS} attempts")


def make_temp_dir(folder: os.PathLike | str, prefix: str = TEMP_PREFIX) -> Path:
    """Create a new folder ``<prefix><host>-<pid>-<random>`` in ``folder`` with mode ``0777`` minus the umask
    (not :func:`tempfile.mkdtemp`'s ``0700``, which a renamed-into-place folder would keep)."""
    for path in _random_names(Path(folder), prefix, ""):
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{folder}: no free temporary folder name {prefix}* after {_ATTEMPTS} attempts")


def check_writable_folder(folder: os.PathLike | str) -> None:
    """Create ``folder`` if needed and prove that a file can be written in it (a temporary file, removed at
    once); :class:`OSError` otherwise, with the folder and the system's reason (read-only, permission, full)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = make_temp_file(folder, TEMP_PREFIX + "probe_")
    os.remove(probe)


@contextmanager
def atomic_path(final_path: os.PathLike | str, suffix: Optional[str] = None) -> Iterator[str]:
    """Yield a temporary path beside ``final_path``; on success flush it, rename it into place and flush the
    folder; on failure delete it.

    ``suffix`` defaults to the final file's full ending (``.nii.gz`` stays ``.nii.gz``) because several
    writers (SimpleITK, PIL) choose the format from the file name."""
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(final_path.parent)
    if suffix is None:
        name = final_path.name
        suffix = name[name.index("."):] if "." in name else ""
    tmp = make_temp_file(final_path.parent, TEMP_PREFIX + final_path.name.split(".")[0] + "_", suffix)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, final_path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_dir(final_path.parent)


def write_json_atomic(path: os.PathLike | str, obj, indent: int = 2) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file, ``fsync`` and an atomic rename."""
    with atomic_path(path, suffix=".json") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, sort_keys=False)
            f.write("\n")


def _backups(final: Path) -> List[Path]:
    own = re.compile(re.escape(f"{BACKUP_PREFIX}{final.name}_") + r"[0-9a-f]{6}-\d+-[0-9a-f]{8}")
    return sorted(p for p in final.parent.glob(f"{BACKUP_PREFIX}{final.name}_*") if own.fullmatch(p.name))


def recover_folder(final: os.PathLike | str) -> None:
    """Repair an interrupted :func:`replace_folder`: a backup of ``final`` is moved back when ``final`` is
    missing, deleted when ``final`` is there (the replacement finished; only the clean-up did not)."""
    final = Path(final)
    for backup in _backups(final):
        if not final.exists():
            os.replace(backup, final)
            fsync_dir(final.parent)
            logger.warning("restored %s from %s, left by an interrupted replacement", final, backup.name)
        else:
            shutil.rmtree(backup, ignore_errors=True)


def replace_folder(staging: os.PathLike | str, final: os.PathLike | str) -> Path:
    """Publish the folder ``staging`` as ``final`` (same parent folder) by renames only.

    Everything under ``staging`` is flushed first; an existing ``final`` is renamed to a backup, ``staging``
    to ``final``, and the backup is deleted last. If the second rename fails the backup is put back and the
    error raised: ``final`` always holds a complete version (between the two renames, for an instant, only the
    backup does -- :func:`recover_folder`, called here first, repairs a process killed just then)."""
    staging, final = Path(staging), Path(final)
    recover_folder(final)
    fsync_tree(staging)
    backup = None
    if final.exists():
        backup = final.parent / f"{BACKUP_PREFIX}{final.name}_{_tag()}"
        os.replace(final, backup)
    try:
        os.replace(staging, final)
    except OSError:
        if backup is not None and backup.exists() and not final.exists():
            os.replace(backup, final)
        raise
    finally:
        fsync_dir(final.parent)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return final


def _numpy_globals() -> list:
    """Numpy's array and scalar reconstructors and dtype classes: numbers only (an object array would still need
    a forbidden global), which nnU-Net's checkpoints hold in their logs."""
    import numpy as np
    core = getattr(np, "_core", None) or np.core
    found = [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype]
    found += [getattr(np.dtypes, n) for n in dir(getattr(np, "dtypes", object())) if n.endswith("DType")]
    return found


def load_torch_file(path: os.PathLike | str, map_location="cpu", mmap: bool = False, trusted_fallback: bool = False):
    """``torch.load`` with ``weights_only=True`` (tensors, containers, numbers, strings and numpy numbers only:
    loading cannot run code).

    A file that needs more (a foreign checkpoint pickled with Python objects) raises
    :class:`pickle.UnpicklingError`, or -- with ``trusted_fallback`` (third-party weights, model folders from
    nnU-Net, whose own predictor loads them in full) -- is loaded in full after a warning that names the file
    and says to load only files from trusted sources."""
    import pickle

    import torch
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if not trusted_fallback:
            raise
        try:
            needs = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)[:5])
        except Exception:  # noqa: BLE001 - only a detail of the warning (not a zip checkpoint)
            needs = type(e).__name__
        logger.warning("%s holds Python objects beyond tensors and numbers (%s); loading it in full, which can run "
                       "code: only use files from sources you trust", path, needs)
        return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
