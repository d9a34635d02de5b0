"""The positive control, measured: does the search recover a teacher genotype, and do seeds agree?

    .venv/bin/python tools/measure_teacher.py [--teacher experiments/teacher_genotype.yaml]
        [--config experiments/teacher_quick.yaml] [--data DIR] [--seeds 1 2 3]
        [--epochs 10 30] [--policies thesis perturbation] [--out runs/measure-teacher]
        [-- EXTRA KEY=VALUE ...]

Writes the teacher dataset once (`nas data synth --teacher`, into `OUT/data` unless `--data`
names one already written), then runs `nas search --config CONFIG` at every seed and budget
(`train.epochs`; every search.* setting stays the config's, i.e. the shipped defaults), and per
budget × policy reports: α steps, the share of the teacher's edges each seed's genotype keeps
(with chance), the teacher's present cells among the most decided cells (with chance and AUC),
pairwise seed agreement (with chance) and Fleiss' κ over seeds (with the κ of random genotypes
at the same number of seeds: mean and 95th percentile). Finished runs are reused; results also
go to OUT/results.json. This is how the figures in docs/method.md ("The teacher task") were made.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from measure_search import search_run  # noqa: E402

from nas.discretize import alpha_state_from_csv, discretize  # noqa: E402
from nas.genotype import load_genotype  # noqa: E402
from nas.recovery import (EDGE_KINDS, alpha_selection, cell_presence, chance_kappa, fleiss_kappa,  # noqa: E402
                          genotype_selection, pairwise_agreement, teacher_recovery)
from nas.runs import atomic_write_text  # noqa: E402

BASE_SET = ["log.progress=false", "log.plots=false"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(__file__).resolve().parents[1]
    p.add_argument("--teacher", type=Path, default=root / "experiments" / "teacher_genotype.yaml")
    p.add_argument("--config", type=Path, default=root / "experiments" / "teacher_quick.yaml")
    p.add_argument("--data", type=Path, default=None, help="a teacher dataset already written (default OUT/data)")
    p.add_argument("--n", type=int, default=256, help="images of the teacher dataset (default 256)")
    p.add_argument("--size", type=int, default=64, help="image side of the teacher dataset (default 64)")
    p.add_argument("--data-seed", type=int, default=0, help="teacher weights and inputs seed (default 0)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--epochs", type=int, nargs="+", default=[10], help="search budgets (train.epochs)")
    p.add_argument("--policies", nargs="+", default=["thesis"], help="discretization policies to compare")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("runs/measure-teacher"))
    p.add_argument("extra", nargs="*", help="KEY=VALUE overrides for every search (after --)")
    return p.parse_args(argv)


def ensure_data(args: argparse.Namespace) -> Path:
    data = args.data or args.out / "data"
    if not (data / "teacher.yaml").is_file():
        cmd = [sys.executable, "-m", "nas", "data", "synth", "--teacher", str(args.teacher), "--out", str(data),
               "--n", str(args.n), "--size", str(args.size), "--seed", str(args.data_seed)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return data


def policy_selection(run: dict[str, Any], policy: str, k: int) -> dict:
    """The kept pairs of one run under one policy (genotype edges after pruning)."""
    if policy == "perturbation":
        from nas.discretize import discretize_run

        genotype = discretize_run(run["dir"], policy, k)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            genotype = discretize(run["alphas"], run["space"], policy, k)
    return genotype_selection(genotype, run["space"])


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    args = parse_args()
    console = Console(highlight=False)
    args.out.mkdir(parents=True, exist_ok=True)
    data = ensure_data(args)
    teacher = load_genotype(data / "teacher.yaml")
    results: list[dict[str, Any]] = []
    table = Table(title=f"teacher recovery ({args.teacher.name}, data {data})")
    for col in ("epochs", "α steps", "policy", "teacher share per seed", "chance", "prior",
                "hits per seed: " + " / ".join(EDGE_KINDS), "present cells (hits/P)",
                "presence AUC", "seed agreement", "agr. chance", "Fleiss κ", "κ chance (mean / p95)"):
        table.add_column(col)
    for epochs in args.epochs:
        runs = []
        for seed in args.seeds:
            sets = [*BASE_SET, f"data.root={data.resolve()}", f"train.epochs={epochs}", f"run.seed={seed}", *args.extra]
            runs.append(search_run(args.out / f"e{epochs}-seed{seed}", args.config, sets))
        space = runs[0]["space"]
        for policy in args.policies:
            sels = [policy_selection(r, policy, args.k) for r in runs]
            rec = [teacher_recovery(s, teacher, space) for s in sels]
            pres = [cell_presence(r["alphas"], teacher, space) for r in runs]
            agree = pairwise_agreement(sels, space)
            kappa = fleiss_kappa(sels, space)
            kchance = chance_kappa(space, len(sels), "thesis", args.k)
            row = {"epochs": epochs, "arch_steps": [r["arch_steps"] for r in runs], "policy": policy,
                   "seeds": args.seeds, "teacher_share": [x["share"] for x in rec],
                   "teacher_chance": statistics.fmean(x["chance"] for x in rec),
                   "teacher_prior": statistics.fmean(x["prior"] for x in rec),
                   "teacher_cells": [x["cells"] for x in rec], "teacher_kinds": [x["kinds"] for x in rec],
                   "presence": pres, "agreement": agree, "kappa": kappa, "kappa_chance": kchance}
            results.append(row)
            table.add_row(str(epochs), "/".join(str(s) for s in row["arch_steps"]), policy,
                          " ".join(_fmt(v) for v in row["teacher_share"]), _fmt(row["teacher_chance"]),
                          _fmt(row["teacher_prior"]),
                          " ".join("/".join(f"{k['hits']}" for k in x["kinds"].values()) for x in rec)
                          + " of " + "/".join(str(k["edges"]) for k in rec[0]["kinds"].values()),
                          " ".join(f"{p['hits']}/{p['present']}" for p in pres) + f" (chance {_fmt(pres[0]['chance'])})",
                          " ".join(_fmt(p["auc"]) for p in pres),
                          f"{_fmt(agree['agreement'])} ({_fmt(agree['min'])}-{_fmt(agree['max'])})",
                          _fmt(agree["chance"]), _fmt(kappa, ".3f"),
                          f"{_fmt(kchance['mean'], '.3f')} / {_fmt(kchance['p95'], '.3f')}")
    console.print(table)
    results.append({"curve": recovery_curve(console, args, teacher, data)})
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=2, default=str) + "\n")


def recovery_curve(console: Console, args: argparse.Namespace, teacher: Any, data: Path) -> dict[str, Any]:
    """Teacher share (thesis policy) after every epoch of the longest budget's runs, from the α
    each epoch logged: when recovery appears. (A run stopped at epoch e has seen the λ schedule
    of a shorter run, but its weights' cosine schedule was set for the longest budget.)"""
    epochs = max(args.epochs)
    curve: dict[str, Any] = {}
    table = Table(title=f"teacher share by epoch (runs of {epochs} epochs; thesis policy, k {args.k})")
    table.add_column("seed")
    for e in range(1, epochs + 1):
        table.add_column(str(e))
    for seed in args.seeds:
        run = args.out / f"e{epochs}-seed{seed}"
        row, chained = [], []
        for e in range(1, epochs + 1):
            found = alpha_state_from_csv(run, float(e))
            sel = alpha_selection(found.alpha_state, found.space, "thesis", args.k)
            rec = teacher_recovery(sel, teacher, found.space)
            row.append(rec["share"])
            chained.append(rec["kinds"][EDGE_KINDS[1]]["hits"])
        curve[str(seed)] = row
        curve[f"{seed} {EDGE_KINDS[1]} hits"] = chained
        table.add_row(str(seed), *(_fmt(v) for v in row))
    console.print(table)
    return curve


if __name__ == "__main__":
    main()
