"""Counterfactual views: do(z) for dictionary confounders drawn per sample (issue: causal robustness).

A sample becomes counterfactual with probability ``probability``; then every group (kind) of the
dictionary that has simulators is included with probability ``group_probability`` (at least one, at most
``max_entries`` groups, the excess dropped at random), and one entry of each included group is drawn; their
simulators set the named confounders on the image (after nnU-Net's spatial augmentation, on the training
device) while the label stays the factual one. Drawing by kind, not by entry, keeps the chance of a kind
independent of how many wordings the dictionary has for it (a dictionary of 18 entries would otherwise
set each confounder in a few percent of the samples only, leaving the spurious cue intact in the rest). Training on such views makes the segmentation ``P(Y | do(X))``-like with respect to the named
confounders: a cue that appears with the lesion in the source sites (a highlight, a redder hue) now appears
without it and disappears with it. The drawn descriptions are the sample's *known* style (used by LAD and
the confounder losses instead of guessed words).

The simulators of all drawn entries are applied in stage order (scene, light, optics, sensor, digital, see
:mod:`nnunet_causal.confounders.base`) and, within a stage, in their ``order`` (removals first, painting
last), each to the sub-batch of samples that drew it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence

import torch

from nnunet_causal.confounders.dictionary import ConfounderEntry
from nnunet_causal.confounders.frames import IntensityFrame
from nnunet_causal.errors import DatasetError


@dataclass
class CounterfactualBatch:
    """``data``: the new batch (B, C, *spatial) in normalised units; ``drawn[b]``: indices of the entries
    applied to sample b (empty = factual); ``descriptions[b]``: their texts."""
    data: torch.Tensor
    drawn: List[List[int]]
    descriptions: List[List[str]]


class CounterfactualSampler:
    """Draws and applies dictionary do-interventions to batches of one dataset (fixed dims and channels)."""

    def __init__(self, entries: Sequence[ConfounderEntry], frame: IntensityFrame, ndim: int, num_channels: int,
                 probability: float = 0.7, group_probability: float = 0.5, max_entries: int = 4,
                 skip_unsupported: bool = False, label_aware_probability: Optional[float] = None,
                 weight_exponent: float = 1.0, excluded_kinds: Optional[Mapping[str, str]] = None):
        """``skip_unsupported``: entries whose simulators cannot run on this data (dimensionality, channels)
        are left out and listed in :attr:`skipped` (used for the shipped family dictionaries, e.g. slice
        thickness on 2D CT); otherwise such an entry is an error naming its file and line.
        ``label_aware_probability``: inclusion probability of the kinds whose simulators read the label
        (default: ``group_probability``) -- only they can change how a structure looks against its
        surroundings, which whole-image changes keep.
        ``weight_exponent``: an entry is drawn within its kind with probability proportional to
        ``weight ** weight_exponent`` (1: the dictionary's ``@weight`` as written; 0: uniform; large: nearly
        always the kind's heaviest entry).
        ``excluded_kinds``: ``{kind: reason}`` of dictionary kinds (``[kind]``) never drawn on this dataset;
        their entries are listed in :attr:`skipped` with the reason and keep their indices (their descriptions
        still reach the confounder bottleneck)."""
        for name, v in (("probability", probability), ("group probability", group_probability)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"counterfactual {name} must lie in [0, 1], got {v}")
        if not weight_exponent >= 0.0:
            raise ValueError(f"weight exponent must be >= 0, got {weight_exponent}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.entries = list(entries)
        self.skipped: List[str] = []
        usable = []
        for i, e in enumerate(self.entries):
            if e.group in (excluded_kinds or {}):
                self.skipped.append(f"{e.where} (kind [{e.group}] {excluded_kinds[e.group]})")
                continue
            why = next((f"simulator '{s.name}' {w}" for s in e.simulators for w in [s.supports(ndim, num_channels)]
                        if w), None)
            if why and not skip_unsupported:
                raise DatasetError(f"{e.where}: {why}; remove the line or give this dataset a dictionary of its "
                                   f"own (dataset.json \"confounder_dictionary\")")
            if why:
                self.skipped.append(f"{e.where} ({why})")
            elif e.simulators:
                usable.append(i)
        self.active = usable
        self.groups: List[List[int]] = []
        for i in usable:
            g = self.entries[i].group
            for members in self.groups:
                if self.entries[members[0]].group == g:
                    members.append(i)
                    break
            else:
                self.groups.append([i])
        self.member_weights = [torch.tensor([self.entries[i].weight for i in g], dtype=torch.float64) ** weight_exponent
                               for g in self.groups]
        self.frame, self.probability, self.group_probability = frame, probability, group_probability
        self.max_entries = max_entries
        self.prefer_label_aware = label_aware_probability is not None
        lap = group_probability if label_aware_probability is None else label_aware_probability
        if not 0.0 <= lap <= 1.0:
            raise ValueError(f"label-aware probability must lie in [0, 1], got {lap}")
        self.label_aware_groups = torch.tensor([any(s.label_aware for i in g for s in self.entries[i].simulators)
                                                for g in self.groups], dtype=torch.bool)
        self.group_probabilities = torch.tensor([
            lap if any(s.label_aware for i in g for s in self.entries[i].simulators) else group_probability
            for g in self.groups])

    def draw(self, batch: int, generator: Optional[torch.Generator] = None) -> List[List[int]]:
        """Per sample, the entry indices to apply (possibly none)."""
        out = []
        for _ in range(batch):
            if not self.groups or float(torch.rand((), generator=generator)) >= self.probability:
                out.append([])
                continue
            take = (torch.rand(len(self.groups), generator=generator) < self.group_probabilities).nonzero().flatten()
            if take.numel() == 0:
                take = torch.randint(len(self.groups), (1,), generator=generator)
            if take.numel() > self.max_entries:  # trim at random (a set label-aware probability: those last)
                take = take[torch.randperm(take.numel(), generator=generator)]
                if self.prefer_label_aware:
                    take = take[torch.argsort((~self.label_aware_groups[take]).to(torch.int8), stable=True)]
                take = take[:self.max_entries]
            chosen = []
            for g in take.tolist():
                members = self.groups[g]
                pick = torch.multinomial(self.member_weights[g], 1, generator=generator)
                chosen.append(members[int(pick)])
            out.append(sorted(chosen))
        return out

    def apply(self, x: torch.Tensor, seg: Optional[torch.Tensor], drawn: List[List[int]],
              generator: Optional[torch.Generator] = None, strength: float = 1.0) -> torch.Tensor:
        """Apply ``drawn`` (as from :meth:`draw`) to ``x`` (B, C, *spatial, normalised); ``seg`` (B, 1, ...)
        integer labels or None. ``strength`` in [0, 1] blends factual (0) and counterfactual (1) in working
        space (the audit's dose). Returns normalised values; samples with nothing drawn are returned as is."""
        if not any(drawn):
            return x
        rows = [i for i, d in enumerate(drawn) if d]
        sub = x[rows]
        w0 = self.frame.to_working(sub)
        w = w0
        s_sub = seg[rows] if seg is not None else None
        jobs = []  # (stage, order in stage, entry, simulator) for every simulator of every drawn entry
        for idx in sorted({i for d in drawn for i in d}):
            for sim in self.entries[idx].simulators:
                jobs.append((sim.stage, sim.order, idx, sim))
        for _, _, idx, sim in sorted(jobs, key=lambda j: j[:3]):
            who = [r for r, i in enumerate(rows) if idx in drawn[i]]
            sel = torch.tensor(who, device=x.device)
            theta = sim.draw(len(who), w, generator)
            part = sim.apply(w[sel], s_sub[sel] if (s_sub is not None and sim.label_aware) else None, theta,
                             generator)
            w = w.index_copy(0, sel, part.to(w.dtype))
        if strength < 1.0:
            w = w0 + strength * (w - w0)
        out = x.clone()
        out[rows] = self.frame.from_working(torch.nan_to_num(w, nan=0.0, posinf=1e4, neginf=-1e4), sub).to(x.dtype)
        return out

    def __call__(self, x: torch.Tensor, seg: Optional[torch.Tensor] = None,
                 generator: Optional[torch.Generator] = None) -> CounterfactualBatch:
        drawn = self.draw(x.shape[0], generator)
        data = self.apply(x, seg, drawn, generator)
        return CounterfactualBatch(data, drawn, [[self.entries[i].description for i in d] for d in drawn])
