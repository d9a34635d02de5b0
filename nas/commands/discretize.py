"""`nas discretize RUN_DIR`: keep the strongest ops of a search and write `genotype.yaml`."""

from __future__ import annotations

import argparse
import hashlib
import dataclasses
import warnings
from pathlib import Path
from typing import Any, Optional

import yaml

from nas.commands.common import add_oneshot_args
from nas.config import DiscretizeConfig

_DEFAULTS = dataclasses.asdict(DiscretizeConfig())  # policy, k, threshold


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("discretize", help="turn a search run's α into genotype.yaml",
                       description="Reads α from RUN_DIR/checkpoints/last.pt (or alphas.csv for --from-epoch) "
                                   "and the run's search_space.yaml, keeps per node the strongest (input, op) "
                                   "pairs and per SSB/CSB the nodes at or above the block mean, prunes nodes "
                                   "that reach no output, prints what was kept and writes RUN_DIR/genotype.yaml. "
                                   "Defaults come from the run's config (discretize.*), else thesis, k=3.")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, nargs="?", default=None,
                   help="a run folder written by `nas search` (optional with --random --space)")
    p.add_argument("--policy", choices=["thesis", "darts", "threshold", "perturbation"], default=None,
                   help="thesis: top-k (input, op) pairs per node (node-level softmax); darts: top-2 "
                        "edges per node, best op each; threshold: fewest pairs over a share of the mass; "
                        "perturbation: top-k pairs per node by the validation Dice the trained supernet "
                        "loses without them (DARTS-PT; slow: one validation pass per pair)")
    p.add_argument("--k", type=int, default=None,
                   help="pairs kept per node by the thesis and perturbation policies (default 3)")
    p.add_argument("--threshold", type=float, default=None,
                   help="share of a node's non-zero mass kept by the threshold policy (default 0.9)")
    p.add_argument("--from-epoch", type=int, default=None, metavar="E",
                   help="use α at the end of epoch E (from alphas.csv) instead of the last checkpoint")
    p.add_argument("--random", action="store_true",
                   help="sample a random genotype (the control a search must beat) of RUN_DIR's search "
                        "space, or of --space, with the same policy and k instead of reading α")
    p.add_argument("--seed", type=int, default=0, help="with --random: the sample's seed (default 0)")
    p.add_argument("--space", default=None, metavar="NAME|FILE",
                   help="with --random and no RUN_DIR: search-space name or file")
    add_oneshot_args(p, "with --policy perturbation: ")
    p.add_argument("--force", action="store_true",
                   help="replace an existing genotype file that differs from this result (e.g. hand-edited)")
    p.add_argument("--teacher", type=Path, default=None, metavar="GENOTYPE",
                   help="a teacher genotype (`nas data synth --teacher`): also print how much of it the genotype "
                        "recovers, against chance")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                   help="where to write the genotype (default RUN_DIR/genotype.yaml)")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Command line, else the run's config.yaml `discretize:` section, else the defaults."""
    saved: dict[str, Any] = {}
    config = args.run_dir / "config.yaml" if args.run_dir is not None else None
    if config is not None and config.is_file():
        try:
            saved = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("discretize") or {}
        except (yaml.YAMLError, AttributeError, UnicodeDecodeError):
            saved = {}  # the run's settings cannot be read: the command line and defaults (load_run_alphas says why)
    given = {"policy": args.policy, "k": args.k, "threshold": args.threshold}
    return {key: given[key] if given[key] is not None else saved.get(key, default)
            for key, default in _DEFAULTS.items()}


def run(args: argparse.Namespace) -> int:
    from nas.discretize import DiscretizeWarning, discretize, load_run_alphas
    from nas.errors import UserError
    from nas.genotype import save_genotype
    from nas.search_signal import run_signal

    if args.run_dir is None and not (args.random and args.space):
        raise UserError("give a RUN_DIR (or --random --space NAME for a random genotype of a search space)")
    if args.run_dir is not None and not args.run_dir.is_dir():
        raise UserError(f"{args.run_dir}: run folder not found")
    if args.output is None and args.run_dir is None:
        raise UserError("--random --space needs -o FILE (where to write the genotype)")
    s = _settings(args)
    signal = None
    teacher = None
    if args.teacher is not None:
        from nas.genotype import load_genotype

        teacher = load_genotype(args.teacher)  # a bad file fails before any work
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiscretizeWarning)  # the table shows the notes instead
        if args.random:
            genotype = _random(args, s)
        elif s["policy"] == "perturbation":
            if args.from_epoch is not None:
                raise UserError("--policy perturbation scores the last checkpoint's weights: drop --from-epoch")
            genotype = _perturbation(args, s["k"])
            signal = run_signal(load_run_alphas(args.run_dir), s["policy"], s["k"], s["threshold"])
        else:
            found = load_run_alphas(args.run_dir, args.from_epoch)
            genotype = discretize(found.alpha_state, found.space, s["policy"], s["k"], s["threshold"],
                                  source=found.source())
            signal = run_signal(found, s["policy"], s["k"], s["threshold"])
    default_name = f"genotype-random{args.seed}.yaml" if args.random else "genotype.yaml"
    out = args.output or args.run_dir / default_name
    _refuse_overwrite(out, genotype, args.force)
    save_genotype(_with_digest(genotype), out)
    print_genotype(genotype)
    if signal is not None:
        print_signal(signal)
    if teacher is not None:
        print_recovery(genotype, teacher, None if args.random else args.run_dir)
    print(f"wrote {out}")
    return 0


