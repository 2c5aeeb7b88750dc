"""``python -m sidecar`` runs the same CLI as the ``sidecar`` console script."""

import sys

from sidecar.cli import main

sys.exit(main())
