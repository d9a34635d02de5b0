"""Which retrain optimiser trains best? Retrain one model under several settings and seeds.

    .venv/bin/python tools/measure_retrain.py [--root DIR] [--seeds 1 2 3 4 5] [--epochs 30]
        [--out runs/measure-retrain] [--variant NAME=KEY=VALUE,KEY=VALUE ...] [-- EXTRA --set ARGS]

This is how the project's retrain defaults were chosen (docs/commands.md, "Retrain defaults").
Every variant is trained with `nas retrain` at every seed; the seed also draws the split, so
the variants of one seed see the same images and their difference is paired. The table gives
the test Dice (mean ± std over seeds), the held-out Dice (mean of best validation Dice and test
Dice: twice the images of the test set alone) and the paired held-out difference to the first
variant. Finished runs are reused, so an interrupted measurement continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "isic2017-sample"
DEFAULT_VARIANTS = [
    "sgd_default=",  # train.* defaults: SGD 0.025, momentum 0.9, wd 3e-4, cosine to 0.003
    "sgd_wd1e-4=retrain.weight_decay=0.0001,retrain.lr_min=0.00001",
    "adamw_2e-3=retrain.optimizer=adamw,retrain.lr=0.002,retrain.weight_decay=0.0001,retrain.lr_min=0.00001",
    "radam_1e-3=retrain.optimizer=radam,retrain.lr=0.001,retrain.weight_decay=0.0001,retrain.lr_min=0.00001",
    "radam_0.025=retrain.optimizer=radam,retrain.lr=0.025,retrain.weight_decay=0.0001,retrain.lr_min=0.00001",
]
BASE_SET = ["model.width=16", "data.image_size=64", "train.batch_size=8", "log.progress=false",
            "log.plots=false"]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=KEY=VALUE,KEY=VALUE`` -> (NAME, [KEY=VALUE, ...]); ``NAME=`` is no override."""
    name, _, sets = text.partition("=")
    if not name:
        raise SystemExit(f"error: --variant {text!r}: expected NAME=KEY=VALUE,...")
    return name, [s for s in sets.split(",") if s]


def run_nas(kind: str, out: Path, start: list[str], sets: list[str]) -> dict:
    """Run ``nas <kind>`` once into `out` (unless it already holds a finished run; an interrupted
    one is resumed with its own config) and return its summary.json. `start` are the arguments
    of a fresh run besides --out and the --set overrides (e.g. ``["--model", "unet"]``)."""
    summary = out / "summary.json"
    if not summary.exists():
        command = [sys.executable, "-m", "nas", kind]
        if (out / "checkpoints" / "last.pt").exists():
            command += ["--resume", str(out)]
        else:
            command += [*start, "--out", str(out)]
            command += [arg for s in sets for arg in ("--set", s)]
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"error: {out}: nas {kind} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(summary.read_text())


def heldout(summary: dict) -> float:
    return (summary["best_val_dice"] + summary["test"]["dice"]) / 2


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="dataset folder (default: the real sample)")
    parser.add_argument("--model", default="unet", help="baseline to retrain (default unet, width 16)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/measure-retrain"))
    parser.add_argument("--variant", action="append", default=None,
                        help="NAME=KEY=VALUE,... (repeatable; default: the five variants of the docs)")
    parser.add_argument("extra", nargs="*", help="more KEY=VALUE overrides for every run")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    common = [f"data.root={args.root}", f"train.epochs={args.epochs}", *BASE_SET, *args.extra]

    console = Console(width=None if sys.stdout.isatty() else 200)
    results: dict[str, list[dict]] = {}
    for name, sets in variants:
        results[name] = []
        for seed in args.seeds:
            console.print(f"{name} seed {seed} ...")
            run = args.out / f"{name}-seed{seed}"
            results[name].append(run_nas("retrain", run, ["--model", args.model], [*common, f"run.seed={seed}", *sets]))

    first = variants[0][0]
    table = Table(title=f"{args.model}, {args.epochs} epochs, seeds {args.seeds}, data {args.root.name}")
    for column in ("variant", "test Dice", "held-out Dice", f"paired held-out − {first}"):
        table.add_column(column)
    for name, _ in variants:
        diffs = [heldout(a) - heldout(b) for a, b in zip(results[name], results[first])]
        table.add_row(name, mean_std([s["test"]["dice"] for s in results[name]]),
                      mean_std([heldout(s) for s in results[name]]), mean_std(diffs))
    console.print(table)


if __name__ == "__main__":
    main()
