"""``python -m training.builder``."""

import sys

from training.builder.cli import main

if __name__ == "__main__":
    sys.exit(main())
