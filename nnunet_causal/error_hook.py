"""One clear message instead of a traceback for this package's errors, in every command.

Our own entry points (``nnunet_causal``, ``nnUNetv2_predict_text``, the converters) catch
:class:`~nnunet_causal.errors.NnunetCausalError` themselves. Inside the stock nnU-Net commands
(``nnUNetv2_train``, ``nnUNetv2_predict``...) nobody does: there :func:`install_error_hook` -- run when
nnU-Net imports the trainer shim folder ``nnunet_causal/ext`` -- wraps :data:`sys.excepthook` so that an
uncaught error of this package prints ``PROG: error: MESSAGE`` (the process still exits with status 1).
Every other exception (a real bug) keeps its full traceback. Only the main process is covered: an error
raised in a multiprocessing worker reaches the parent as another exception type and keeps its traceback.
"""
from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Callable, Optional, Type

from nnunet_causal.errors import NnunetCausalError

_MARK = "_nnunet_causal_error_hook"

ExceptHook = Callable[[Type[BaseException], BaseException, Optional[TracebackType]], object]


def error_message(exc: BaseException, prog: Optional[str] = None) -> str:
    """``PROG: error: MESSAGE`` as our entry points print it (``PROG`` defaults to the running command)."""
    if prog is None:
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"{prog}: error: {exc}"


def make_error_hook(previous: ExceptHook) -> ExceptHook:
    """An excepthook that prints our errors as one line and hands everything else to ``previous``."""
    def hook(exc_type, exc, tb):
        if isinstance(exc, NnunetCausalError):
            sys.stderr.write(error_message(exc) + "\n")
            sys.stderr.flush()
            return None
        return previous(exc_type, exc, tb)

    setattr(hook, _MARK, True)
    hook.previous = previous
    return hook


def install_error_hook() -> None:
    """Wrap the current :data:`sys.excepthook` (once; calling again does nothing)."""
    if not getattr(sys.excepthook, _MARK, False):
        sys.excepthook = make_error_hook(sys.excepthook)
