"""``python -m studies.experiments``: see the package docstring."""

import sys

from studies.experiments.cli import main

if __name__ == "__main__":
    sys.exit(main())
