"""``python -m glmm_ext``: the command line (no arguments: fit the bundled example and print every table)."""
import sys

from .cli import main

sys.exit(main())
