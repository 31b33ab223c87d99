"""The trainer catalogue, defined once: every name this package lets ``nnUNetv2_train -tr`` use.

* :data:`ENTRIES` -- the trainer classes written in source, one per (family, change), each with one line
  saying what it changes against its family's base;
* every schedule of :data:`nnunet_causal.training.schedules.SCHEDULES` applied to every entry:
  ``<entry>_<suffix>`` (``nnUNetTrainerCausalText_5epochs``, ``nnUNetTrainerText_CPUDemo``...), generated
  here, not written by hand (stock ``nnUNetTrainer`` gets the schedules nnU-Net does not ship itself);
* :data:`DEPRECATED` -- names models were trained under before the recipe moved into the confounder
  dictionaries; each is a thin alias (the recipe it trained with, pinned) so that its model folders still
  resume and predict; new training should use the name it points to;
* :data:`RECOMMENDED` -- the trainer to use per imaging family.

:data:`TRAINERS` maps every name to its class; ``nnunet_causal/ext`` (``nnUNet_extTrainer``) serves exactly
these names, and ``nnunet_causal trainers`` prints them. The MGCL third-stage trainer lives a floor above
``training`` (it reads MGCL encoder folders) and is listed here by module name only.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Dict, Mapping, Optional, Tuple

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.training_length import nnUNetTrainer_Xepochs

from nnunet_causal.confounders.recipe import CounterfactualRecipe
from nnunet_causal.training.causal import variants as causal
from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import nnUNetTrainerCounterfactual
from nnunet_causal.training.gin import variants as gin
from nnunet_causal.training.gin.nnUNetTrainerGIN import nnUNetTrainerGIN, nnUNetTrainerGINIPA
from nnunet_causal.training.schedules import SCHEDULE_MIXINS, SCHEDULES
from nnunet_causal.training.text import variants as text
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText, nnUNetTrainerTextPresence


@dataclass(frozen=True)
class Entry:
    """A trainer written in source: its ``family``, one line on what it changes, and whether the schedules
    apply to it. ``module``: where a trainer above this floor lives (imported by the ext shim only)."""
    name: str
    family: str
    change: str
    cls: Optional[type] = None
    module: Optional[str] = None
    schedules: bool = True


def _e(cls: type, family: str, change: str) -> Entry:
    return Entry(cls.__name__, family, change, cls)


FAMILIES = {"causal": "causal text-prompted (confounder bottleneck, causal losses, counterfactual views)",
            "text": "text-prompted (segments what a prompt names)",
            "gin": "image-level interventions on the plans' own network",
            "counterfactual": "stock network, dictionary do(z) views",
            "stock": "nnU-Net's own trainer",
            "mgcl": "MGCL third stage"}

ENTRIES: Tuple[Entry, ...] = (
    _e(nnUNetTrainerCausalText, "causal", "the text trainer + confounder cross-attention (MTRS), L_causal, "
       "L_contrast, L_LAD, counterfactual views drawn by the dictionary's recipe, GIN/IPA"),
    _e(causal.nnUNetTrainerCausalText_GenericRecipe, "causal", "the generic recipe instead of the dictionary's "
       "(70 % views, label-aware kinds like any other, weights as written)"),
    _e(causal.nnUNetTrainerCausalText_NoCounterfactual, "causal", "no counterfactual views (dictionary acts on "
       "features only)"),
    _e(causal.nnUNetTrainerCausalText_NoImageIntervention, "causal", "no GIN/IPA views"),
    _e(causal.nnUNetTrainerCausalText_GINOnly, "causal", "GIN views without IPA"),
    _e(causal.nnUNetTrainerCausalText_AlwaysIntervene, "causal", "GIN/IPA on every sample, not the recipe's share"),
    _e(causal.nnUNetTrainerCausalText_NoMTRS, "causal", "bottleneck intervenes at every position (alpha 1)"),
    _e(causal.nnUNetTrainerCausalText_NoBottleneck, "causal", "no confounder cross-attention"),
    _e(causal.nnUNetTrainerCausalText_NoLAD, "causal", "no L_LAD (lambda3 0)"),
    _e(causal.nnUNetTrainerCausalText_NoCausalLoss, "causal", "no L_causal (lambda1 0)"),
    _e(causal.nnUNetTrainerCausalText_NoPresence, "causal", "no presence head"),
    _e(causal.nnUNetTrainerCausalText_FrozenEncoder, "causal", "parameter-efficient: pretrained encoder and "
       "decoder frozen, LoRA adapters on the decoder ($nnUNet_causal_pretrained_encoder)"),
    _e(nnUNetTrainerText, "text", "stock network + text head: one query per prompt, presence head"),
    _e(text.nnUNetTrainerText_CrossAttentionConnector, "text", "image-conditioned cross-attention connector "
       "instead of the MLP"),
    _e(text.nnUNetTrainerText_NoPresence, "text", "no presence head"),
    _e(nnUNetTrainerGIN, "gin", "GIN views (random shallow-network appearance) of half of the samples"),
    _e(nnUNetTrainerGINIPA, "gin", "GIN and IPA views + their consistency term"),
    _e(gin.nnUNetTrainerGIN_AlwaysIntervene, "gin", "GIN on every sample"),
    _e(gin.nnUNetTrainerGINIPA_AlwaysIntervene, "gin", "GIN and IPA on every sample"),
    _e(nnUNetTrainerCounterfactual, "counterfactual", "stock network and loss; batches get the dictionary's "
       "do(z) views by its recipe"),
    _e(nnUNetTrainer, "stock", "nnU-Net unchanged (the schedules nnU-Net lacks are added)"),
    Entry("nnUNetTrainerText_FrozenEncoders", "mgcl", "text trainer with MGCL-pretrained image and text "
          "encoders frozen", module="nnunet_causal.mgcl.frozen_encoders_trainer", schedules=False),
)

#: imaging family -> (recommended trainer, what stands behind the recommendation)
RECOMMENDED: Mapping[str, Tuple[str, str]] = MappingProxyType({
    "endoscopy": ("nnUNetTrainerCausalText", "measured: held-out Dice 0.64 / 0.60 against stock's 0.08 / 0.06 "
                  "on the CPU leave-one-site-out benchmark (5000 steps, 3 seeds)"),
    "ct": ("nnUNetTrainerCausalText", "measured: held-out scanner 0.86 against stock's 0.71 on the CPU "
           "leave-one-scanner-out CT task (4000 steps, 3 seeds; in-domain 3.5 points below stock)"),
    "mri": ("nnUNetTrainerCausalText", "recipe not measured on MRI (generic recipe)"),
})


class DeprecatedName:
    """Mixin of the deprecated aliases: warns once per instance, in Python's warnings and the training log."""
    use_instead = ""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        message = f"{type(self).__name__} is deprecated (kept so that its models resume and predict): " \
                  f"{self.use_instead}"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        self.print_to_log_file(f"WARNING: {message}")


