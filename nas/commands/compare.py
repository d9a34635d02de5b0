"""`nas compare`: a comparison table of finished runs, or a whole benchmark suite.

    nas compare RUN_DIR... [-o report.md]      # table of existing runs (+ Markdown/CSV/charts with -o)
    nas compare --suite FILE [--out DIR]       # train every suite entry × seed, then the report
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare finished runs, or run a benchmark suite",
                       description="Groups runs by model (several seeds -> mean ± std), marks the best value of "
                                   "every column (highest metric, lowest cost) and prints the table. With -o it "
                                   "also writes Markdown, CSV and charts. With --suite it first trains every "
                                   "entry of a suite file under one protocol (see experiments/suite_*.yaml).")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", type=Path,
                   help="run folders with a summary.json (from nas retrain / nas evaluate)")
    p.add_argument("-o", "--output", metavar="REPORT.md", type=Path, default=None,
                   help="write the report here (plus REPORT.csv and REPORT_*.png next to it)")
    p.add_argument("--suite", metavar="FILE", type=Path, default=None,
                   help="a suite YAML: train its entries (skipping finished runs), then write the report")
    p.add_argument("--out", metavar="DIR", type=Path, default=None,
                   help="output folder of --suite (default runs/suite-<name>); rerun to resume")
    p.set_defaults(func=run)


def print_table(table) -> None:
    """The comparison table on the terminal, best values in bold."""
    from rich.console import Console
    from rich.table import Table

    out = Table(show_lines=False)
    out.add_column("Model", style="bold")
    out.add_column("Runs", justify="right")
    for c in table.columns:
        out.add_column(c.title, justify="right")
    for row in table.rows:
        cells = [table.cell(row, c) for c in table.columns]
        out.add_row(row.label, str(len(row.runs)),
                    *(f"[bold green]{t}[/]" if table.is_best(row, c) else t for t, c in zip(cells, table.columns)))
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze 12 columns into 80 characters
        console = Console(width=220)
    console.print(out)


def run(args: argparse.Namespace) -> int:
    from nas.errors import UserError
    from nas.report import collect_runs, compare_table, write_report

    if args.suite is not None:
        if args.run_dirs or args.output:
            raise UserError("compare: use either RUN_DIR... [-o FILE] or --suite FILE [--out DIR], not both")
        from nas.suite import run_suite

        result = run_suite(args.suite, args.out)
        print_table(compare_table(result.results))
        for path in result.written:
            print(path)
        return 0
    if args.out is not None:
        raise UserError("compare: --out is the output folder of --suite; for run folders use -o REPORT.md")
    if not args.run_dirs:
        raise UserError("compare: give run folders (nas compare RUN_DIR...) or a suite (nas compare --suite FILE)")
    results = collect_runs(args.run_dirs)
    print_table(compare_table(results))
    if args.output is not None:
        for path in write_report(results, args.output):
            print(path)
    return 0
