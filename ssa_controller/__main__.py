"""`python -m ssa_controller`: the command line."""

import sys

from .cli import main

sys.exit(main())