_CUE_BREAKING = CounterfactualRecipe(probability=1.0, label_aware_probability=0.6, weight_exponent=4.0)
#: former recipe classes of the causal trainer -> the recipe they trained with
_OLD_RECIPES: Dict[str, CounterfactualRecipe] = {
    "CueBreaking": _CUE_BREAKING,
    "CueBreakingNoGIN": replace(_CUE_BREAKING, image_intervention="none"),
    "CueBreakingPaired": replace(_CUE_BREAKING, consistency_weight=1.0),
    "CueBreakingFactual": replace(_CUE_BREAKING, probability=0.8, label_aware_probability=0.75),
    "CueBreakingFactual40": replace(_CUE_BREAKING, probability=0.6, label_aware_probability=1.0),
    "CueBreakingFactual50": replace(_CUE_BREAKING, probability=0.5, label_aware_probability=1.0),
}
#: the scheduled forms of them that existed
_OLD_SCHEDULES = {"CueBreaking": ("CPULong", "CPU2000steps", "CPU4000steps", "CPU5000steps"),
                  "CueBreakingNoGIN": ("CPU2000steps", "CPU5000steps"), "CueBreakingPaired": ("CPU2000steps",),
                  "CueBreakingFactual": ("CPU2000steps", "CPU5000steps"),
                  "CueBreakingFactual40": ("CPU5000steps",), "CueBreakingFactual50": ("CPU5000steps",)}


def _recipe_keys(recipe: CounterfactualRecipe) -> str:
    base = CounterfactualRecipe().values()
    return ", ".join(f'"{k}": {v!r}' for k, v in recipe.values().items() if v != base[k])


