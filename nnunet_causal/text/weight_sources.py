"""Where text-encoder weights come from (open_clip keeps its pretrained sources apart in the same way): local
folders, the local Hugging Face cache, and -- only when the hub is reachable and offline mode is off -- a
download. Offline, a missing model is one :class:`TextEncoderError` that names it and how to provide it;
loading never hangs (3 s connection test)."""
from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlparse

from nnunet_causal.errors import TextEncoderError

logger = logging.getLogger(__name__)


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_cache_dir() -> str:
    """The Hugging Face hub cache, read from the environment *now* (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """True when a TCP connection to the hub endpoint (or the configured proxy) opens within ``timeout_s``."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy the direct test says nothing; the hub's own timeouts apply
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _missing_model_error(repo_id: str, reason: str, files: Sequence[str] = ()) -> TextEncoderError:
    pattern = " ".join(files)
    return TextEncoderError(
        f"text-encoder model '{repo_id}'{' (files: ' + ', '.join(files) + ')' if files else ''} is not in the "
        f"local Hugging Face cache {_hub_cache_dir()} and {reason}. Provide it: on a connected machine run "
        f"`huggingface-cli download {repo_id} {pattern} --local-dir /some/folder`, copy the folder here and "
        f"pass the folder instead of the hub id (e.g. hf:/some/folder, st:/some/folder or "
        f"open_clip:local-dir:/some/folder), or point HF_HOME at a Hugging Face cache that holds it.")


def hub_snapshot(repo_id: str, files: Sequence[str] = ()) -> str:
    """Local folder holding ``repo_id`` (and ``files`` in it, if given): the cached snapshot, else a download.

    Never hangs offline: raises :class:`TextEncoderError` naming ``repo_id`` when the model is not cached
    and ``HF_HUB_OFFLINE`` is set or the hub is unreachable.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    cache = _hub_cache_dir()
    patterns = list(files) or None
    try:
        folder = snapshot_download(repo_id, cache_dir=cache, local_files_only=True, allow_patterns=patterns)
        if all((Path(folder) / f).exists() for f in files):
            return folder
    except HFValidationError as e:
        raise TextEncoderError(f"'{repo_id}' is neither an existing local path nor a valid hub id ({e})") from e
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if _truthy("HF_HUB_OFFLINE") or _truthy("TRANSFORMERS_OFFLINE"):
        raise _missing_model_error(repo_id, "HF_HUB_OFFLINE is set", files)
    if not _hub_reachable():
        raise _missing_model_error(repo_id, "the Hugging Face hub cannot be reached", files)
    logger.info("downloading text-encoder model %s into %s", repo_id, cache)
    try:
        return snapshot_download(repo_id, cache_dir=cache, allow_patterns=patterns, etag_timeout=10)
    except (OSError, ValueError) as e:  # hub/network errors derive from these
        raise _missing_model_error(repo_id, f"downloading it failed ({type(e).__name__}: {e})", files) from e


def folder_of(source: str) -> str:
    """A local folder for an ``st:``/``hf:`` source: the folder itself, or the hub snapshot."""
    if os.path.isabs(source):
        if not Path(source).is_dir():
            raise TextEncoderError(f"text-encoder folder {source} does not exist")
        return source
    return hub_snapshot(source)


@contextmanager
def offline_env() -> Iterator[dict]:
    """A load from local files: yields the keyword arguments that keep a loader off the hub
    (``{"local_files_only": True}``). The process environment is not changed -- the viewer loads encoders in a
    worker thread while other threads run -- so every loader is given a local folder or file and, where it
    takes one, ``local_files_only=True``."""
    yield {"local_files_only": True}
