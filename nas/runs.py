"""Run-folder helpers: atomic writes, so an interrupted run never leaves a half-written file.

Every file goes through a temporary file ``.<name>.<host>.<pid>.<random>.tmp`` in the same folder
that is renamed over the target. Temporary files left by a killed process (a dead pid on this
host) are removed on the next write into that folder. Files get the mode the umask allows, as
with ``open()``. A write that fails (full disk, read-only folder) raises :class:`WriteError`,
which names the file; the previous version of the file is left as it was.
"""

from __future__ import annotations

import io
import json
import os
import contextlib
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from nas.errors import UserError
from nas.lock import pid_alive, this_host


class WriteError(UserError):
    """A file could not be written (disk full, read-only folder, permissions); exit code 1."""

    def __init__(self, path: str | os.PathLike, exc: OSError) -> None:
        super().__init__(f"{path}: cannot write ({exc.strerror or exc})", exit_code=1)
        self.path = Path(path)
        self.errno = exc.errno


def is_main_process() -> bool:
    """True unless this is a non-zero rank of an initialised torch.distributed job."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    except Exception:  # pragma: no cover - torch always importable here
        pass
    return True


def is_rank_zero() -> bool:
    """Rank 0 of a torchrun job (or a plain process), also after the process group is gone."""
    return is_main_process() and int(os.environ.get("RANK", "0")) == 0


# ----------------------------------------------------------------------------- temporary files
_TEMP = re.compile(r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp$")
_swept: set[Path] = set()


def temp_prefix(name: str) -> str:
    return f".{name}.{this_host()}.{os.getpid()}."


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove the temporary files of our writers in `folder` whose process (on this host) is gone."""
    removed = []
    host = this_host()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and m["host"] == host and int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"])):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def is_temp_file(name: str) -> bool:
    """True for the name of one of our writers' temporary files (live or stale)."""
    return _TEMP.match(name) is not None


def _umask() -> int:
    """The process umask, read without changing it where the system allows (Linux /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_fd(fd: int, data: bytes) -> None:
    """Fill a new temporary file (and close it): the mode open() would give, the data, fsync."""
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp creates 0600
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and rename it."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in _swept:
            remove_stale_temp_files(path.parent)
            _swept.add(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
        _write_fd(fd, data)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise WriteError(path, exc) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return path


def _unlink_quietly(tmp: str | None) -> None:
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def yaml_text(obj: Any) -> str:
    """The YAML text :func:`write_yaml` writes for ``obj``."""
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=None)


def write_yaml(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, yaml_text(obj))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save into memory first, then one atomic write: a killed run keeps the old file."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike) -> Iterator[Path]:
    """A new folder written whole or not at all: yields a temporary sibling of ``out`` that is
    renamed to ``out`` (absent or an empty folder) when the block ends, removed when it raises."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        if out.is_dir():
            out.rmdir()  # empty, checked by the caller; fails loudly if something appeared meanwhile
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError(out, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