def _deprecated() -> Dict[str, Tuple[type, Optional[str], dict]]:
    """old name -> (base class, schedule suffix or None, class attributes)."""
    out: Dict[str, Tuple[type, Optional[str], dict]] = {}
    for short, recipe in _OLD_RECIPES.items():
        endoscopy = "the endoscopy dictionary's recipe is this one; " if short == "CueBreakingFactual50" else ""
        for suffix in (None, *_OLD_SCHEDULES[short]):
            target = "nnUNetTrainerCausalText" + (f"_{suffix}" if suffix else "")
            instead = (f"{endoscopy}train {target} with dataset.json \"counterfactual_recipe\": "
                       f"{{{_recipe_keys(recipe)}}} (see docs/trainers.md)")
            name = f"nnUNetTrainerCausalText_{short}" + (f"_{suffix}" if suffix else "")
            out[name] = (nnUNetTrainerCausalText, suffix, {"counterfactual_recipe": recipe, "use_instead": instead})
    for suffix in ("CPUDemo", "CPULong"):
        out[f"nnUNetTrainerTextPresence_{suffix}"] = (nnUNetTrainerTextPresence, suffix, {
            "use_instead": f"use nnUNetTrainerText_{suffix} (the presence head is the default)"})
    return out


DEPRECATED_BASES = ("nnUNetTrainerTextPresence",)  # deprecated names written in source (they warn themselves)


def _schedules_for(entry: Entry):
    if not entry.schedules:
        return ()
    if entry.cls is nnUNetTrainer:  # nnU-Net's own nnUNetTrainer_Xepochs win its lookup: add only the others
        return tuple(s for s in SCHEDULES if not hasattr(nnUNetTrainer_Xepochs, f"nnUNetTrainer_{s.suffix}"))
    return SCHEDULES


def _make(name: str, bases: tuple, attrs: dict, doc: str) -> type:
    return type(name, bases, {**attrs, "__module__": __name__, "__qualname__": name, "__doc__": doc})


def _build() -> Tuple[Dict[str, type], Dict[str, str]]:
    out: Dict[str, type] = {}
    family: Dict[str, str] = {}
    for e in ENTRIES:
        family[e.name] = e.family
        if e.cls is None:
            continue
        out[e.name] = e.cls
        for s in _schedules_for(e):
            out[f"{e.name}_{s.suffix}"] = _make(f"{e.name}_{s.suffix}", (SCHEDULE_MIXINS[s.suffix], e.cls), {},
                                                f"{e.name} for {s.describe()}.")
            family[f"{e.name}_{s.suffix}"] = e.family
    out["nnUNetTrainerTextPresence"] = nnUNetTrainerTextPresence
    family["nnUNetTrainerTextPresence"] = "text"
    for name, (base, suffix, attrs) in _deprecated().items():
        bases = ((SCHEDULE_MIXINS[suffix],) if suffix else ()) + (base,)
        if base is not nnUNetTrainerTextPresence:
            bases = (DeprecatedName,) + bases
        out[name] = _make(name, bases, attrs, f"Deprecated name, kept for its model folders. "
                                              f"{attrs.get('use_instead', 'Use nnUNetTrainerText.')}")
        family[name] = "causal" if issubclass(base, nnUNetTrainerCausalText) else "text"
    return out, family


_TRAINERS, _FAMILY_OF = _build()
#: every trainer name this package serves -> its class
TRAINERS: Mapping[str, type] = MappingProxyType(_TRAINERS)
#: every name (the external ones included) -> its family (a key of FAMILIES)
FAMILY_OF: Mapping[str, str] = MappingProxyType(_FAMILY_OF)
#: trainers above this floor: name -> module (the ext shim imports them)
EXTERNAL: Mapping[str, str] = MappingProxyType({e.name: e.module for e in ENTRIES if e.module})
DEPRECATED: Tuple[str, ...] = tuple(sorted(DEPRECATED_BASES + tuple(_deprecated())))


def trainer_names() -> Tuple[str, ...]:
    """Every name ``-tr`` accepts from this package (generated schedules and deprecated aliases included)."""
    return tuple(sorted((*TRAINERS, *EXTERNAL)))


def __getattr__(name: str) -> type:
    """``from nnunet_causal.training.catalogue import nnUNetTrainerCausalText_CPUDemo`` (and unpickling)."""
    try:
        return TRAINERS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
