"""Where a study's runs execute: ``local`` (default), ``slurm`` (submitit) or ``ray``; one module each behind
:class:`~nnunet_causal.study.backends.base.Backend`. The cluster modules import their library only when used
(extra ``nnunet_causal[cluster]``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from nnunet_causal.study.backends.base import Backend, WorkerLost  # noqa: F401
from nnunet_causal.study.config import BackendOptions


def make_backend(options: BackendOptions, output: Path) -> Backend:
    """The backend ``options.name`` for a study whose folder is ``output`` (nothing is started yet)."""
    if options.name == "slurm":
        from nnunet_causal.study.backends.slurm import SlurmBackend
        return SlurmBackend(options, output)
    if options.name == "ray":
        from nnunet_causal.study.backends.ray import RayBackend
        return RayBackend(options, output)
    from nnunet_causal.study.backends.local import LocalBackend
    return LocalBackend(options, output)


def default_device(backend: Backend) -> Optional[str]:
    """The device of runs on a cluster backend when the study file names none: ``cuda`` when each run gets
    GPUs, else ``cpu``; None for the local backend (it looks at this machine)."""
    if backend.name == "local":
        return None
    return "cuda" if backend.num_gpus > 0 else "cpu"
