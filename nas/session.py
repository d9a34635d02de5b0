"""What every training command does before its loop: run folder, config, runtime, data, optimisers."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
import yaml

from nas.config import Config, TrainConfig, dump_config
from nas.errors import UserError
from nas.runs import atomic_write_text, write_json, write_yaml
from nas.runtime import Runtime, broadcast_module, seed_everything, setup_runtime, shutdown
from nas.sampling import ResumableSampler


@dataclass
class PreparedRun:
    dir: Path
    cfg: Config
    rt: Runtime
    data: Any
    val_loader: Optional[Iterable]
    test_loader: Optional[Iterable]
    data_summary: dict
    saved: dict = field(default_factory=dict)

    def write_once(self, name: str, obj: Any) -> None:
        path = self.dir / name
        if not path.exists():
            write_yaml(path, obj)

    def standard_plots(self, kind: str) -> None:
        if not self.cfg.log.plots:
            return
        from nas.plots import write_standard_plots

        write_standard_plots(self.dir, kind)

    def close(self) -> None:
        shutdown(self.rt)


def read_run_config(run_dir: Path) -> dict:
    """A run folder's saved ``config.yaml`` as a plain dict."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise UserError(f"{path}: not found; is {run_dir} a run folder?")
    return yaml.safe_load(path.read_text())


def resume_config(run_dir: Path, overrides: list[str]) -> Config:
    """The saved config of a run, with `--set` overrides (e.g. more epochs) applied on top."""
    from nas.config import load_config

    return load_config(None, overrides, base=read_run_config(run_dir))


def prepare_run(cfg: Config, run_dir: Path, resume: bool, purpose: str) -> PreparedRun:
    """Create/validate the run folder, set up the process, build data; only rank 0 writes."""
    from nas.data import build_data

    rt = setup_runtime(cfg.run)
    seed_everything(cfg.run.seed)
    saved: dict[str, Any] = {}
    splits = None
    if resume:
        if not (run_dir / "checkpoints" / "last.pt").is_file():
            raise UserError(f"{run_dir}: nothing to resume (no checkpoints/last.pt)")
        splits_path = run_dir / "splits.json"
        if not splits_path.is_file():
            raise UserError(f"{splits_path}: missing; the run cannot be resumed with the same data split")
        splits = json.loads(splits_path.read_text())
        ss = run_dir / "search_space.yaml"
        if ss.is_file():
            saved["search_space"] = yaml.safe_load(ss.read_text())
    elif (run_dir / "checkpoints" / "last.pt").exists():
        raise UserError(f"{run_dir}: already holds a run; use --resume {run_dir} to continue it or choose another --out")
    if rt.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    data = build_data(cfg, purpose, splits=splits)
    if rt.is_main and not resume:
        write_json(run_dir / "splits.json", data.splits)
    # Every rank evaluates the whole val/test split (no padding, identical decisions on all ranks).
    val_loader = data_loader(data.val, cfg, rt.local(), cfg.train.eval_batch_size, train=False)[0] if len(data.val) else None
    test_loader = data_loader(data.test, cfg, rt.local(), cfg.train.eval_batch_size, train=False)[0] if len(data.test) else None
    summary = {"root": cfg.data.root, "layout": getattr(data, "layout", cfg.data.layout),
               "image_size": cfg.data.image_size, "split": cfg.data.split, "limit": cfg.data.limit,
               "synthetic_n": cfg.data.synthetic_n if cfg.data.root is None else None,
               "sizes": {k: len(getattr(data, k)) for k in ("train", "val", "test")}}
    return PreparedRun(dir=run_dir, cfg=cfg, rt=rt, data=data, val_loader=val_loader, test_loader=test_loader,
                       data_summary=summary, saved=saved)


def data_loader(dataset: Any, cfg: Config, rt: Runtime, batch_size: int, train: bool,
                seed_offset: int = 0) -> tuple[torch.utils.data.DataLoader, ResumableSampler]:
    """A loader whose order depends only on (seed, epoch, rank): reproducible and resumable."""
    from nas.data import make_loader

    sampler = ResumableSampler(dataset, seed=cfg.run.seed + seed_offset, shuffle=train,
                               rank=rt.rank, world_size=rt.world_size)
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, seed=cfg.run.seed + seed_offset,
                         workers=cfg.run.workers, drop_last=False, sampler=sampler)
    return loader, sampler


def place_model(model: torch.nn.Module, cfg: Config, rt: Runtime) -> torch.nn.Module:
    """Move to the device and memory format, sync BatchNorm if asked, same start on every rank."""
    if cfg.run.sync_bn and rt.distributed:
        from nas.sync_bn import convert_sync_batchnorm

        model = convert_sync_batchnorm(model, rt.device)
    model = model.to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    broadcast_module(model, rt)
    if cfg.run.compile:
        model.compile()  # in place: the module (and its α/weight groups) stays the same object
    return model


def scaled_lr(lr: float, rule: str, world_size: int) -> float:
    if rule == "linear":
        return lr * world_size
    if rule == "sqrt":
        return lr * math.sqrt(world_size)
    return lr


def build_optimizer(tc: TrainConfig, params: Iterable[torch.nn.Parameter], rt: Runtime,
                    lr_scaling: str = "none") -> torch.optim.Optimizer:
    lr = scaled_lr(tc.lr, lr_scaling, rt.world_size)
    params = list(params)
    if tc.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    betas = tuple(tc.betas)
    if tc.optimizer == "radam":
        return torch.optim.RAdam(params, lr=lr, betas=betas, weight_decay=tc.weight_decay,
                                 decoupled_weight_decay=True)
    if tc.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=tc.weight_decay)
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=tc.weight_decay)


def build_scheduler(tc: TrainConfig, opt: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    if tc.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1), eta_min=tc.lr_min)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def load_scheduler_state(sched: torch.optim.lr_scheduler.LRScheduler, state: dict, epochs: int) -> None:
    """Restore a scheduler of :func:`build_scheduler` on resume; a run resumed with a different
    epoch budget (``epochs``) gets its cosine stretched to the new budget."""
    sched.load_state_dict(state)
    if hasattr(sched, "T_max"):
        sched.T_max = max(epochs, 1)
