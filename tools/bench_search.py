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

Side by side: ``--variants`` times several settings in one run, each in a fresh subprocess (so
each has its own peak RSS), interleaved round by round so that a busy machine slows them alike::

    python tools/bench_search.py --batch 4 --size 128 --threads 1 --steps 3 --rounds 3 \
        --variants fp32@../before,fp32,bf16

A variant is ``+``-joined flags: ``fp32`` (default) or ``bf16`` (bfloat16 autocast), ``nchw``
(run the supernet in NCHW instead of the CPU default NHWC), ``cl`` (channels-last input);
``@DIR`` imports ``nas`` from another checkout ``DIR`` (e.g. ``git worktree add ../before
<commit>``) for a before/after comparison. The table gives the median s/step over rounds,
images/s, the peak RSS, and each variant's speed-up over the first one as the median of the
per-round ratios (robust to the machine's load drifting between rounds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
VARIANT_FLAGS = ("fp32", "bf16", "nchw", "cl")


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
    p.add_argument("--nchw", action="store_true", help="run the supernet NCHW (CPU default: NHWC)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the optimisers / α settings (repeatable)")
    p.add_argument("--variants", default=None,
                   help="comma-separated variants to compare side by side, e.g. fp32@../before,fp32,bf16")
    p.add_argument("--rounds", type=int, default=3, help="rounds of --variants (each runs every variant once)")
    p.add_argument("--source", default=None, help=argparse.SUPPRESS)  # checkout to import nas from
    p.add_argument("--step-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variants is not None:
        args.variants = [parse_variant(v) for v in args.variants.split(",") if v.strip()]
        if not args.variants:
            p.error("--variants: give at least one variant")
    return args


def parse_variant(text: str) -> dict:
    """``bf16+nchw@DIR`` → ``{"name", "flags", "source"}``; exits naming a bad flag or folder."""
    name = text.strip()
    spec, _, source = name.partition("@")
    flags = [f for f in spec.split("+") if f] or ["fp32"]
    bad = [f for f in flags if f not in VARIANT_FLAGS]
    if bad or ("fp32" in flags and "bf16" in flags):
        sys.exit(f"error: --variants: bad variant {name!r}; flags are {', '.join(VARIANT_FLAGS)} "
                 "joined by '+', optionally followed by @DIR (fp32 and bf16 exclude each other)")
    if source and not (Path(source) / "nas" / "__init__.py").is_file():
        sys.exit(f"error: --variants: {name!r}: {source} is not a checkout (no nas/__init__.py)")
    return {"name": name, "flags": flags, "source": str(Path(source).resolve()) if source else None}


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
    if args.variants is not None:
        return compare_variants(args)
    return measure(args)


def measure(args: argparse.Namespace) -> dict:
    """Time one setting in this process; prints the table (or only the JSON with --step-only)."""
    sys.path.insert(0, args.source or str(ROOT))
    from nas.architect import Architect, weight_step
    from nas.config import load_config
    from nas.runtime import Runtime
    from nas.search import build_arch_optimizer
    from nas.session import build_optimizer
    from nas.supernet import Supernet

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    cfg = load_config(None, args.overrides)
    sc = cfg.search
    model = Supernet(args.space, channels_last=False if args.nchw else None, alpha_init=sc.alpha_init)
    model = model.to(device, memory_format=fmt).train()
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
    if args.step_only:
        print(json.dumps({"step_s": step_s, "peak_mem_kind": mem_kind, "peak_mem_mb": mem_mb,
                          "threads": torch.get_num_threads()}))
        return {"step_s": step_s, "peak_mem_mb": mem_mb}
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
        "nchw": args.nchw,
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
        f"channels_last input {args.channels_last} "
        f"({'the supernet runs NCHW' if args.nchw else 'the supernet runs NHWC on CPU either way'})"
    )
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>10}")
    print(json.dumps(result))
    return result


def _child_argv(args: argparse.Namespace, variant: dict) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--step-only",
            "--space", args.space, "--batch", str(args.batch), "--size", str(args.size),
            "--order", str(args.order), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--device", args.device, "--seed", str(args.seed)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    for item in args.overrides:
        argv += ["--set", item]
    flags = variant["flags"]
    argv += [flag for flag, on in (("--bf16", "bf16" in flags), ("--nchw", "nchw" in flags),
                                   ("--channels-last", "cl" in flags)) if on]
    if variant["source"]:
        argv += ["--source", variant["source"]]
    return argv


def compare_variants(args: argparse.Namespace) -> dict:
    """Run every variant once per round in a fresh process; print the side-by-side table."""
    variants = args.variants
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    times: dict[str, list[float]] = {v["name"]: [] for v in variants}
    peaks: dict[str, float] = {v["name"]: 0.0 for v in variants}
    for r in range(args.rounds):
        for v in variants:
            proc = subprocess.run(_child_argv(args, v), capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.exit(f"error: variant {v['name']!r} failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no message'}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            times[v["name"]].append(res["step_s"])
            peaks[v["name"]] = max(peaks[v["name"]], res["peak_mem_mb"])
            print(f"  round {r + 1}/{args.rounds}  {v['name']:<24} {res['step_s']:.3f} s/step", flush=True)
    base = variants[0]["name"]
    rows = []
    for v in variants:
        name = v["name"]
        step = statistics.median(times[name])
        ratio = statistics.median(b / t for b, t in zip(times[base], times[name]))
        rows.append({"variant": name, "step_s": round(step, 4), "images_per_s": round(args.batch / step, 3),
                     "peak_rss_mb": round(peaks[name], 1), "speedup_vs_first": round(ratio, 3),
                     "rounds_s": [round(t, 4) for t in times[name]]})
    print(f"{args.space}  batch {args.batch}  {args.size}x{args.size}  order {args.order}  {args.device}  "
          f"threads {args.threads or 'default'}  {args.steps} steps x {args.rounds} rounds (median)")
    width = max(len(r["variant"]) for r in rows)
    print(f"  {'variant':<{width}}  {'s/step':>8}  {'images/s':>8}  {'peak RSS':>9}  {'vs ' + base:>10}")
    for r in rows:
        print(f"  {r['variant']:<{width}}  {r['step_s']:>8.3f}  {r['images_per_s']:>8.2f}  "
              f"{r['peak_rss_mb']:>5.0f} MiB  {r['speedup_vs_first']:>9.2f}x")
    result = {"bench": "search_step_variants", "space": args.space, "batch": args.batch,
              "size": args.size, "order": args.order, "device": args.device, "threads": args.threads,
              "steps": args.steps, "rounds": args.rounds, "variants": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
