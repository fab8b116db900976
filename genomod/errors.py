"""One exception hierarchy for genomod: the CLI turns these into one-line messages and exit code 2."""

from __future__ import annotations


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
