"""`nas retrain`: train a searched genotype or a hand-designed baseline, then test it."""

from __future__ import annotations

import argparse

from nas.commands.common import add_config_args, config_for_run, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="train a genotype or a baseline model and evaluate it",
                       description="One training loop for every model: validation each epoch, best.pt by "
                                   "validation Dice, test metrics in summary.json and per_image.csv.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--genotype", metavar="FILE", help="genotype.yaml written by `nas discretize`")
    src.add_argument("--model", metavar="NAME", help="a baseline by name (see --list-models)")
    p.add_argument("--list-models", action="store_true", help="list the registered models and exit")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.train import retrain

    if args.list_models:
        from nas.models import list_models, model_info

        for name in list_models():
            print(f"{name:20s} {model_info(name)}")
        return 0
    extra: list[str] = []
    if args.genotype:
        extra.append(f"model.genotype={args.genotype}")
    if args.model:
        extra.append(f"model.name={args.model}")
    cfg, run_dir, resume = config_for_run(args, "retrain", extra)
    summary = retrain(cfg, run_dir, resume=resume)
    test = summary.get("test", {})
    say(f"retrain finished: {run_dir}  test dice {test.get('dice', float('nan')):.4f}  "
          f"jaccard {test.get('jaccard', float('nan')):.4f}  params {summary['params']:,}")
    return 0
