"""Exception types. Library code raises these; entry points turn them into a message and exit code 2."""


class NnunetCausalError(Exception):
    """Base class of every error this package raises on purpose (bad input, missing files, ...)."""


class PromptError(NnunetCausalError, ValueError):
    """A prompt, a prompt file or dataset.json prompts are malformed."""


class TextEncoderError(NnunetCausalError, RuntimeError):
    """A text encoder is unknown, or its weights cannot be found / loaded."""


class DatasetError(NnunetCausalError, ValueError):
    """A dataset (raw folder, dataset.json, domain records, images) is malformed."""


class ResolutionError(NnunetCausalError, LookupError):
    """A prompt could not be grounded to any known structure."""


class ModelError(NnunetCausalError, RuntimeError):
    """A trained model folder, fold or checkpoint is missing or unreadable."""
