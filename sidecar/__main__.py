"""`python -m sidecar` is the `dns-sidecar` command."""

import sys

from .cli import main

sys.exit(main())
