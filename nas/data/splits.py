"""Which pair goes where: limit, train/val/test split, and the two search halves, all seeded.

The result is a plain JSON-able dict of ids (`splits.json` in the run folder), so a resumed run
or a later `evaluate` uses exactly the same images even if the folder gained files since.

- `data.limit` keeps the first N ids in SHA-1 order: deterministic, independent of `run.seed`
  (runs with different seeds see the same images), spread over the whole dataset, and nested
  (limit 32 is a subset of limit 64).
- Fractions: a seeded permutation of the sorted ids. Official split (ISIC 2016/2017/2018, folder
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
from typing import Any, Optional, Sequence

from nas.data.records import Record
from nas.data.seeding import make_rng
from nas.errors import UserError
from nas.runs import write_json

FORMAT = "skipnas-splits/1"
SPLITS = ("train", "val", "test")
HALVES = ("w_half", "a_half")
_SPLIT_STREAM, _HALF_STREAM = 1, 2  # keep the split and halving RNG streams independent


def apply_limit(records: list[Record], limit: Optional[int]) -> list[Record]:
    if limit is None or limit >= len(records):
        return records
    keep = set(sorted((r.id for r in records), key=lambda i: hashlib.sha1(i.encode()).hexdigest())[:limit])
    return [r for r in records if r.id in keep]


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Pair counts per split; a non-zero fraction gets at least one pair while train keeps one."""
    rest = [int(round(n * f)) for f in fractions[1:]]
    for i, f in enumerate(fractions[1:]):
        if f > 0 and rest[i] == 0 and n - sum(rest) > 1:
            rest[i] = 1
    while sum(rest) > n - 1 and any(rest):
        rest[rest.index(max(rest))] -= 1
    return [n - sum(rest)] + rest


def fraction_split(ids: Sequence[str], fractions: Sequence[float], seed: int) -> list[list[str]]:
    """len(fractions) disjoint sorted id lists from a seeded permutation of the sorted ids."""
    ordered = sorted(ids)
    perm = make_rng(seed, _SPLIT_STREAM).permutation(len(ordered))
    out, start = [], 0
    for c in split_counts(len(ordered), fractions):
        out.append(sorted(ordered[i] for i in perm[start:start + c]))
        start += c
    return out


def make_splits(records: list[Record], fractions: Sequence[float], seed: int, official: bool,
                layout: str) -> dict[str, Any]:
    by_subset: dict[Optional[str], list[str]] = {}
    for r in records:
        by_subset.setdefault(r.subset, []).append(r.id)
    use_official = official and bool(by_subset.get("train"))
    if not use_official:
        train, val, test = fraction_split([r.id for r in records], fractions, seed)
        source = "seeded"
    else:
        parts = {s: sorted(by_subset.get(s, [])) for s in SPLITS}
        missing = [i for i, s in enumerate(SPLITS) if i > 0 and not parts[s] and fractions[i] > 0]
        source = "official"
        if missing:
            shares = [fractions[0]] + [fractions[i] for i in missing]
            total = sum(shares)
            carved = fraction_split(parts["train"], [f / total for f in shares], seed)
            parts["train"] = carved[0]
            for i, ids in zip(missing, carved[1:]):
                parts[SPLITS[i]] = ids
            source = "official+seeded (" + ", ".join(SPLITS[i] for i in missing) + " carved from train)"
        train, val, test = (parts[s] for s in SPLITS)
    return {"format": FORMAT, "layout": layout, "source": source, "seed": seed,
            "fractions": list(fractions), "train": train, "val": val, "test": test}


def search_halves(train_ids: Sequence[str], seed: int) -> tuple[list[str], list[str]]:
    """Two disjoint halves of train (the first gets the odd one), for the weight and alpha steps."""
    if len(train_ids) < 2:
        raise UserError(f"data: search needs at least 2 training pairs to split into weight/alpha halves, "
                        f"got {len(train_ids)}; raise data.limit or data.split[0]")
    ordered = sorted(train_ids)
    perm = make_rng(seed, _HALF_STREAM).permutation(len(ordered))
    cut = math.ceil(len(ordered) / 2)
    return sorted(ordered[i] for i in perm[:cut]), sorted(ordered[i] for i in perm[cut:])


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
