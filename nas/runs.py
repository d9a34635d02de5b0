"""Run-folder helpers: atomic writes, so an interrupted run never leaves a half-written file."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


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
