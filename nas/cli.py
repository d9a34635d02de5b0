"""The `nas` command: one subcommand per pipeline stage (see `nas --help`)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import signal
import sys
import threading
from typing import Iterator, Optional

from nas import __version__
from nas.errors import Terminated, UserError
from nas.runs import is_rank_zero

# Write failures the machine causes, not the program: one line, no traceback (exit code 1).
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)
# Order is the order of the pipeline, which is also the order `nas --help` lists them in.
COMMAND_MODULES = ("data", "search", "discretize", "rank", "retrain", "evaluate", "predict", "export", "plot", "compare")


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


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while the commands import torch: an exception raised inside a
    C extension's initialisation can abort the interpreter. They are delivered right after."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _report(line: str) -> None:
    """Print the final line; a copy of the signal that stopped the run (forwarded by a launcher)
    must not interrupt it, so signals are ignored from here until `main` returns."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    if is_rank_zero():
        print(line, file=sys.stderr)


def main(argv: Optional[list[str]] = None) -> int:
    """Run one command; every handled failure is one `error:` line on stderr and an exit code."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        # SIGTERM (cluster time limit, `timeout`, preemption) stops like Ctrl-C; the training loop
        # installs its own handler that saves a checkpoint first.
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with _signals_held():
            parser = build_parser()
        args = parser.parse_args(argv)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return 2
        return int(func(args) or 0)
    except UserError as exc:
        _report(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C (or SIGTERM) outside the loop: nothing to save
        _report("interrupted" + (" by SIGTERM" if isinstance(exc, Terminated) else ""))
        return getattr(exc, "exit_code", 130)
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise  # a bug: keep the traceback
        _report(f"error: {exc.filename or 'a file'}: {exc.strerror}")
        return 1
    finally:
        if argv is None and previous and hasattr(signal, "pthread_sigmask"):
            # The process exits next: Python restores the default action of SIGINT while it shuts
            # down, so a late copy of the signal would turn exit code 130 into a death by signal.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
