"""Does the search search? Search under several settings and seeds, and measure its signal.

    .venv/bin/python tools/measure_search.py [--config experiments/quickstart.yaml] [--seeds 1 2 3]
        [--out runs/measure-search] [--variant NAME=KEY=VALUE,KEY=VALUE ...]
        [--retrain-random N] [--retrain-variant NAME ...] [-- EXTRA KEY=VALUE ...]

This is how the project's search defaults were chosen (docs/method.md, "Search defaults").
Every variant runs `nas search` at every seed (the seed draws the weights, the initial α, the
data order and the split). Per variant the table gives, as mean over seeds:

- α steps taken, and `alpha_move` relative to the initial spread of α;
- `top_gain`: median over nodes of how much the strongest (input, op) pair has over an equal
  share (0.02 = 2 % above uniform);
- `init agreement`: share of kept pairs the initial α would also keep (near 1: the genotype is
  the initialisation's);
- `seed agreement`: share of kept pairs two seeds both keep (mean over all seed pairs, with its
  min and max), `chance`: what independent uniformly random choices per node would share, and
  their difference. A search that finds something agrees across seeds well above chance.

With `--planted`, every variant instead searches the planted problem of `nas/planted.py` (one
node, target = 3×3 max pool of noise; seconds per run): whether max_pool_3x3 ends in front, its
lead over the second op, and from which step it stayed in front, per seed, at `--planted-steps`
steps with λ rising every `--planted-epoch` steps.

With `--retrain-random N`, every searched genotype of the `--retrain-variant`s (default: the
first variant) is retrained beside N random genotypes of the same space, policy and k
(`nas discretize --random`), with the same config and seed, and the paired test-Dice difference
searched − mean(random) is reported per seed. Finished runs are reused, so an interrupted
measurement continues where it stopped. Results also go to OUT/results.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from measure_retrain import mean_std, parse_variant, run_nas  # noqa: E402

from nas.config import load_config  # noqa: E402
from nas.discretize import alpha_state_from_checkpoint, discretize, random_genotype  # noqa: E402
from nas.genotype import save_genotype  # noqa: E402
from nas.planted import planted_search  # noqa: E402
from nas.runs import atomic_write_text  # noqa: E402
from nas.search_signal import pair_agreement  # noqa: E402

#: The settings compared when the project's search defaults were chosen (first = the thesis's
#: recipe; the λ schedule of the others is the thesis's too, unless the name says otherwise).
THESIS_LAMBDA = "search.beta_decay.lambda_start=0.5,search.beta_decay.lambda_step=0.5,search.beta_decay.lambda_max=15"
DEFAULT_VARIANTS = [
    f"thesis=search.arch_optimizer=radam,search.arch_lr=0.0003,search.beta_decay.mode=gradient,{THESIS_LAMBDA}",
    f"radam_3e-3=search.arch_optimizer=radam,search.arch_lr=0.003,search.beta_decay.mode=gradient,{THESIS_LAMBDA}",
    f"adam_3e-3_gradient=search.arch_optimizer=adam,search.arch_lr=0.003,search.beta_decay.mode=gradient,"
    f"{THESIS_LAMBDA}",
    f"adam_3e-3_centred=search.arch_optimizer=adam,search.arch_lr=0.003,search.beta_decay.mode=centred,{THESIS_LAMBDA}",
    f"adam_3e-3_decoupled=search.arch_optimizer=adam,search.arch_lr=0.003,search.beta_decay.mode=decoupled,"
    f"{THESIS_LAMBDA}",
    "adam_3e-3_no_beta=search.arch_optimizer=adam,search.arch_lr=0.003,search.beta_decay.enabled=false",
    f"adam_1e-2_decoupled=search.arch_optimizer=adam,search.arch_lr=0.01,search.beta_decay.mode=decoupled,"
    f"{THESIS_LAMBDA}",
    "lambda_x0.5=search.beta_decay.lambda_start=0.25,search.beta_decay.lambda_step=0.25,"
    "search.beta_decay.lambda_max=7.5",
    "defaults=",
]
BASE_SET = ["log.progress=false", "log.plots=false"]


def search_run(out: Path, config: Path, sets: list[str]) -> dict[str, Any]:
    """One `nas search` (reused when finished) → its summary plus final α and α step count."""
    summary = run_nas("search", out, ["--config", str(config)], sets)
    found = alpha_state_from_checkpoint(out)
    rows = (out / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    col = header.index("arch_loss")
    steps = sum(1 for r in rows[1:] if r.split(",")[header.index("phase")] == "step" and r.split(",")[col])
    return {"summary": summary, "alphas": found.alpha_state, "space": found.space, "arch_steps": steps,
            "dir": out}


def seed_agreement(runs: list[dict[str, Any]], policy: str, k: int, threshold: float) -> dict[str, Any]:
    """Pairwise agreement of the final α's kept pairs over all seed pairs, and its chance level."""
    pairs = [pair_agreement(a["alphas"], b["alphas"], a["space"], policy, k, threshold)
             for a, b in itertools.combinations(runs, 2)]
    if not pairs:
        return {"mean": None, "min": None, "max": None, "chance": None}
    values = [p["agreement"] for p in pairs]
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "chance": statistics.fmean(p["chance"] for p in pairs), "pairs": len(pairs)}


