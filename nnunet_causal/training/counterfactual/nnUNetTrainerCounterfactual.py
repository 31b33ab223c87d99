"""Counterfactual training: dictionary confounders set by do(z) on the training batch (image level).

:class:`CounterfactualMixin` builds a :class:`~nnunet_causal.confounders.counterfactual.CounterfactualSampler`
from the dataset's confounder dictionary (every line with a simulator) and, per training step, replaces a
random ``counterfactual_probability`` of the samples by views in which 1..``counterfactual_max_entries``
drawn confounders are set independently of the anatomy; labels are the factual ones. It runs on the
training device after nnU-Net's spatial and intensity augmentation (the batch as the network would see it),
so label-aware simulators read the augmented label map. A counterfactual view sets one confounder of each
of a few randomly included kinds (groups) of the dictionary. It combines with any trainer:
``class X(CounterfactualMixin, nnUNetTrainerText)``; :attr:`last_counterfactual` keeps the drawn
descriptions of the last batch (the causal trainer's known style).

The sampling recipe (share of views, of label-aware views, weight exponent, ...) is the dictionary's header
(:mod:`nnunet_causal.confounders.recipe`), overridden per dataset by dataset.json ``"counterfactual_recipe"``;
it is resolved when the trainer is built (a bad header is an error naming its file and line) and logged at
training start. A trainer class that sets one of the ``counterfactual_*`` attributes (or, for the causal
trainer, ``image_intervention``, ``intervention_probability``, ``counterfactual_consistency_weight``) pins
that knob over the recipe: that is how the ablations change one thing. Entries of a shipped family
dictionary that cannot run on the data (slice thickness on 2D CT, RGB-only effects on grey images) are
skipped and logged; in a user's own dictionary they are an error.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_causal.confounders.counterfactual import CounterfactualBatch, CounterfactualSampler
from nnunet_causal.confounders.dictionary import confounder_entries_for_dataset, recipe_for_dataset
from nnunet_causal.confounders.frames import IntensityFrame
from nnunet_causal.confounders.recipe import ALL_KINDS, CounterfactualRecipe, kind_names, share_of_views
from nnunet_causal.data.cross_modality import MODALITY_KIND, cross_modality_declared
from nnunet_causal.errors import DatasetError
from nnunet_causal.training.cross_modality_check import check_plans_at_training_start
from nnunet_causal.training.counterfactual.recipe_record import (RECIPE_RECORD, read_recipe_record,
                                                                 write_recipe_record)

#: recipe key -> the trainer attribute it sets (attributes a trainer lacks are not its knobs)
RECIPE_ATTRIBUTES = {
    "probability": "counterfactual_probability",
    "probability_start": "counterfactual_probability_start",
    "group_probability": "counterfactual_group_probability",
    "label_aware_probability": "counterfactual_label_aware_probability",
    "max_kinds": "counterfactual_max_entries",
    "weight_exponent": "counterfactual_weight_exponent",
    "image_intervention": "image_intervention",
    "intervention_probability": "intervention_probability",
    "consistency_weight": "counterfactual_consistency_weight",
    "kinds": "counterfactual_kinds",
}


def label_map_for_simulators(target, label_manager) -> torch.Tensor:
    """(B, 1, *spatial) long label map of the full-resolution target; ignore-label voxels become 0; region
    targets (B, R, ...) become the index of their last active region (1..R)."""
    t = target[0] if isinstance(target, (list, tuple)) else target
    if label_manager.has_regions:
        r = t.shape[1]
        idx = torch.arange(1, r + 1, device=t.device).view(1, r, *([1] * (t.ndim - 2)))
        return ((t > 0).long() * idx).amax(1, keepdim=True)
    seg = t.long()
    if label_manager.has_ignore_label:
        seg = torch.where(seg == label_manager.ignore_label, torch.zeros_like(seg), seg)
    return seg


def excluded_kinds(dataset_json: dict, kinds: str = ALL_KINDS, dictionary_kinds: Sequence[str] = (),
                   where: str = "recipe") -> Dict[str, str]:
    """Dictionary kinds a dataset does not draw: ``[modality]`` (the same anatomy imaged by the other
    modality) only on a dataset declared cross-modality, so that in-modality training keeps its measured
    views (:mod:`nnunet_causal.data.cross_modality`); with a recipe ``kinds`` list, every kind of
    ``dictionary_kinds`` it does not name (``where`` says who set the list)."""
    out: Dict[str, str] = {}
    chosen = kind_names(kinds)
    if chosen is not None:
        out.update({k: f"is not among the recipe's kinds ({where}: kinds = {kinds})"
                    for k in dictionary_kinds if k not in chosen})
    if not cross_modality_declared(dataset_json):
        out[MODALITY_KIND] = "is drawn only on a dataset declared cross-modality (nnunet_causal cross-modality)"
    return out


class CounterfactualMixin:
    # None: from the dictionary's recipe (see RECIPE_ATTRIBUTES); a value set by a subclass pins the knob
    counterfactual_probability: Optional[float] = None
    counterfactual_probability_start: Optional[float] = None  # the share at the first epoch (a curriculum)
    counterfactual_group_probability: Optional[float] = None
    counterfactual_label_aware_probability: Optional[float] = None
    counterfactual_max_entries: Optional[int] = None
    counterfactual_weight_exponent: Optional[float] = None   # draw within a kind ~ weight ** exponent
    counterfactual_kinds: Optional[str] = None               # "all" or the kind names a view may draw
    #: a whole recipe in place of the dictionary's header and dataset.json's override (None: theirs)
    counterfactual_recipe: Optional[CounterfactualRecipe] = None
    last_counterfactual: Optional[CounterfactualBatch] = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.recipe, self.recipe_pins = resolve_recipe(type(self), dataset_json)
        for key, attr in RECIPE_ATTRIBUTES.items():
            if hasattr(type(self), attr):
                setattr(self, attr, self.recipe_pins.get(key, getattr(self.recipe, key)))

    def initialize(self):
        check_plans_at_training_start(self)  # a cross-modality dataset must not be planned with the CT window
        super().initialize()

    def counterfactual_sampler(self) -> CounterfactualSampler:
        sampler = getattr(self, "_cf_sampler", None)
        if sampler is None:
            entries = confounder_entries_for_dataset(self.dataset_json)
            frame = IntensityFrame.from_plans(self.plans_manager.plans, self.configuration_name)
            ndim = len(self.configuration_manager.patch_size)
            shipped = not self.dataset_json.get("confounder_dictionary")
            sampler = CounterfactualSampler(entries, frame, ndim, self.num_input_channels,
                                            self.counterfactual_probability, self.counterfactual_group_probability,
                                            self.counterfactual_max_entries, skip_unsupported=shipped,
                                            label_aware_probability=self.counterfactual_label_aware_probability,
                                            weight_exponent=self.counterfactual_weight_exponent,
                                            excluded_kinds=excluded_kinds(
                                                self.dataset_json, self.counterfactual_kinds,
                                                [e.group for e in entries],
                                                self.recipe.where.get("kinds", type(self).__name__)))
            self._cf_sampler = sampler
            pins = ", ".join(f"{k}={v}" for k, v in self.recipe_pins.items())
            source = (f"{type(self).__name__}'s own" if self.counterfactual_recipe is not None
                      else f"* set by {_recipe_sources(self.recipe)}; others default")
            self.print_to_log_file(f"counterfactual recipe: {self.recipe.describe()} ({source})"
                                   + (f"; pinned by {type(self).__name__}: {pins}" if pins else ""))
            if (self.counterfactual_probability or self.counterfactual_probability_start) and not sampler.groups:
                raise DatasetError(f"counterfactual views are asked for (probability = "
                                   f"{self.counterfactual_probability}), but no kind of {entries[0].source} can be "
                                   f"drawn on this data (skipped: {'; '.join(sampler.skipped) or 'none'})")
            if self.counterfactual_label_aware_probability and not bool(sampler.label_aware_groups.any()):
                where = self.recipe.where.get("label_aware_probability", f"{type(self).__name__}")
                raise DatasetError(f"{where}: label-aware views are asked for, but no label-aware entry of "
                                   f"{entries[0].source} can run on this data (skipped: "
                                   f"{'; '.join(sampler.skipped) or 'none'})")
            share = (f"p={self.counterfactual_probability}" if self.counterfactual_probability_start is None else
                     f"p from {self.counterfactual_probability_start} (first epoch) to "
                     f"{self.counterfactual_probability} (last)")
            self.print_to_log_file(
                f"counterfactual views: {len(sampler.active)} of {len(entries)} dictionary entries have a simulator "
                f"({entries[0].source}; {len(sampler.groups)} kinds); per sample {share}, "
                f"each kind p={self.counterfactual_group_probability}, up to {self.counterfactual_max_entries} "
                f"kinds; within a kind ~ weight ** {self.counterfactual_weight_exponent}; frame {frame.kind}")
            if sampler.skipped:
                self.print_to_log_file("counterfactual views: entries not drawn, each with its reason: "
                                       + "; ".join(sampler.skipped))
            text_only = [e.description for e in entries if not e.simulators]
            if text_only:
                self.print_to_log_file(f"counterfactual views: text-only entries (features only): {text_only}")
        return sampler

    def on_train_start(self):
        super().on_train_start()   # initialises (and may refuse the plans) before the recipe is recorded
        self.settle_recipe()
        self.counterfactual_sampler()  # dictionary / dimensionality errors before the first step

    def on_epoch_start(self):
        super().on_epoch_start()
        self.update_share_of_views()

    def update_share_of_views(self) -> None:
        """The recipe's curriculum (``probability_start``): this epoch's share of counterfactual views."""
        if self.counterfactual_probability_start is not None:
            self.counterfactual_sampler().probability = share_of_views(
                self.counterfactual_probability, self.counterfactual_probability_start, self.current_epoch,
                self.num_epochs)

    def recipe_knobs(self) -> Dict[str, object]:
        """The recipe values this trainer uses (its attributes of :data:`RECIPE_ATTRIBUTES`)."""
        return {key: getattr(self, attr) for key, attr in RECIPE_ATTRIBUTES.items() if hasattr(type(self), attr)}

    def settle_recipe(self) -> None:
        """A fresh training records its recipe in the fold folder; a continued one (``--c``) keeps the recorded
        recipe and logs where the dictionary / dataset.json would now give other values
        (:mod:`nnunet_causal.training.counterfactual.recipe_record`)."""
        stored = read_recipe_record(self.output_folder) if self.current_epoch > 0 else None
        now = self.recipe_knobs()
        if stored is None:
            if self.local_rank == 0:
                set_by = {k: w for k, w in self.recipe.where.items() if k in now}
                set_by.update({k: f"{type(self).__name__} (pinned)" for k in self.recipe_pins if k in now})
                write_recipe_record(self.output_folder, type(self).__name__, now, set_by)
            return
        changed = {k: (stored[k], now.get(k)) for k in stored if k in now and stored[k] != now[k]}
        for key, value in stored.items():
            if key in now:
                setattr(self, RECIPE_ATTRIBUTES[key], value)
        if changed:
            self.print_to_log_file(
                f"continuing with the recipe this training started with ({self.output_folder}/{RECIPE_RECORD}); "
                "the dictionary and dataset.json now give: "
                + ", ".join(f"{k}={new} (kept {old})" for k, (old, new) in changed.items()))

    def counterfactual(self, batch: dict) -> dict:
        """The batch with its data replaced by counterfactual views (on the device)."""
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        t0 = (target[0] if isinstance(target, list) else target).to(self.device, non_blocking=True)
        seg = label_map_for_simulators(t0, self.label_manager)
        with torch.no_grad():
            cf = self.counterfactual_sampler()(data, seg)
        self.last_counterfactual = cf
        return {**batch, "data": cf.data}

    def train_step(self, batch: dict) -> dict:
        return super().train_step(self.counterfactual(batch))


def resolve_recipe(trainer_class: type, dataset_json: dict) -> Tuple[CounterfactualRecipe, Dict[str, object]]:
    """``(recipe, pins)``: the dataset's recipe (or the class's own ``counterfactual_recipe``) and the knobs
    ``trainer_class`` pins (its attributes of :data:`RECIPE_ATTRIBUTES` that are not None)."""
    recipe = getattr(trainer_class, "counterfactual_recipe", None) or recipe_for_dataset(dataset_json)
    pins = {key: getattr(trainer_class, attr) for key, attr in RECIPE_ATTRIBUTES.items()
            if getattr(trainer_class, attr, None) is not None}
    return recipe, pins


def _recipe_sources(recipe: CounterfactualRecipe) -> str:
    files = sorted({w.rsplit(", line", 1)[0] for w in recipe.where.values()})
    return " and ".join(files) if files else "nothing"


class nnUNetTrainerCounterfactual(CounterfactualMixin, nnUNetTrainer):
    """Stock nnU-Net network and loss; training batches get dictionary do-interventions."""
