"""`python -m server.cli ...` runs the `hermes` command line."""

import sys

from . import main

sys.exit(main())
