"""Which pair goes where: limit, train/val/test split, and the two search halves, all seeded.

The result is a plain JSON-able dict of ids (`splits.json` in the run folder), so a resumed run
or a later `evaluate` uses exactly the same images even if the folder gained files since.

- Groups (`nas.data.groups`: a lesion's images, e.g. HAM10000's `lesion_id`): every step below
  moves whole groups, so the images of one group are all in one split and one search half. A pair
  without a group is a group of its own; with every pair its own group the results are exactly
  those of the per-image splits made before groups existed.
- `data.limit` keeps whole groups, in SHA-1 order of their names, while they fit in N pairs (always
  at least the first group): deterministic, independent of `run.seed` (runs with different seeds
  see the same images), spread over the whole dataset, and nested (limit 32 is a subset of limit 64).
- Fractions: a seeded permutation of the sorted group names, cut where the running count of pairs
  comes closest to each fraction (a part with a non-zero share gets at least one group while there
  are groups enough). Official split (ISIC 2016/2017/2018, folder
  layout with train/val/test): used as published when there is an official training set; a split
  the dataset lacks (ISIC 2016 has no validation set) is carved out of the official training set
  with the configured fractions. Without an official training set the fractions apply to all pairs.
- Search: `w_half` / `a_half` are a seeded, disjoint halving of train (weights / alphas).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from nas.data.groups import group_key, members
from nas.data.records import Record
from nas.data.seeding import make_rng
from nas.errors import UserError
from nas.runs import write_json

FORMAT = "skipnas-splits/1"
SPLITS = ("train", "val", "test")
HALVES = ("w_half", "a_half")
_SPLIT_STREAM, _HALF_STREAM = 1, 2  # keep the split and halving RNG streams independent


def apply_limit(records: list[Record], limit: Optional[int]) -> list[Record]:
    """The first whole groups in SHA-1 order of their names that fit in `limit` pairs (at least one)."""
    if limit is None or limit >= len(records):
        return records
    sizes: dict[str, int] = {}
    for r in records:
        sizes[group_key(r)] = sizes.get(group_key(r), 0) + 1
    keep: set[str] = set()
    total = 0
    for g in sorted(sizes, key=lambda g: hashlib.sha1(g.encode()).hexdigest()):
        if keep and total + sizes[g] > limit:
            break
        keep.add(g)
        total += sizes[g]
    return [r for r in records if group_key(r) in keep]


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Pair counts per split; a non-zero fraction gets at least one pair while train keeps one."""
    rest = [int(round(n * f)) for f in fractions[1:]]
    for i, f in enumerate(fractions[1:]):
        if f > 0 and rest[i] == 0 and n - sum(rest) > 1:
            rest[i] = 1
    while sum(rest) > n - 1 and any(rest):
        rest[rest.index(max(rest))] -= 1
    return [n - sum(rest)] + rest


def _cuts(sizes: Sequence[int], counts: Sequence[int]) -> list[int]:
    """Cut points 0 = c0 <= c1 <= ... <= cP = len(sizes) of a sequence of groups (of `sizes` pairs)
    into len(counts) parts, each cut where the running pair count comes closest to the running
    target of `counts`. The first part, and each later part with a target > 0, gets at least one
    group while there are enough (the last parts give way first). With every size 1 the parts hold
    exactly `counts` pairs."""
    n_groups = len(sizes)
    running = [0]
    for s in sizes:
        running.append(running[-1] + s)
    need = [1] + [1 if c > 0 else 0 for c in counts[1:]]
    for k in range(len(need) - 1, 0, -1):
        if sum(need) <= n_groups:
            break
        need[k] = 0
    cuts, target = [0], 0
    for k in range(1, len(counts)):
        target += counts[k - 1]
        lo, hi = cuts[-1] + need[k - 1], n_groups - sum(need[k:])
        cuts.append(min(range(lo, hi + 1), key=lambda i: (abs(running[i] - target), i)))
    return cuts + [n_groups]


def _grouped_parts(ids: Sequence[str], counts_of: Callable[[int], list[int]], seed: int, stream: int,
                   groups: Optional[Mapping[str, str]]) -> list[list[str]]:
    """Sorted id lists of the parts: a seeded permutation of the sorted group names, cut by `_cuts`
    at the pair counts `counts_of(len(ids))`."""
    by_group = members(ids, groups)
    names = sorted(by_group)
    ordered = [names[i] for i in make_rng(seed, stream).permutation(len(names))]
    cuts = _cuts([len(by_group[g]) for g in ordered], counts_of(len(ids)))
    return [sorted(i for g in ordered[a:b] for i in by_group[g]) for a, b in zip(cuts, cuts[1:])]