def retrain_against_random(run: dict[str, Any], out: Path, config: Path, sets: list[str], n_random: int,
                           seed: int, policy: str, k: int, threshold: float) -> dict[str, Any]:
    """Retrain the run's genotype and ``n_random`` random genotypes with the same settings."""
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        searched = discretize(run["alphas"], run["space"], policy, k, threshold, source={"run": str(run["dir"])})
    genotypes = {"searched": save_genotype(searched, out / "searched.yaml")}
    for i in range(n_random):
        sample_seed = 10_000 + 100 * seed + i
        g = random_genotype(run["space"], sample_seed, policy, k, threshold, source={"run": str(run["dir"])})
        genotypes[f"random{i}"] = save_genotype(g, out / f"random{i}.yaml")
    dice = {}
    for name, path in genotypes.items():
        s = run_nas("retrain", out / f"retrain-{name}", ["--config", str(config), "--genotype", str(path)], sets)
        dice[name] = s["test"]["dice"]
    randoms = [v for key, v in dice.items() if key.startswith("random")]
    return {"dice": dice, "searched": dice["searched"], "random_mean": statistics.fmean(randoms),
            "diff": dice["searched"] - statistics.fmean(randoms)}


def planted_table(console: Console, variants: list[tuple[str, list[str]]], args: argparse.Namespace,
                  common: list[str]) -> None:
    """Every variant on the planted problem at every seed (search settings from the variant
    over ``--config`` and the extra overrides)."""
    table = Table(title=f"planted problem (nas/planted.py): {args.planted_steps} steps, λ epoch = "
                        f"{args.planted_epoch} steps, seeds {args.seeds}")
    for column in ("variant", "solved", "top weight (uniform 0.1)", "lead over 2nd", "in front from step"):
        table.add_column(column)
    for name, sets in variants:
        cfg = load_config(args.config, [*common, *sets])
        runs = [planted_search(cfg, args.planted_steps, args.planted_epoch, seed=s) for s in args.seeds]
        table.add_row(name, f"{sum(r.solved for r in runs)}/{len(runs)}",
                      " ".join(f"{float(r.weights.max()):.4f}" for r in runs),
                      " ".join(f"{r.lead:.3f}" for r in runs),
                      " ".join("-" if r.found_at is None or not r.solved else str(r.found_at) for r in runs))
    console.print(table)


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("experiments/quickstart.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=Path("runs/measure-search"))
    parser.add_argument("--variant", action="append", default=None,
                        help="NAME=KEY=VALUE,... (repeatable; default: the variants of docs/method.md)")
    parser.add_argument("--retrain-random", type=int, default=0, metavar="N",
                        help="retrain each searched genotype beside N random ones (paired per seed)")
    parser.add_argument("--retrain-variant", action="append", default=None, metavar="NAME",
                        help="variants whose genotypes are retrained (default: the first)")
    parser.add_argument("--planted", action="store_true", help="measure the planted problem instead (fast)")
    parser.add_argument("--planted-steps", type=int, default=150)
    parser.add_argument("--planted-epoch", type=int, default=10, help="planted steps per λ epoch")
    parser.add_argument("extra", nargs="*", help="more KEY=VALUE overrides for every run")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    common = [*BASE_SET, *args.extra]
    cfg = load_config(args.config, common)
    policy, k, threshold = cfg.discretize.policy, cfg.discretize.k, cfg.discretize.threshold

    console = Console(width=None if sys.stdout.isatty() else 200)
    if args.planted:
        planted_table(console, variants, args, common)
        return
    results: dict[str, Any] = {"config": str(args.config), "extra": args.extra, "seeds": args.seeds,
                               "policy": policy, "k": k, "variants": {}}
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, sets in variants:
        runs[name] = []
        for seed in args.seeds:
            console.print(f"search {name} seed {seed} ...")
            runs[name].append(search_run(args.out / f"{name}-seed{seed}", args.config,
                                         [*common, f"run.seed={seed}", *sets]))
        signals = [r["summary"]["signal"] for r in runs[name]]
        results["variants"][name] = {
            "sets": sets,
            "arch_steps": statistics.fmean(r["arch_steps"] for r in runs[name]),
            "alpha_move_ratio": statistics.fmean(s["alpha_move_ratio"] or 0.0 for s in signals),
            "top_gain": statistics.fmean(s["top_gain"] for s in signals),
            "init_agreement": statistics.fmean(s["init_agreement"] for s in signals),
            "init_chance": statistics.fmean(s["init_chance"] for s in signals),
            "seed_agreement": seed_agreement(runs[name], policy, k, threshold),
            "search_time_s": statistics.fmean(r["summary"]["train_time_s"] for r in runs[name]),
        }

    table = Table(title=f"search signal: {args.config} {' '.join(args.extra)}, seeds {args.seeds}, "
                        f"policy {policy} k={k}")
    for column in ("variant", "α steps", "α move / init", "top gain", "init agr.", "seed agr. (min-max)",
                   "chance", "agr. − chance", "time/run s"):
        table.add_column(column)
    for name, _ in variants:
        v = results["variants"][name]
        sa = v["seed_agreement"]
        over = None if sa["mean"] is None else sa["mean"] - sa["chance"]
        table.add_row(name, f"{v['arch_steps']:.0f}", _fmt(v["alpha_move_ratio"], ".3g"), _fmt(v["top_gain"], ".2%"),
                      _fmt(v["init_agreement"], ".2f"),
                      f"{_fmt(sa['mean'], '.2f')} ({_fmt(sa['min'], '.2f')}-{_fmt(sa['max'], '.2f')})",
                      _fmt(sa["chance"], ".2f"), _fmt(over, "+.2f"), f"{v['search_time_s']:.0f}")
    console.print(table)

    if args.retrain_random:
        chosen = args.retrain_variant or [variants[0][0]]
        table = Table(title=f"retrained: searched vs mean of {args.retrain_random} random genotypes "
                            f"(same space, policy {policy}, k={k}, config, seed); test Dice")
        for column in ("variant", "seed", "searched", "random (each)", "searched − random"):
            table.add_column(column)
        for name in chosen:
            per_seed = []
            for seed, run in zip(args.seeds, runs[name]):
                console.print(f"retrain {name} seed {seed} ...")
                r = retrain_against_random(run, args.out / f"{name}-seed{seed}-retrain", args.config,
                                           [*common, f"run.seed={seed}"], args.retrain_random, seed,
                                           policy, k, threshold)
                per_seed.append(r)
                randoms = " ".join(f"{v:.3f}" for key, v in r["dice"].items() if key != "searched")
                table.add_row(name, str(seed), f"{r['searched']:.4f}", randoms, f"{r['diff']:+.4f}")
            diffs = [r["diff"] for r in per_seed]
            table.add_row(name, "mean ± std", mean_std([r["searched"] for r in per_seed]),
                          mean_std([r["random_mean"] for r in per_seed]), mean_std(diffs), end_section=True)
            results["variants"][name]["retrain"] = per_seed
        console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
