"""Command parsing and causal retrieval for test-time intervention (seeds 000 and 003).

``parse_command("shrink the liver a bit and remove the spleen", "btcv")`` ->
``{"command": ..., "actions": [{"action": "shrink", "target": ["liver"], "strength": "slight", ...}, ...],
"refused": None}``. The default backend is the offline grammar (:mod:`.offline_parser`); LLM backends
(:mod:`.llm_backends`) answer in the same schema (:mod:`.schema`), validated and re-grounded here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from nnunet_causal.errors import PromptError
from nnunet_causal.intervention.commands.schema import (ACTIONS, MAX_COMMAND_CHARS, PARSE_SCHEMA, STRENGTHS,
                                                        validate_actions)
from nnunet_causal.text.vocabulary import Vocabulary, load_vocabulary

__all__ = ["ACTIONS", "STRENGTHS", "MAX_COMMAND_CHARS", "PARSE_SCHEMA", "PromptError", "parse_command",
           "validate_actions", "as_vocabulary", "ExemplarBank", "resolve_confounder", "load_causal_knowledge"]


def __getattr__(name):  # retrieval API, imported when first used
    if name in ("ExemplarBank", "resolve_confounder"):
        from nnunet_causal.intervention.commands import causal_retrieval
        return getattr(causal_retrieval, name)
    if name == "load_causal_knowledge":
        from nnunet_causal.intervention.commands.causal_knowledge import load_causal_knowledge
        return load_causal_knowledge
    raise AttributeError(name)


def as_vocabulary(vocabulary: Union[None, str, Path, Vocabulary, list, tuple]) -> Vocabulary:
    """A :class:`Vocabulary`: given, a name (``all``, ``btcv``, ...), a trained model folder, or a list of
    label names (a model's labels)."""
    if isinstance(vocabulary, Vocabulary):
        return vocabulary
    if isinstance(vocabulary, (list, tuple)):
        from nnunet_causal.text.vocabulary import vocabulary_from_labels
        return vocabulary_from_labels({name: i + 1 for i, name in enumerate(vocabulary)})
    from nnunet_causal.errors import NnunetCausalError
    try:
        return load_vocabulary(str(vocabulary) if vocabulary is not None else "all")
    except NnunetCausalError as e:
        if isinstance(e, PromptError):
            raise
        raise PromptError(str(e)) from None


def parse_command(command: str, vocabulary=None, confounders=None, style_description: Optional[str] = None,
                  backend=None, encoder=None) -> dict:
    """Parse one clinician command into edit actions.

    Args:
        command: the untrusted command text (1-500 characters; never executed, never used as a path).
        vocabulary: a :class:`~nnunet_causal.text.vocabulary.Vocabulary`, a vocabulary name, a trained
            model folder or a list of label names; targets are its canonical term names.
        confounders: the model's confounder dictionary (family name, file, or list of descriptions /
            entries); ``None`` = every shipped dictionary. ``ignore_confounder`` actions name one entry.
        style_description: the case's style (its domain record ``"style"``), used by causal retrieval to
            resolve vague commands ("ignore the artefact").
        backend: ``None`` / ``"offline"`` for the grammar, or an LLM backend of :mod:`.llm_backends`.
        encoder: optional text encoder for the resolver's similarity stage and retrieval tie-breaks.

    Returns the schema's dict (validated). Raises :class:`PromptError` for empty / overlong commands,
    unknown structures (naming the nearest known ones) and off-schema LLM answers.
    """
    vocab = as_vocabulary(vocabulary)
    if backend is None or backend == "offline":
        from nnunet_causal.intervention.commands.offline_parser import parse_offline
        return validate_actions(parse_offline(command, vocab, confounders, style_description, encoder))
    from nnunet_causal.intervention.commands.llm_backends import parse_with_llm
    return validate_actions(parse_with_llm(command, vocab, backend, confounders, style_description, encoder))
