"""The `nas` command: one subcommand per pipeline stage (see `nas --help`)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional

from nas import __version__
from nas.errors import UserError
from nas.runs import is_rank_zero

# Order is the order of the pipeline, which is also the order `nas --help` lists them in.
COMMAND_MODULES = ("data", "search", "discretize", "retrain", "evaluate", "predict", "export", "plot", "compare")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas",
        description="skipnas: search the skip connections of a full-scale U-Net with DARTS, "
                    "export the architecture, retrain it and compare it with hand-designed networks.",
    )
    parser.add_argument("--version", action="version", version=f"skipnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"nas.commands.{name}").register(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except UserError as exc:
        if is_rank_zero():
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
