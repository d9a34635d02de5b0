"""`nas data synth` (write the synthetic dataset to disk) and `nas data check` (inspect a folder).

`check` runs exactly the listing, reading and checking that training runs, so a folder that
checks clean will load, and a folder that does not is described file by file.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nas.config import RANGES, load_config
from nas.data.groups import assign_groups, crossing_groups, group_key, group_sizes_line, groups_path, members
from nas.data.layouts import layout_names, scan_folder
from nas.data.splits import HALVES, SPLITS, apply_limit, make_splits, read_splits, search_halves
from nas.data.store import prepare, progress_bar
from nas.data.records import Problem
from nas.data.synthetic import DEFAULT_SEED, write_dataset
from nas.data.validate import all_empty_reason
from nas.errors import UserError

#: (n, size) defaults of `nas data synth` without and with --teacher.
SYNTH_DEFAULTS = ((100, 256), (512, 32))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="create or check datasets",
                              description="Create the synthetic dataset on disk, or check a dataset folder.")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)

    s = sub.add_parser("synth", help="write the synthetic dermoscopy dataset, or a teacher task, to a folder",
                       description="Write N synthetic image/mask pairs in the ISIC 2017 Part 1 layout "
                                   "(Training/Validation/Test_v2 folders, 70/15/15). With --teacher: a positive "
                                   "control for the search, images/ + masks/ whose masks the network of a known "
                                   "genotype drew (docs/method.md, 'The teacher task').")
    s.add_argument("--out", required=True, metavar="DIR", help="folder to create (must be empty or absent)")
    s.add_argument("--n", type=int, default=None, metavar="N",
                   help=f"number of pairs (default {SYNTH_DEFAULTS[0][0]}; {SYNTH_DEFAULTS[1][0]} with --teacher)")
    s.add_argument("--size", type=int, default=None, metavar="S",
                   help=f"image side in pixels (default {SYNTH_DEFAULTS[0][1]}; {SYNTH_DEFAULTS[1][1]} with --teacher, "
                        f"the side the search trains at)")
    s.add_argument("--seed", type=int, default=None, metavar="K",
                   help=f"generator seed; the built-in dataset uses {DEFAULT_SEED} (default {DEFAULT_SEED}; "
                        f"0 with --teacher: the teacher's weights and the synthetic inputs)")
    s.add_argument("--teacher", default=None, metavar="GENOTYPE",
                   help="genotype file of the teacher network that labels the images (copied to DIR/teacher.yaml)")
    s.add_argument("--images", default=None, metavar="DIR",
                   help="with --teacher: label these images (the first N, sorted) instead of synthetic lesions")
    s.set_defaults(func=run_synth)

    c = sub.add_parser("check", help="list a dataset folder's pairs and every problem in it",
                       description="Detect the layout of PATH, read and check every pair, print statistics "
                                   "and every problem. Exit status 0 when clean, 1 when problems were found.")
    c.add_argument("path", metavar="PATH", help="dataset folder")
    c.add_argument("--layout", default="auto", choices=["auto", *layout_names()],
                   help="force a layout instead of detecting it (default auto)")
    c.add_argument("--size", type=int, default=128, metavar="S",
                   help="preprocess every pair to S x S as training would (default 128)")
    c.add_argument("--groups", metavar="FILE", default=None,
                   help="groups CSV as data.groups (image_id/id + lesion_id/group columns), or none; "
                        "default: the dataset's own (HAM10000_metadata.csv), else one group per image")
    c.add_argument("--config", metavar="FILE", default=None,
                   help="also make the seeded split a run with this experiment YAML would make on PATH "
                        "(data.split, data.limit, data.groups, data.official_split, run.seed) and check it")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of --config (or of the defaults), e.g. --set run.seed=7; implies the "
                        "split check (repeatable)")
    c.add_argument("--splits", metavar="FILE", default=None,
                   help="check a saved split (a run folder or its splits.json): no group may cross its parts")
    c.set_defaults(func=run_check)


def _check_size(command: str, size: int) -> None:
    """--size within data.image_size's range: 0 or less used to end in an OpenCV traceback, and a
    huge side in an out-of-memory one."""
    lo, hi = RANGES["data.image_size"]
    if not lo <= size <= hi:
        raise UserError(f"nas data {command}: --size: expected an int in [{lo}, {hi}], got {size}")


def run_synth(args: argparse.Namespace) -> int:
    out = Path(args.out)
    n, size = SYNTH_DEFAULTS[args.teacher is not None]
    n = n if args.n is None else args.n
    size = size if args.size is None else args.size
    if n < 1:
        raise UserError(f"nas data synth: --n: expected a positive int, got {n}")
    _check_size("synth", size)
    if args.images is not None and args.teacher is None:
        raise UserError("nas data synth: --images needs --teacher (the images to label)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: already exists and is not an empty folder; choose another --out")
    if args.teacher is not None:
        return _synth_teacher(args, out, n, size)
    seed = DEFAULT_SEED if args.seed is None else args.seed
    counts = write_dataset(out, n, size, seed)
    Console().print(f"wrote {n} synthetic pairs ({size}x{size}, seed {seed}) to {out} "
                    f"in ISIC 2017 layout: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _splits_file(path: Path) -> Path:
    """A run folder's splits.json, or the file itself."""
    return path / "splits.json" if path.is_dir() else path


