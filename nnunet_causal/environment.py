"""The package's environment variables: one casing, ``nnUNet_causal_<name>`` (as nnU-Net's ``nnUNet_raw``).

Read with :func:`read_variable` where the value is used (never at import). A variable that was renamed is
still read under its old name, with a :class:`DeprecationWarning` (and a log line) naming the new one; the
new name wins when both are set. The package reads no variable elsewhere than in the module that uses it, and
changes none outside a command-line entry point.

=====================================  ===========================================  ==========================
variable                               what it sets                                 old name (still read)
=====================================  ===========================================  ==========================
``nnUNet_causal_text_encoder``         the text encoder a new training uses
``nnUNet_causal_cache``                the text-embedding cache folder
``nnUNet_causal_prompt_file``          rewording of the trained prompts for stock
                                       ``nnUNetv2_predict``
``nnUNet_causal_pretrained_encoder``   backbone weights of the pretrained-encoder
                                       trainers (+ ``..._allow_partial``)
``nnUNet_causal_study_seed``           the seed a study run passes to its trainings
``nnUNet_causal_llm_url``              OpenAI-compatible endpoint of the optional   ``NNUNET_CAUSAL_LLM_URL``
                                       LLM parser / extractor
``nnUNet_causal_llm_model``            its model name                               ``NNUNET_CAUSAL_LLM_MODEL``
``nnUNet_causal_llm_api_key``          its API key                                  ``NNUNET_CAUSAL_LLM_API_KEY``
=====================================  ===========================================  ==========================
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Dict, Optional

logger = logging.getLogger(__name__)

#: new name -> old name still read
RENAMED: Dict[str, str] = {
    "nnUNet_causal_llm_url": "NNUNET_CAUSAL_LLM_URL",
    "nnUNet_causal_llm_model": "NNUNET_CAUSAL_LLM_MODEL",
    "nnUNet_causal_llm_api_key": "NNUNET_CAUSAL_LLM_API_KEY",
}
_warned = set()


def read_variable(name: str, default: Optional[str] = None) -> Optional[str]:
    """``$name``, else its old name (deprecated, warned once per process), else ``default``."""
    value = os.environ.get(name)
    if value is not None:
        return value
    old = RENAMED.get(name)
    if old is not None and os.environ.get(old) is not None:
        message = f"the environment variable {old} is deprecated: set {name} instead"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        if old not in _warned:
            _warned.add(old)
            logger.warning(message)
        return os.environ[old]
    return default
