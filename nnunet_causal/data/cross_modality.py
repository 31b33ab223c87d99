"""Cross-modality training: the dataset.json declaration that keeps an image of the other modality usable.

nnU-Net picks each channel's normalisation from its name in ``channel_names``
(``nnunetv2/preprocessing/normalization/map_channel_name_to_normalization.py``): ``"CT"`` gets
``CTNormalization`` -- clip to the training set's foreground 0.5-99.5 percentile HU window, then subtract
that set's mean and divide by its std. An MR image given to such a model is clipped into a CT window in which
it carries almost no contrast (MR intensities are arbitrary positive numbers), whatever the network learned.
Every other name (``"zscore"``, ``"T1"``, ...) gets ``ZScoreNormalization``: each image by its own mean and
std, which maps CT and MR of the same anatomy to comparable ranges.

The declaration (written by :func:`declare_cross_modality`, read by the cross-modality trainer)::

    "channel_names": {"0": "zscore"},            # was "CT": per-image z-score, no HU window
    "imaging_family": "ct",                       # the confounder dictionary of the source modality
    "cross_modality": {"input_normalization": "rank", "source_channel_names": {"0": "CT"}},
    "counterfactual_recipe": {"probability": 0.35, "kinds": "modality", "group_probability": 0.0,
                              "label_aware_probability": 1.0, "max_kinds": 1, "intervention_probability": 0.25}

``imaging_family`` keeps the family the original channel names gave (a channel named ``"zscore"`` names
none), so the CT dictionary, with its ``[modality]`` group, still applies. ``input_normalization`` is the
network's own first step (:mod:`nnunet_causal.networks.input_normalization`, written into the model's plans by
the text trainers): ``"rank"`` equalises each input's histogram, so the part of a modality change that is a
monotone remapping (CT's air filling a third of the z-scored range and squeezing the organs into a tenth of
it) is gone before the first convolution; ``"none"`` keeps nnU-Net's normalised input. ``counterfactual_recipe`` (the
cross-modality recipe, :data:`CROSS_MODALITY_RECIPE`; read by ``nnUNetTrainerCausalText`` over the
dictionary's header, see :mod:`nnunet_causal.confounders.recipe`) turns 35 % of the samples into a view of
the dictionary's ``[modality]`` kind alone (each structure loses or inverts its contrast, the other modality's
texture, noise and bias field; one kind per view, the in-modality kinds off) and, drawn apart, gives 25 % a GIN/IPA
view (the causal trainer's own default is half), so that about half of the samples stay fully factual; the default
trainer trains the cross-modality recipe on a declared dataset without a trainer of its own; keys the dataset
already sets are kept. Measured against the dictionary's own kinds on half of the samples
(``benchmarks/RESULTS_cross_modality.md``): mixed with the in-modality kinds the modality views did not carry to
MR, alone they did. The shares of views are the trade between the two modalities: on the synthetic benchmark
(3 seeds, 4000 steps, held-out / source modality) [modality] views on 80 % and GIN/IPA on 50 % of the samples
gave CT -> MR 0.836 / 0.857 and MR -> CT 0.786 / 0.876 (6.7 and 8.2 points of the source under stock); 35 % and
50 % gave 0.776 / 0.913 and 0.723 / 0.924 (1.1 and 3.4 under); 35 % and 25 % (the recipe) give 0.776 / 0.915 and
0.738 / 0.941 (0.9 and 1.7 under). A dataset that meets only the
other modality may set ``"probability": 0.8, "intervention_probability": 0.5``. Datasets without
the key keep the stock normalisation (CT window for CT: the better choice when train and test are both CT).
"""
from __future__ import annotations

import copy
from typing import Mapping, Optional, Sequence

from nnunet_causal.errors import DatasetError