def _synth_teacher(args: argparse.Namespace, out: Path, n: int, size: int) -> int:
    from nas.data.teacher import TEACHER_FILE, write_teacher_dataset
    from nas.runs import staged_folder

    seed = 0 if args.seed is None else args.seed
    with progress_bar(3 * n) as callback, staged_folder(out) as tmp:
        made = write_teacher_dataset(args.teacher, tmp, n, size, seed, args.images, progress=callback)
    inputs = f"images of {args.images}" if args.images else "synthetic lesions"
    Console(highlight=False).print(
        f"wrote {n} teacher pairs ({size}x{size}, {inputs}, teacher weights seed {seed}) to {out}: images/ + "
        f"masks/, lesion fraction {made.lesion_fraction:.3f}; the teacher genotype is {out / TEACHER_FILE}")
    return 0


def _stat_line(values: list[float]) -> str:
    return f"mean {sum(values) / len(values):.3f}, min {min(values):.3f}, max {max(values):.3f}"


def _split_line(splits: dict[str, Any], parts: tuple[str, ...], groups: dict[str, str]) -> str:
    """`train 70 pairs (52 groups), val ...` of a split's `parts`."""
    out = []
    for k in parts:
        ids = splits.get(k) or []
        n_groups = len({groups.get(i, i) for i in ids})
        out.append(f"{k} {len(ids)} pairs ({n_groups} groups)")
    return ", ".join(out)


def _check_split(table: Table, problems: list[Problem], name: str, about: str, source: Path,
                 splits: dict[str, Any], groups: dict[str, str]) -> None:
    """Rows of one split (sizes in pairs and groups; no group across its parts; the same for the
    search halves when it has them), and a problem for each kind of crossing."""
    for parts, what, row, harm in ((SPLITS, "split", name, "its test scores are optimistic"),
                                   (HALVES, "halves", f"{name} halves",
                                    "its alpha steps score lesions its weight steps trained on")):
        if not all(isinstance(splits.get(k), list) for k in parts):
            continue
        table.add_row(row, (about + ": " if what == "split" else "") + _split_line(splits, parts, groups))
        if not groups:
            continue
        crossing = crossing_groups(splits, groups, parts)
        if not crossing:
            table.add_row("", f"no group has images in more than one of {', '.join(parts)}")
            continue
        first = crossing[0]
        where = sorted({k for k in parts for i in splits[k] if groups.get(i) == first})
        n = len(crossing)
        problems.append(Problem(source, f"{n} group{'s' if n != 1 else ''} ha{'ve' if n != 1 else 's'} images in "
                                        f"more than one of {', '.join(parts)} (first: {first} in "
                                        f"{' and '.join(where)}); a split made image by image puts a lesion's "
                                        f"images in several parts, so {harm}"))


