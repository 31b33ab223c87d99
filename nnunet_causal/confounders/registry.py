"""The simulators a dictionary line may name: one fixed table, built from the family modules."""
from __future__ import annotations

from typing import Dict, Type

from nnunet_causal.confounders.base import Simulator
from nnunet_causal.confounders.ct import CT_SIMULATORS
from nnunet_causal.confounders.endoscopy import ENDOSCOPY_SIMULATORS
from nnunet_causal.confounders.modality import MODALITY_SIMULATORS
from nnunet_causal.confounders.mri import MRI_SIMULATORS

SIMULATORS: Dict[str, Type[Simulator]] = {cls.name: cls for cls in (*ENDOSCOPY_SIMULATORS, *CT_SIMULATORS,
                                                                      *MRI_SIMULATORS, *MODALITY_SIMULATORS)}


def get_simulator(name: str, **ranges) -> Simulator:
    """An instance of the simulator ``name`` with the given parameter ranges (ValueError if unknown)."""
    cls = SIMULATORS.get(name)
    if cls is None:
        raise ValueError(f"unknown simulator '{name}' (registered: {', '.join(sorted(SIMULATORS))})")
    return cls(**ranges)


def describe_simulators() -> str:
    """One line per registered simulator with its dimensions, channels and parameter bounds (for docs/--help)."""
    lines = []
    for name in sorted(SIMULATORS):
        cls = SIMULATORS[name]
        params = ", ".join(f"{k}={p.default[0]:g}..{p.default[1]:g} (allowed {p.bounds[0]:g}..{p.bounds[1]:g})"
                           for k, p in cls.params.items())
        ch = f"{cls.channels} ch" if cls.channels else "any ch"
        lines.append(f"{name:22s} {'/'.join(f'{d}D' for d in cls.dims):5s} {ch:6s} "
                     f"{'label-aware ' if cls.label_aware else ''}{params}")
    return "\n".join(lines)
