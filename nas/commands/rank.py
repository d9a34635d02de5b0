"""`nas rank SEARCH_RUN --random N`: one-shot and α scores of a search's genotype beside random ones."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

from nas.commands.common import add_oneshot_args

RANK_FILE = "rank.csv"
COLUMNS = ["rank", "genotype", "seed", "oneshot_dice", "oneshot_loss", "alpha_score", "pairs", "val_images"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rank", help="one-shot scores of a search's genotype and of random genotypes in its supernet",
                       description="Scores the run's genotype (RUN_DIR/genotype.yaml, or discretized with the run's "
                                   "policy and k when absent) and N random genotypes of the same search space, policy "
                                   "and k inside the supernet the search trained (each cell restricted to the "
                                   "genotype, BatchNorm re-estimated, validation Dice), with their α scores; prints "
                                   "them sorted by one-shot Dice with the searched genotype's rank and writes a CSV.")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run folder written by `nas search`")
    p.add_argument("--random", type=int, default=10, metavar="N", help="random genotypes to score (default 10)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the first random genotype; the others take S+1 ... S+N-1 (default 0)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help=f"CSV to write (default RUN_DIR/{RANK_FILE})")
    add_oneshot_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.errors import UserError
    from nas.lock import folder_lock

    if isinstance(args.random, bool) or args.random < 1:
        raise UserError(f"--random must be >= 1 (random genotypes to rank the search's against), got {args.random}")
    if not args.run_dir.is_dir():
        raise UserError(f"{args.run_dir}: run folder not found")
    out = args.out or args.run_dir / RANK_FILE
    if out.is_dir():
        raise UserError(f"{out}: is a folder; --out expects a file name")
    with folder_lock(out.parent):  # one writer per folder (e.g. not while the search runs)
        rows = rank_rows(args)
        _write_csv(out, rows)
    _print_table(rows, args.run_dir)
    print(f"wrote {out}")
    return 0


def rank_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows of ``rank.csv``: the searched genotype and the random ones, best one-shot Dice first."""
    import warnings

    from nas.discretize import DiscretizeWarning, random_genotype
    from nas.oneshot import OneShotRun, alpha_score_of
    from nas.predict import progress_bar

    scorer = OneShotRun(args.run_dir, bn_batches=args.bn_batches, val_images=args.val_images,
                        overrides=args.overrides)
    searched, policy, k, threshold = _searched_genotype(args.run_dir, scorer)
    genotypes = [("searched", None, searched)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiscretizeWarning)
        for seed in range(args.seed, args.seed + args.random):
            g = random_genotype(scorer.space, seed, policy, k, threshold, source={"run": str(args.run_dir)})
            genotypes.append((f"random-{seed}", seed, g))
    rows = []
    with progress_bar(len(genotypes), "one-shot scores") as advance:
        for label, seed, g in genotypes:
            score = scorer.score(g)
            rows.append({"genotype": label, "seed": "" if seed is None else seed,
                         "oneshot_dice": score.dice, "oneshot_loss": score.loss,
                         "alpha_score": alpha_score_of(scorer.alpha_state, scorer.space, g),
                         "pairs": sum(len(c.live()[0]) for c in g.cells.values()), "val_images": score.n_images})
            advance()
    rows.sort(key=lambda r: -r["oneshot_dice"])  # stable: the searched genotype first among equals
    for r in rows:  # competition ranking: equal Dice, equal rank
        r["rank"] = 1 + sum(other["oneshot_dice"] > r["oneshot_dice"] for other in rows)
    return rows


def _searched_genotype(run_dir: Path, scorer: Any) -> tuple[Any, str, int, float]:
    """The run's genotype.yaml (else discretized with the run's discretize.* settings), and the
    policy, k and threshold the random genotypes are drawn with (the genotype's own, recorded in
    its source, else the run's)."""
    from nas.discretize import MODEL_POLICIES, discretize_run
    from nas.genotype import load_genotype
    from nas.oneshot import perturbation_discretize

    d = scorer.cfg.discretize
    path = run_dir / "genotype.yaml"
    if path.is_file():
        genotype = load_genotype(path)
    elif d.policy in MODEL_POLICIES:
        genotype = perturbation_discretize(run_dir, d.k, run=scorer)
    else:
        genotype = discretize_run(run_dir, d.policy, d.k, d.threshold)
    src = genotype.source
    return genotype, src.get("policy", d.policy), src.get("k", d.k), src.get("threshold", d.threshold)


def _write_csv(out: Path, rows: list[dict[str, Any]]) -> None:
    from nas.runs import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    atomic_write_text(out, buf.getvalue())


def _print_table(rows: list[dict[str, Any]], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"one-shot ranking in the supernet of {run_dir} ({rows[0]['val_images']} validation images)")
    for column in ("rank", "genotype", "one-shot dice", "one-shot loss", "α score", "pairs"):
        table.add_column(column, justify="left" if column == "genotype" else "right")
    for r in rows:
        style = "bold" if r["genotype"] == "searched" else None
        table.add_row(str(r["rank"]), r["genotype"], f"{r['oneshot_dice']:.4f}", f"{r['oneshot_loss']:.4f}",
                      f"{r['alpha_score']:.4f}", str(r["pairs"]), style=style)
    console = Console()
    console.print(table)
    searched = next(r for r in rows if r["genotype"] == "searched")
    by_alpha = 1 + sum(r["alpha_score"] > searched["alpha_score"] for r in rows)
    console.print(f"searched genotype ranks {searched['rank']} of {len(rows)} by one-shot Dice "
                  f"({by_alpha} of {len(rows)} by α score)", soft_wrap=True)
