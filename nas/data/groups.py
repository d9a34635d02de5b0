"""Which images belong together (one lesion photographed several times), so a split never tears a
group apart: images of one lesion in both train and test make test scores optimistic.

A groups file is a CSV with an image-id column (`image_id` or `id`) and a group column
(`lesion_id` or `group`), e.g. HAM10000's own `HAM10000_metadata.csv`. `data.groups` chooses it:
null = the layout's own file when the dataset folder has one (HAM10000), else every image is its
own group; `none` = every image its own group; anything else = the path of a groups file.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Mapping, Optional, Sequence

from nas.data.records import Record
from nas.errors import UserError
from nas.textfiles import read_csv

ID_COLUMNS = ("image_id", "id")
GROUP_COLUMNS = ("lesion_id", "group")
PER_IMAGE = "none"  # the data.groups value that forces one group per image
WHAT = "groups CSV (data.groups)"


def groups_path(setting: Optional[str], layout_file: Optional[Path]) -> Optional[Path]:
    """The groups file `data.groups` selects: the layout's own for null, none for `none`."""
    if setting is None:
        return layout_file
    if setting == PER_IMAGE:
        return None
    return Path(setting).expanduser()


def read_groups(path: Path) -> dict[str, str]:
    """{image id: group} from a groups CSV; any defect is one UserError naming the file."""
    header, rows = read_csv(path, WHAT)
    id_col = next((c for c in ID_COLUMNS if c in header), None)
    group_col = next((c for c in GROUP_COLUMNS if c in header), None)
    if id_col is None or group_col is None:
        raise UserError(f"{path}: expected an image id column ({' or '.join(ID_COLUMNS)}) and a group column "
                        f"({' or '.join(GROUP_COLUMNS)}); found columns {', '.join(header) or 'none'}")
    groups: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        id_, group = row[id_col].strip(), row[group_col].strip()
        if not id_ or not group:
            raise UserError(f"{path}: line {line}: empty {id_col if not id_ else group_col}")
        if groups.setdefault(id_, group) != group:
            raise UserError(f"{path}: image {id_} is listed in two groups ({groups[id_]} and {group})")
    if not groups:
        raise UserError(f"{path}: no rows below the header; expected one line per image ({id_col},{group_col})")
    return groups


def assign_groups(records: Sequence[Record], path: Optional[Path]) -> list[Record]:
    """`records` with `group` set from the groups file at `path` (unchanged for None).

    Every image must have a group: one missing would silently become a group of its own, and a
    lesion's images could then land in two splits. Ids of the file without an image are fine
    (images left out, a partial download).
    """
    if path is None:
        return list(records)
    groups = read_groups(path)
    missing = [r.id for r in records if r.id not in groups]
    if missing:
        have = "has" if len(missing) == 1 else "have"
        raise UserError(f"{path}: {len(missing)} of the {len(records)} images {have} no group (first: {missing[0]}); "
                        f"add them, or set data.groups=none to split image by image")
    return [dataclasses.replace(r, group=groups[r.id]) for r in records]


def group_key(record: Record) -> str:
    """The group a pair splits with: its own id when it has none."""
    return record.group if record.group is not None else record.id


def members(ids: Sequence[str], groups: Optional[Mapping[str, str]] = None) -> dict[str, list[str]]:
    """{group: sorted ids} of `ids`; an id not in `groups` is a group of its own."""
    out: dict[str, list[str]] = {}
    for i in ids:
        out.setdefault((groups or {}).get(i, i), []).append(i)
    return {g: sorted(v) for g, v in out.items()}


def group_sizes_line(sizes: Sequence[int]) -> str:
    """`N groups, images per group min a, median b, max c` for `nas data check`."""
    if not sizes:
        return "0 groups"
    return (f"{len(sizes)} groups, images per group min {min(sizes)}, median {statistics.median(sizes):g}, "
            f"max {max(sizes)}")


def crossing_groups(splits: Mapping[str, Sequence[str]], groups: Mapping[str, str],
                    parts: Sequence[str]) -> list[str]:
    """Groups whose images sit in more than one of `parts` of `splits` (sorted)."""
    where: dict[str, set[str]] = {}
    for k in parts:
        for i in splits.get(k) or []:
            if i in groups:
                where.setdefault(groups[i], set()).add(k)
    return sorted(g for g, ks in where.items() if len(ks) > 1)
