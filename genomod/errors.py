"""One exception hierarchy for genomod: the CLI turns these into one-line messages and exit code 2."""

from __future__ import annotations

import signal
import threading


class GenomodError(Exception):
    """Base class of every error genomod raises on purpose (bad input, bad model, bad config)."""


class InputError(GenomodError):
    """A user's input file or record is missing, malformed or inconsistent (names the file/record)."""


class ModelError(GenomodError):
    """A model or checkpoint cannot be built or loaded (corrupt file, shape mismatch, newer version)."""


class ConfigError(GenomodError):
    """A configuration is invalid (unknown key, bad value); raised before any work starts."""


class DeviceError(GenomodError):
    """A requested device or kernel cannot be used here."""


class Terminated(BaseException):
    """Raised on SIGTERM (see :func:`raise_on_sigterm`) so that temporary outputs are removed on the way out."""


_terminated = False


def _on_sigterm(signum: int, _frame: object) -> None:
    global _terminated
    _terminated = True
    raise Terminated(signum)


def check_terminated() -> None:
    """Raise Terminated when SIGTERM arrived earlier. The handler's own raise can be swallowed when the signal
    lands in a ``__del__`` or weakref callback ("Exception ignored in ..."), so long loops and every commit of
    an output (the final rename) call this too."""
    if _terminated:
        raise Terminated(signal.SIGTERM)


def raise_on_sigterm() -> None:
    """Make a scheduler's SIGTERM unwind like Ctrl-C (atomic outputs delete their temporary files).

    Only from the main thread (signal handlers cannot be installed elsewhere); a no-op otherwise.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
