"""An exclusive lock on a folder that a command writes into, so that two runs never mix their files.

The lock is a file ``FOLDER/.nas.lock`` holding the holder's pid and host (one JSON line). Where
the file system supports it, the file is also ``flock``-ed while held, so a process killed with
SIGKILL gives the lock up at once; a lock file whose process is gone (a dead pid on this host) is
stale and is taken over with a warning. A lock held by another host cannot be checked from here
and is treated as live: the error says how to clear it if that process is gone.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
from pathlib import Path
from types import TracebackType
from typing import Optional

from nas.errors import UserError

try:  # POSIX only; elsewhere the pid in the file is the only check
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".nas.lock"
log = logging.getLogger("nas.lock")


class FolderBusy(UserError):
    """The folder's lock is held by another live process (or one on another host, which cannot be
    checked from here). Suite workers catch it to skip a run another worker is training."""


def this_host() -> str:
    """This machine's name, reduced to letters, digits and '-' (it also goes into file names)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "localhost"


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this host (also one of another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _make_dirs(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it created (innermost last), so they can be removed again."""
    missing = []
    p = folder
    while not p.exists() and not p.is_symlink():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created = []
    for d in reversed(missing):
        d.mkdir()
        created.append(d)
    return created


def _os_error(folder: Path, exc: OSError) -> UserError:
    if isinstance(exc, FileExistsError) or exc.errno == errno.ENOTDIR:
        if folder.exists() and not folder.is_dir():
            return UserError(f"{folder}: exists and is not a folder")
        return UserError(f"{folder}: cannot be created (a path above it is a file)")
    return UserError(f"{folder}: cannot write here ({exc.strerror or exc})")


class FolderLock:
    """``with FolderLock(folder):`` holds the exclusive lock of `folder` (created if absent and
    removed again on release if it is still empty, so a refused command leaves nothing behind)."""

    def __init__(self, folder: str | os.PathLike, create: bool = True) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.create = create
        self._fd: Optional[int] = None
        self._created: list[Path] = []

    # -- public
    def acquire(self) -> "FolderLock":
        try:
            if self.create:
                self._created = _make_dirs(self.folder)
            elif not self.folder.is_dir():
                raise UserError(f"{self.folder}: run folder not found")
            if not self.folder.is_dir():
                raise FileExistsError(errno.EEXIST, "exists", str(self.folder))
            self._lock_file()
        except BaseException as exc:  # also Ctrl-C: leave no lock file and no folder behind
            self.release()
            self._remove_created()
            if isinstance(exc, OSError):
                raise _os_error(self.folder, exc) from None
            raise
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()  # before closing: a waiter that opened the old file sees it vanish
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None
            self._remove_created()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, tp: Optional[type], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.release()

    # -- internals
    def _lock_file(self) -> None:
        """Open and lock the lock file (self._fd once held), or raise UserError if another holds it."""
        for _ in range(20):  # retried only when another process replaced the file meanwhile
            fd, created = self._open()
            try:
                locked = self._flock(fd)
                if locked is False:
                    raise self._busy(self._holder(fd), certain=True)
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # the previous holder removed the file just before our flock
                    os.close(fd)
                    continue
                holder = self._holder(fd)
                if holder is not None and holder != (os.getpid(), this_host()):
                    self._check_stale(holder, certain_free=bool(locked))
            except BaseException:
                if created:  # ours, never locked: nobody else can rely on it
                    self.path.unlink(missing_ok=True)
                os.close(fd)
                raise
            self._fd = fd
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps({"pid": os.getpid(), "host": this_host()}) + "\n").encode())
            return
        raise UserError(f"{self.path}: the lock file keeps changing; is another nas process starting here?")

    def _open(self) -> tuple[int, bool]:
        """(descriptor, whether this call created the file)."""
        while True:
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), True
            except FileExistsError:
                pass
            try:
                return os.open(self.path, os.O_RDWR), False
            except FileNotFoundError:  # its holder just released it: try again
                pass

    @staticmethod
    def _flock(fd: int) -> Optional[bool]:
        """True: locked; False: held by someone else; None: this file system cannot flock."""
        if fcntl is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return None
            raise

    def _holder(self, fd: int) -> Optional[tuple[int, str]]:
        """(pid, host) written in the lock file, None if it is empty."""
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096).decode("utf-8", "replace").strip()
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return int(data["pid"]), str(data["host"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{self.path}: exists but is not a nas lock file; remove it if no nas "
                            f"command is using {self.folder}") from None

    def _check_stale(self, holder: tuple[int, str], certain_free: bool) -> None:
        """Take over the lock of a dead process on this host; refuse a live or unknowable one."""
        pid, host = holder
        if host == this_host():
            if pid_alive(pid) and not certain_free:
                raise self._busy(holder, certain=True)
            log.warning("warning: %s: taking over a stale lock of pid %d on %s (that process is gone)",
                        self.path, pid, host)
            return
        raise self._busy(holder, certain=False)

    def _busy(self, holder: Optional[tuple[int, str]], certain: bool) -> FolderBusy:
        who = f"pid {holder[0]} on {holder[1]}" if holder else "another process"
        if holder and holder[0] == os.getpid() and holder[1] == this_host():
            who = f"this process (pid {holder[0]})"
        hint = ("wait for it to finish or stop it" if certain else
                f"if that process is gone (e.g. its machine failed), delete {self.path}")
        return FolderBusy(f"{self.folder}: in use by another nas command ({who}); {hint}")

    def _remove_created(self) -> None:
        for d in reversed(self._created):
            try:
                d.rmdir()  # only if still empty
            except OSError:
                break
        self._created = []


def folder_lock(folder: str | os.PathLike, create: bool = True) -> FolderLock:
    """The lock of `folder`, to be used as ``with folder_lock(dir): ...``."""
    return FolderLock(folder, create=create)