def print_recovery(genotype: Any, teacher: Any, run_dir: Optional[Path]) -> None:
    """How much of a known teacher the genotype keeps, beside chance and the search's own prior
    (nas.recovery); with a run, which cells its α decided most against the teacher's cells."""
    from rich.console import Console

    from nas.discretize import load_run_alphas
    from nas.errors import UserError
    from nas.recovery import cell_presence, genotype_selection, teacher_recovery
    from nas.search_space import load_search_space

    if teacher.search_space != genotype.search_space:
        raise UserError(f"--teacher: a genotype of {teacher.search_space}, not of {genotype.search_space}")
    space = load_search_space(genotype.search_space) if run_dir is None else load_run_alphas(run_dir).space
    rec = teacher_recovery(genotype_selection(genotype, space), teacher, space)
    console = Console(highlight=False)
    console.print(f"teacher recovery: {rec['share']:.0%} of the teacher's {rec['edges']} edges kept (chance "
                  f"{rec['chance']:.0%}; the same pairs kept where the teacher has no cell: {rec['prior']:.0%})")
    console.print("  by edge kind: " + "; ".join(
        f"{kind} {k['hits']} of {k['edges']} (chance {k['chance']:.0%})" for kind, k in rec["kinds"].items() if k["edges"]))
    if run_dir is not None:
        pres = cell_presence(load_run_alphas(run_dir).alpha_state, teacher, space)
        console.print(f"teacher cells among the {pres['present']} most decided cells: {pres['hits']} of "
                      f"{pres['present']} (chance {pres['chance']:.0%}); a teacher cell is more decided than an "
                      f"absent one with probability {pres['auc']:.2f} (chance 0.50)")


def _perturbation(args: argparse.Namespace, k: int) -> Any:
    """The perturbation policy's genotype of RUN_DIR, with a progress bar over its evaluations."""
    from nas.discretize import check_policy
    from nas.oneshot import OneShotRun, perturbation_cost, perturbation_discretize
    from nas.predict import progress_bar

    check_policy("perturbation", k, 0.9)
    run = OneShotRun(args.run_dir, bn_batches=args.bn_batches, val_images=args.val_images,
                     overrides=args.overrides)
    with progress_bar(perturbation_cost(run.space, k), "perturbation") as advance:
        return perturbation_discretize(args.run_dir, k, run=run, progress=advance)


def _refuse_overwrite(out: Path, genotype: Any, force: bool) -> None:
    """Keep a genotype file that is not an unedited ``nas discretize`` result unless --force:
    discretizing again must not silently undo someone's edits. A file this command wrote (same
    text as re-discretizing with the settings in its ``source``) may be replaced."""
    from nas.errors import UserError
    from nas.genotype import genotype_text

    if force or not out.exists():
        return
    if out.is_dir():
        raise UserError(f"{out}: is a folder; -o expects a file name")
    try:
        text = out.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    if text is not None and (_unedited(text) or text in (genotype_text(genotype), _rediscretized_text(text))):
        return
    raise UserError(f"{out}: exists and is not an unedited discretization (edited by hand?); "
                    f"use --force to replace it or -o to write another file")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _with_digest(genotype: Any) -> Any:
    """The genotype with ``source.digest``: a hash of the file as written without it, by which a
    later ``nas discretize`` recognises its own unedited file (whatever happened to the run since)."""
    from nas.genotype import genotype_text

    plain = dataclasses.replace(genotype, source={k: v for k, v in genotype.source.items() if k != "digest"})
    return dataclasses.replace(plain, source={**plain.source, "digest": _digest(genotype_text(plain))})