KEY = "cross_modality"
#: the dictionary kind (``[modality]``) drawn only on a declared dataset
MODALITY_KIND = "modality"
ZSCORE = "zscore"
RECIPE_KEY = "counterfactual_recipe"
#: the network's own input normalisation on a declared dataset
INPUT_NORMALIZATION = "rank"
#: 35 % of the samples a view of the [modality] kind alone, a GIN/IPA view on 25 %: about half stay factual
CROSS_MODALITY_RECIPE = {"probability": 0.35, "kinds": MODALITY_KIND, "group_probability": 0.0,
                         "label_aware_probability": 1.0, "max_kinds": 1, "intervention_probability": 0.25}


def declare_cross_modality(dataset_json: Mapping) -> dict:
    """A copy of ``dataset_json`` declared for cross-modality training: channels nnU-Net would normalise with
    ``CTNormalization`` are renamed ``"zscore"``, ``imaging_family`` is set to ``"ct"`` when one was renamed
    and it is absent (other names, e.g. ``"T1"``, still name their family and are z-scored already),
    the cross-modality recipe is added under ``"counterfactual_recipe"`` (keys already there win), and
    ``"cross_modality"`` records the original channel names and the network's input normalisation (keys of a
    record already there win). Declaring twice changes nothing; a declaration written by hand that left a
    ``"CT"`` channel gets that channel renamed."""
    dj = copy.deepcopy(dict(dataset_json))
    names = {str(k): str(v) for k, v in (dj.get("channel_names") or {}).items()}
    if not names:
        raise DatasetError("dataset.json has no channel_names to declare for cross-modality training")
    renamed = {k: (ZSCORE if v.strip().casefold() == "ct" else v) for k, v in names.items()}
    if renamed != names:          # a "zscore" channel names no family: keep the one "CT" gave
        dj.setdefault("imaging_family", "ct")
    dj["channel_names"] = renamed
    record = dj.get(KEY) if isinstance(dj.get(KEY), Mapping) else {"source_channel_names": names}
    dj[KEY] = {"input_normalization": INPUT_NORMALIZATION, **record}
    dj[RECIPE_KEY] = {**CROSS_MODALITY_RECIPE, **(dj.get(RECIPE_KEY) or {})}
    return dj


def cross_modality_declared(dataset_json: Mapping) -> bool:
    """Whether ``dataset_json`` carries the cross-modality declaration (``"cross_modality"`` true or a dict)."""
    value = dataset_json.get(KEY)
    return bool(value) if not isinstance(value, Mapping) else True


def input_normalization_for(dataset_json: Mapping) -> str:
    """The network input normalisation a dataset asks for (:mod:`nnunet_causal.networks.input_normalization`):
    ``"cross_modality": {"input_normalization": ...}``, else ``"none"``."""
    record = dataset_json.get(KEY)
    return str(record.get("input_normalization", "none")) if isinstance(record, Mapping) else "none"


def ct_normalised_channels(normalization_schemes: Sequence[str]) -> list:
    """Indices of the channels a plans configuration normalises with ``CTNormalization``."""
    return [i for i, s in enumerate(normalization_schemes) if s == "CTNormalization"]


def check_cross_modality_plans(normalization_schemes: Sequence[str], dataset_json: Mapping,
                               source: Optional[str] = None) -> None:
    """Raise :class:`DatasetError` when a dataset declared for cross-modality training was planned with
    ``CTNormalization`` on some channel (it was planned before the declaration, or the declaration was
    written by hand with a ``"CT"`` channel); the message says what to run. ``source`` names the plans file
    (and dataset.json) in the message. The text trainers (the causal ones included) call it when training starts
    (:mod:`nnunet_causal.training.cross_modality_check`)."""
    bad = ct_normalised_channels(normalization_schemes)
    if cross_modality_declared(dataset_json) and bad:
        where = f"{source}: " if source else ""
        raise DatasetError(f"{where}dataset.json declares cross-modality training, but the plans normalise "
                           f"channel(s) {bad} with CTNormalization (a fixed HU window that clips the other "
                           f"modality); run `nnunet_causal cross-modality $nnUNet_raw/DatasetXXX_Name` (renames "
                           f"those channels \"zscore\" in the raw dataset.json) and nnUNetv2_plan_and_preprocess "
                           f"again")
