"""Every trainer of the catalogue (:mod:`nnunet_causal.training.catalogue`) for nnU-Net's trainer lookup.

nnU-Net asks each module of this folder ``hasattr(module, name)``; this module answers for exactly the
names of :func:`~nnunet_causal.training.catalogue.trainer_names` (module ``__getattr__``, PEP 562), importing
the MGCL trainer only when it is asked for.
"""
import importlib

from nnunet_causal.training.catalogue import EXTERNAL, TRAINERS


def __getattr__(name: str):
    if name in TRAINERS:
        return TRAINERS[name]
    if name in EXTERNAL:
        return getattr(importlib.import_module(EXTERNAL[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