def _unedited(text: str) -> bool:
    """True when `text` is exactly a file this command wrote: its digest matches the rest, and
    re-writing the parsed data gives the same text (no edit, not even a comment)."""
    from nas.runs import yaml_text

    try:
        data = yaml.safe_load(text)
        recorded = data["source"]["digest"]
        if yaml_text(data) != text:
            return False
        del data["source"]["digest"]
        return isinstance(recorded, str) and _digest(yaml_text(data)) == recorded
    except (yaml.YAMLError, TypeError, KeyError):
        return False


def _rediscretized_text(text: str) -> Optional[str]:
    """The text ``nas discretize`` would write today with the settings recorded in a genotype
    file's ``source`` (None when the file is not one of its results)."""
    import yaml

    from nas.discretize import MODEL_POLICIES, discretize_run, random_genotype, run_search_space
    from nas.errors import UserError
    from nas.genotype import genotype_text

    try:
        src = (yaml.safe_load(text) or {}).get("source") or {}
        settings = {"policy": src.get("policy", "thesis"), "k": src.get("k", 3),
                    "threshold": src.get("threshold", 0.9)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if settings["policy"] in MODEL_POLICIES and not src.get("random"):
                return None  # scored with the trained weights: too costly to redo for this check
            if src.get("random") and "run" in src:
                again = random_genotype(run_search_space(src["run"]), src["seed"], **settings,
                                        source={"run": src["run"]})
            elif "run" in src:
                again = discretize_run(src["run"], epoch=src.get("epoch"), **settings)
            else:
                return None
        return genotype_text(again)
    except (UserError, yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError, OSError):
        return None


def print_signal(signal: dict[str, Any]) -> None:
    """The search-signal figures (nas.search_signal) and, in plain words, what they mean."""
    from rich.console import Console

    console = Console()
    ratio = signal["alpha_move_ratio"]
    moved = f"{signal['alpha_move']:.3g}" + (f" ({ratio:.3g}x their initial spread)" if ratio is not None else "")
    console.print(f"search signal ({signal['source']}): α moved {moved}; median over nodes: strongest pair "
                  f"+{signal['top_gain']:.2%} over an equal share, KL to uniform {signal['kl_uniform']:.3g}; "
                  + (f"kept pairs shared with the initial α's choice {signal['init_agreement']:.0%} "
                     f"(chance {signal['init_chance']:.0%})" if signal["init_agreement"] is not None else
                     "α started equal (search.alpha_init 0), so no initial choice to compare with"),
                  soft_wrap=True)
    for note in signal["warnings"]:
        console.print(f"[yellow]warning:[/] {note}", soft_wrap=True)


def _random(args: argparse.Namespace, s: dict[str, Any]) -> Any:
    """A random genotype of the run's (or --space's) search space with the run's policy and k."""
    from nas.discretize import check_policy, random_genotype, run_search_space
    from nas.errors import UserError
    from nas.search_space import load_search_space

    if args.from_epoch is not None:
        raise UserError("--random reads no α: drop --from-epoch")
    check_policy(s["policy"], s["k"], s["threshold"])
    space = load_search_space(args.space) if args.space else run_search_space(args.run_dir)
    source = {"space": args.space} if args.space else {"run": str(args.run_dir)}
    return random_genotype(space, args.seed, s["policy"], s["k"], s["threshold"], source=source)


def print_genotype(genotype: Any) -> None:
    """One table of what was kept: a section per cell, its edges, then its SSB/CSB nodes."""
    from rich.console import Console
    from rich.table import Table

    src = genotype.source
    detail = ", ".join(f"{k} {v}" for k, v in src.items() if k != "run")
    table = Table(title=f"genotype of {src.get('run', genotype.search_space)} ({detail})")
    for column in ("cell", "node", "from", "op", "weight"):
        table.add_column(column, justify="right" if column in ("node", "from", "weight") else "left")
    console = Console()
    for name, cell in genotype.cells.items():
        rows = [(str(e.to), str(e.from_), e.op, f"{e.weight:.4f}") for e in cell.edges]
        for block, label in ((cell.ssb, "SSB"), (cell.csb, "CSB")):
            kept = "  ".join(f"n{n} {w:.3f}" for n, w in zip(block.nodes, block.weights)) or "(none)"
            rows.append((label, "", f"{block.gating}: {kept}", ""))
        for note in cell.notes:
            rows.append(("note", "", f"[yellow]{note}[/]", ""))
        for i, row in enumerate(rows):
            table.add_row(name if i == 0 else "", *row, end_section=i == len(rows) - 1)
    console.print(table)
