"""Confounder dictionaries moved to :mod:`nnunet_causal.confounders.dictionary` (descriptions plus the
simulator that sets each); this module keeps the old import path."""
from nnunet_causal.confounders.dictionary import (FAMILIES, confounder_family_for_dataset,  # noqa: F401
                                                  confounders_for_dataset, dictionary_path,
                                                  load_confounder_dictionary)
