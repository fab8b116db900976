"""The ``genomod`` command line (click). Each sub-command lives in its own module of this package."""

# Default tokens per model forward for long inputs (`score --chunk-size`, `embed --chunk-size`); the same as
# genomod.model.hybrid.DEFAULT_CHUNK, repeated here so that command modules import no torch before they run
# (tests/test_long_inputs.py checks that the two agree).
DEFAULT_CHUNK = 8192