def run_check(args: argparse.Namespace) -> int:
    _check_size("check", args.size)
    console = Console(highlight=False)
    if args.groups is not None and not args.groups.strip():
        raise UserError("nas data check: --groups: expected a groups CSV file or none, got an empty string")
    with_split = args.config is not None or bool(args.overrides)
    cfg = load_config(args.config, args.overrides)
    setting = args.groups if args.groups is not None else cfg.data.groups
    saved = read_splits(_splits_file(Path(args.splits))) if args.splits is not None else None
    scan = scan_folder(args.path, args.layout)
    groups_file = groups_path(setting, scan.groups_file)
    records = assign_groups(scan.records, groups_file)
    groups = {r.id: r.group for r in records if r.group is not None}
    with progress_bar(len(records)) as callback:
        prepared = prepare(records, args.size, cache="none", progress=callback)
    problems = scan.problems + prepared.problems
    records, infos = prepared.store.records, prepared.infos

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("folder", str(scan.base))
    table.add_row("layout", scan.layout)
    table.add_row("pairs", f"{len(records)} usable of {len(scan.records)} image/mask pairs found")
    subsets: dict[str, int] = {}
    for r in records:
        subsets[r.subset or "-"] = subsets.get(r.subset or "-", 0) + 1
    if any(k != "-" for k in subsets):
        table.add_row("official split", ", ".join(f"{k} {v}" for k, v in subsets.items()))
    if groups_file is not None:
        sizes = Counter(group_key(r) for r in records)
        table.add_row("groups", f"{group_sizes_line(sorted(sizes.values()))} (from {groups_file})")
    else:
        table.add_row("groups", "one per image (no groups file)")
    if infos:
        sizes = [r.orig_size for r in records]
        lo, hi = min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])
        table.add_row("image size (h x w)", f"min {lo[0]}x{lo[1]}, max {hi[0]}x{hi[1]}")
        fractions = [i.lesion_fraction for i in infos]
        table.add_row("lesion area fraction", _stat_line(fractions))
        empty = sum(1 for f in fractions if f == 0)
        if empty:
            table.add_row("empty masks", str(empty))
        reason = all_empty_reason(fractions)
        if reason:
            problems.append(Problem(scan.base, reason))
    table.add_row("preprocessing", f"center crop + resize to {args.size}x{args.size}: ok for all usable pairs")
    if with_split and records:
        d = cfg.data
        kept = {r.id for r in apply_limit(records, d.limit)}
        usable = [r for r in prepared.store.records if r.id in kept]
        split_seed = cfg.run.seed if d.split_seed is None else d.split_seed
        made = make_splits(usable, d.split, split_seed, d.official_split, scan.layout, groups_file)
        if len(members(made["train"], groups)) >= 2:  # what a search would feed its w and alpha steps
            made["w_half"], made["a_half"] = search_halves(made["train"], cfg.run.seed, groups)
        limit = f", limit {d.limit}" if d.limit is not None else ""
        _check_split(table, problems, "split", f"{made['source']}, seed {split_seed}{limit}",
                     Path(args.config or args.path), made, groups)
    if saved is not None:
        path = _splits_file(Path(args.splits))
        _check_split(table, problems, "saved", str(path), path, saved, groups)
    console.print(table)
    for note in scan.notes:
        console.print(f"[yellow]note:[/] {note}")
    if not problems:
        console.print("[green]no problems found[/]")
        return 0
    console.print(f"[red]{len(problems)} problem{'s' if len(problems) != 1 else ''}:[/]")
    for p in problems:
        console.print(f"  - {p}", soft_wrap=True)
    return 1
