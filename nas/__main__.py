"""`python -m nas` is the same as the `nas` command (and what `torchrun -m nas` runs)."""

import sys

if __name__ == "__main__":
    try:
        from nas.cli import main
    except KeyboardInterrupt:  # Ctrl-C while Python is still loading the command: one line, no traceback
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
