"""`nas compare`: a comparison of finished runs with paired statistics, or a whole benchmark suite.

    nas compare RUN_DIR... [-o report.md] [--reference NAME]   # existing runs (+ files with -o)
    nas compare --suite FILE [--out DIR] [--reference NAME]    # train every suite entry × seed, then the report
    nas compare --suite FILE --out DIR --workers N              # the same with N local worker processes
    nas compare --suite FILE --out DIR --report-only            # rewrite the report of a finished suite

Any number of `nas compare --suite FILE --out DIR` processes (one per GPU, a Slurm job array) share
one suite: each claims the next unfinished run through its run folder's lock (see nas.suite).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare finished runs with paired statistics, or run a benchmark suite",
                       description="Groups runs by model (several seeds -> mean ± std), marks the best value of "
                                   "every column, one table per dataset (the runs' test split and every "
                                   "RUN/evaluation-<name>/ folder). Every model is compared with a reference on "
                                   "the same images: mean paired difference, 95% bootstrap interval over images "
                                   "and seeds, Wilcoxon signed-rank p, and whether the difference is within noise. "
                                   "With -o it also writes Markdown, CSV and charts. With --suite it first trains "
                                   "every entry of a suite file under one protocol (see experiments/suite_*.yaml).")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", type=Path,
                   help="run folders with a summary.json (from nas retrain / nas evaluate)")
    p.add_argument("-o", "--output", metavar="REPORT.md", type=Path, default=None,
                   help="write the report here (plus REPORT.csv, REPORT_stats.csv and REPORT_*.png next to it)")
    p.add_argument("--reference", metavar="NAME", default=None,
                   help="the model every other is compared with (default: the best hand-designed baseline "
                        "by mean test Dice; a suite file may set reference:)")
    p.add_argument("--suite", metavar="FILE", type=Path, default=None,
                   help="a suite YAML: train its entries (skipping finished runs), then write the report")
    p.add_argument("--out", metavar="DIR", type=Path, default=None,
                   help="output folder of --suite (default runs/suite-<name>); rerun to resume. Several "
                        "processes given the same --suite and --out share its runs (one per GPU, a Slurm array)")
    p.add_argument("--workers", metavar="N", type=int, default=None,
                   help="with --suite: start N worker processes of this command on this machine and wait "
                        "for them (their lines are prefixed `worker i/N:`)")
    p.add_argument("--report-only", action="store_true",
                   help="with --suite: train nothing, (re)write the report from the finished runs; refused "
                        "while a run is unfinished")
    p.set_defaults(func=run)


def print_table(table) -> None:
    """One dataset's comparison table on the terminal, best values in bold."""
    from rich.table import Table

    from nas.report import runs_text

    out = Table(title=table.dataset, show_lines=False)
    out.add_column("Model", style="bold")
    out.add_column("Kind")
    out.add_column("Runs", justify="right")
    for c in table.columns:
        out.add_column(c.title, justify="right")
    for row in table.rows:
        cells = [table.cell(row, c) for c in table.columns]
        out.add_row(row.label, row.kind, runs_text(row),
                    *(f"[bold green]{t}[/]" if table.is_best(row, c) else t for t, c in zip(cells, table.columns)))
    _console().print(out)


def print_statistics(ds) -> None:
    """Paired Dice and Jaccard differences of one dataset (every metric: the words below the table
    and the report), within-noise rows dimmed."""
    from rich.table import Table

    from nas.report import contrast_words
    from nas.stats import format_p

    contrasts = [*ds.versus_reference, *ds.searched_vs_random]
    if not contrasts:
        return
    out = Table(title=f"{ds.dataset}: paired differences (model - reference; dim = Dice within noise)")
    for name in ("Model", "vs", "Dice Δ", "95% CI", "p", "Jaccard Δ", "95% CI", "p", "Images × seeds"):
        out.add_column(name, justify="left" if name in ("Model", "vs") else "right")
    for c in contrasts:
        cells = []
        for m in ("dice", "jaccard"):
            d = c.diffs[m]
            cells += [f"{d.mean:+.4f}", f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}]", format_p(d.p)]
        d = c.diffs["dice"]
        out.add_row(c.model, c.reference, *cells, d.size_text,
                    style="dim" if d.within_noise else None)
    console = _console()
    console.print(out)
    for c in contrasts:
        console.print(contrast_words(c).replace("**", ""), markup=False)


