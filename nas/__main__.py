"""`python -m nas` is the same as the `nas` command (and what `torchrun -m nas` runs)."""

import sys

from nas.cli import main

if __name__ == "__main__":
    sys.exit(main())