def fraction_split(ids: Sequence[str], fractions: Sequence[float], seed: int,
                   groups: Optional[Mapping[str, str]] = None) -> list[list[str]]:
    """len(fractions) disjoint sorted id lists, whole groups of `groups` ({id: group}) each."""
    return _grouped_parts(ids, lambda n: split_counts(n, fractions), seed, _SPLIT_STREAM, groups)


def _group_map(records: Sequence[Record]) -> dict[str, str]:
    return {r.id: r.group for r in records if r.group is not None}


def make_splits(records: list[Record], fractions: Sequence[float], seed: int, official: bool,
                layout: str, groups_file: Optional[str | Path] = None) -> dict[str, Any]:
    """The split of `records` (`splits.json`); `groups_file` (the file their `group`s came from)
    is recorded in it with the number of groups."""
    groups = _group_map(records)
    by_subset: dict[Optional[str], list[str]] = {}
    for r in records:
        by_subset.setdefault(r.subset, []).append(r.id)
    use_official = official and bool(by_subset.get("train"))
    if not use_official:
        train, val, test = fraction_split([r.id for r in records], fractions, seed, groups)
        source = "seeded"
    else:
        parts = {s: sorted(by_subset.get(s, [])) for s in SPLITS}
        missing = [i for i, s in enumerate(SPLITS) if i > 0 and not parts[s] and fractions[i] > 0]
        source = "official"
        if missing:
            shares = [fractions[0]] + [fractions[i] for i in missing]
            total = sum(shares)
            carved = fraction_split(parts["train"], [f / total for f in shares], seed, groups)
            parts["train"] = carved[0]
            for i, ids in zip(missing, carved[1:]):
                parts[SPLITS[i]] = ids
            source = "official+seeded (" + ", ".join(SPLITS[i] for i in missing) + " carved from train)"
        train, val, test = (parts[s] for s in SPLITS)
    out = {"format": FORMAT, "layout": layout, "source": source, "seed": seed,
           "fractions": list(fractions), "train": train, "val": val, "test": test}
    if groups:
        out["groups"] = {"file": str(groups_file) if groups_file is not None else None,
                         "count": len(set(groups.values()))}
    return out


def search_halves(train_ids: Sequence[str], seed: int,
                  groups: Optional[Mapping[str, str]] = None) -> tuple[list[str], list[str]]:
    """Two disjoint halves of train (the first gets the odd one), for the weight and alpha steps;
    whole groups each, so a lesion never feeds both the weights and the alphas."""
    if len(train_ids) < 2:
        raise UserError(f"data: search needs at least 2 training pairs to split into weight/alpha halves, "
                        f"got {len(train_ids)}; raise data.limit or data.split[0]")
    n_groups = len(members(train_ids, groups))
    if n_groups < 2:
        raise UserError(f"data: search needs at least 2 training groups (lesions, data.groups) to split into "
                        f"weight/alpha halves, got {n_groups} holding {len(train_ids)} pairs; raise data.limit "
                        "or data.split[0]")
    w, a = _grouped_parts(train_ids, lambda n: [math.ceil(n / 2), n - math.ceil(n / 2)], seed, _HALF_STREAM,
                          groups)
    return w, a


def _check_shape(splits: Any, source: str) -> None:
    if not isinstance(splits, dict) or not all(isinstance(splits.get(k), list) for k in SPLITS):
        raise UserError(f"{source}: expected a mapping with lists train, val and test")


def check_splits(splits: Any, available: set[str], source: str, parts: Sequence[str] = SPLITS) -> None:
    """Raise UserError if `splits` is malformed, overlapping, or names ids that are not available
    (in `parts`: those that were read)."""
    _check_shape(splits, source)
    seen: dict[str, str] = {}
    for k in SPLITS:
        for i in splits[k]:
            if i in seen:
                raise UserError(f"{source}: id {i} is in both {seen[i]} and {k}")
            seen[i] = k
    missing = sorted({i for i, k in seen.items() if k in parts} - available)
    if missing:
        raise UserError(f"{source}: {len(missing)} ids not found in the data (first: {missing[0]}); "
                        "was the data folder changed since the split was written?")
    if all(isinstance(splits.get(h), list) for h in HALVES):
        w, a = set(splits["w_half"]), set(splits["a_half"])
        if w & a or not (w | a) <= set(splits["train"]):
            raise UserError(f"{source}: w_half and a_half must be disjoint parts of train")


def write_splits(path: str | Path, splits: dict[str, Any]) -> Path:
    return write_json(path, splits)


def read_splits(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: splits file not found") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable splits file ({exc})") from None
    _check_shape(splits, str(path))
    return splits
