"""``python -m genomod`` runs the CLI."""

import sys

from genomod.cli.main import main

sys.exit(main())
