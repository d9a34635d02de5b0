#!/usr/bin/env python
"""Benchmark one full bilevel search step of the supernet on random data.

A step is what ``nas search`` does per batch: an α step on a validation batch (first or
second order), then a weight step on a training batch, with the optimisers, α initialisation
and β-decay mode of the shipped config (``--set search.KEY=VALUE`` to change them, e.g.
``--set search.arch_optimizer=radam --set search.beta_decay.mode=gradient`` for the thesis). Also times a plain
forward and a forward+backward (all gradients) separately, to tell where the time goes.

    python tools/bench_search.py --space unet_fullscale --batch 4 --size 128 --order 1 \
        --steps 5 --warmup 1 --device cpu --threads 2

Prints a table and one JSON line (``{"bench": "search_step", ...}``) for scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nas.architect import Architect, weight_step  # noqa: E402
from nas.config import load_config  # noqa: E402
from nas.runtime import Runtime  # noqa: E402
from nas.search import build_arch_optimizer  # noqa: E402
from nas.session import build_optimizer  # noqa: E402
from nas.supernet import Supernet  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", default="unet_fullscale", help="search-space name or file")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=128, help="image side (divisible by 16)")
    p.add_argument("--order", type=int, choices=(1, 2), default=1)
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the optimisers / α settings (repeatable)")
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_time(fn: Callable[[], object], n: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _peak_memory_mb(device: torch.device) -> tuple[str, float]:
    if device.type == "cuda":
        return "cuda_max_allocated", torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux
    return "max_rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    cfg = load_config(None, args.overrides)
    sc = cfg.search
    model = Supernet(args.space, alpha_init=sc.alpha_init).to(device, memory_format=fmt).train()
    space = model.space
    w_opt = build_optimizer(cfg.train, model.weight_parameters(), Runtime(device))
    a_opt = build_arch_optimizer(cfg, model.arch_parameters())
    loss_fn = torch.nn.BCEWithLogitsLoss()
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16 else None
    architect = Architect(model, loss_fn, a_opt, order=args.order, autocast=autocast,
                          w_lr=cfg.train.lr, w_momentum=cfg.train.momentum, w_weight_decay=cfg.train.weight_decay,
                          include_blocks=sc.beta_decay.include_blocks, beta_mode=sc.beta_decay.mode)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.rand(args.batch, space.in_channels, args.size, args.size, device=device)
        y = (torch.rand(args.batch, 1, args.size, args.size, device=device) > 0.5).float()
        return x.contiguous(memory_format=fmt), y.expand(-1, space.head_channels, -1, -1)

    (xt, yt), (xv, yv) = batch(), batch()
    ctx = autocast if autocast else contextlib.nullcontext

    def search_step() -> None:
        architect.step(xv, yv, xt, yt, lam=0.5, w_optimizer=w_opt)
        weight_step(model, loss_fn, xt, yt, w_opt, grad_clip=5.0, autocast=autocast)

    def forward() -> None:
        with torch.no_grad(), ctx():
            model(xt)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        with ctx():
            loss = loss_fn(model(xt), yt)
        loss.backward()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s = _median_time(search_step, args.steps, args.warmup, device)
    mem_kind, mem_mb = _peak_memory_mb(device)
    fwd_s = _median_time(forward, args.steps, 1, device)
    fwdbwd_s = _median_time(forward_backward, args.steps, 1, device)

    result = {
        "bench": "search_step",
        "space": space.name,
        "batch": args.batch,
        "size": args.size,
        "order": args.order,
        "device": args.device,
        "bf16": args.bf16,
        "channels_last": args.channels_last,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "arch_optimizer": sc.arch_optimizer,
        "beta_mode": sc.beta_decay.mode,
        "step_s": round(step_s, 4),
        "forward_s": round(fwd_s, 4),
        "forward_backward_s": round(fwdbwd_s, 4),
        "backward_s": round(max(fwdbwd_s - fwd_s, 0.0), 4),
        "peak_mem_kind": mem_kind,
        "peak_mem_mb": round(mem_mb, 1),
        "arch_params": sum(p.numel() for p in model.arch_parameters()),
        "weight_params": sum(p.numel() for p in model.weight_parameters()),
    }
    rows = [
        ("search step (α + w), median", f"{step_s:.3f} s"),
        ("forward (no grad)", f"{fwd_s:.3f} s"),
        ("forward + backward", f"{fwdbwd_s:.3f} s"),
        ("  backward alone (difference)", f"{result['backward_s']:.3f} s"),
        (f"peak memory ({mem_kind}, during search steps)", f"{mem_mb:.0f} MiB"),
    ]
    print(
        f"{space.name}  batch {args.batch}  {args.size}x{args.size}  order {args.order}  "
        f"{args.device}  threads {result['threads']}  bf16 {args.bf16}  "
        f"channels_last input {args.channels_last} (the supernet runs NHWC on CPU either way)"
    )
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>10}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