def _console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze 12 columns into 80 characters
        console = Console(width=220)
    return console


def print_comparison(comparison) -> None:
    for ds in comparison.datasets:
        print_table(ds.table)
        for note in ds.notes:
            print(f"note: {note}", file=sys.stderr)
        print_statistics(ds)


def run(args: argparse.Namespace) -> int:
    from nas.comparison import build_comparison, collect_runs
    from nas.errors import UserError
    from nas.report import write_report

    if args.suite is not None:
        if args.run_dirs or args.output:
            raise UserError("compare: use either RUN_DIR... [-o FILE] or --suite FILE [--out DIR], not both")
        if args.workers is not None:
            if args.workers < 1:
                raise UserError(f"compare: --workers: expected an int >= 1, got {args.workers}")
            if args.report_only:
                raise UserError("compare: --workers trains the suite; --report-only trains nothing; use one")
            return run_workers(args)
        from nas.suite import run_suite

        result = run_suite(args.suite, args.out, reference=args.reference, report_only=args.report_only)
        print_comparison(result.comparison)
        for path in result.written:
            print(path)
        return 0
    if args.out is not None or args.workers is not None or args.report_only:
        raise UserError("compare: --out, --workers and --report-only go with --suite; for run folders use "
                        "-o REPORT.md")
    if not args.run_dirs:
        raise UserError("compare: give run folders (nas compare RUN_DIR...) or a suite (nas compare --suite FILE)")
    comparison = build_comparison(collect_runs(args.run_dirs), reference=args.reference)
    print_comparison(comparison)
    if args.output is not None:
        for path in write_report(comparison, args.output):
            print(path)
    return 0


def worker_command(args: argparse.Namespace) -> list[str]:
    """The `nas compare --suite` command line one worker runs: this one without --workers."""
    cmd = [sys.executable, "-m", "nas", "compare", "--suite", str(args.suite)]
    if args.out is not None:
        cmd += ["--out", str(args.out)]
    if args.reference is not None:
        cmd += ["--reference", args.reference]
    return cmd


def _relay(stream, target, prefix: str) -> None:
    for line in stream:
        target.write(prefix + line)
        target.flush()


def run_workers(args: argparse.Namespace) -> int:
    """Start `args.workers` worker processes of the suite and wait for them. Their output is relayed
    line by line with a `worker i/N: ` prefix (when N > 1). Ctrl-C or SIGTERM stops every worker
    (each saves a checkpoint: SIGTERM is its first Ctrl-C); the exit code is non-zero if any failed."""
    import signal
    import subprocess
    import threading

    from nas.errors import UserError

    n = args.workers
    procs, relays = [], []
    try:
        for i in range(1, n + 1):
            prefix = f"worker {i}/{n}: " if n > 1 else ""
            # A session of its own: a Ctrl-C in the terminal reaches this process only, which passes
            # it on once (a second copy would stop a worker before its checkpoint).
            p = subprocess.Popen(worker_command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 bufsize=1, start_new_session=True)
            procs.append(p)
            for stream, target in ((p.stdout, sys.stdout), (p.stderr, sys.stderr)):
                t = threading.Thread(target=_relay, args=(stream, target, prefix), daemon=True)
                t.start()
                relays.append(t)
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (nas.cli turns it into Terminated)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        raise
    finally:
        for t in relays:
            t.join(timeout=5)
    failed = [(i, c) for i, c in enumerate(codes, 1) if c != 0]
    if failed:
        words = ", ".join(f"worker {i} exited with {c}" for i, c in failed)
        raise UserError(f"compare --workers {n}: {words} (its lines above say why)", exit_code=failed[0][1])
    return 0
