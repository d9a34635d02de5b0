"""Reading the text files a user hands us (configs, genotypes, CSV logs) with one-line errors.

Every reader of a YAML or CSV file used to call ``Path.read_text`` itself, so a folder given
where a file was expected, a file saved as Latin-1 or UTF-16, or a binary file given by mistake
ended in a traceback instead of the promised ``error:`` line. These two functions turn each of
those into a :class:`~nas.errors.UserError` naming the file. Torch-free and dependency-free
(PyYAML only), so any module can use them.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import yaml

from nas.errors import UserError


def read_text(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark is dropped); ``what`` names the
    expected file in errors, e.g. ``"config file"``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; expected a {what}")
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                        f"expected a {what} saved as UTF-8") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def read_csv(path: str | os.PathLike, what: str) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows as dicts of strings) of a CSV file; an empty file is a UserError.

    A row with the wrong number of fields (the line a running process is half-way through
    appending, or cut by a crash) is skipped, so a log being written can always be read.
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(read_text(path, what), newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise UserError(f"{path}: empty file (expected a header line; {what})")
        return header, [dict(zip(header, row)) for row in reader if len(row) == len(header)]
    except csv.Error as exc:
        raise UserError(f"{path}: not a readable CSV file ({exc})") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: PyYAML would keep the last one
    silently, so a second ``train:`` section would quietly drop every key of the first."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: let PyYAML report it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_yaml(path: str | os.PathLike, what: str) -> Any:
    """The YAML document in ``path`` (None for an empty file); syntax errors and duplicate keys are
    one line naming the file and the line."""
    text = read_text(path, what)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or ""
        where = f"line {mark.line + 1}" if mark is not None else ""
        detail = ": ".join(p for p in (where, " ".join(str(problem).split())) if p)
        raise UserError(f"{path}: not valid YAML ({detail or 'syntax error'})") from None


__all__ = ["read_csv", "read_text", "read_yaml"]
