"""The ``genomod`` command line (click). Each sub-command lives in its own module of this package."""
