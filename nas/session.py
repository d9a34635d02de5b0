"""What every training command does before its loop: run folder, config, runtime, data, optimisers."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TypeVar

import torch
import yaml

from nas.config import Config, TrainConfig, config_to_dict, dump_config, flat_keys
from nas.errors import UserError
from nas.lock import FolderLock
from nas.runs import atomic_write_text, is_rank_zero, write_json, write_yaml
from nas.runtime import Runtime, broadcast_module, seed_everything, setup_runtime, shutdown
from nas.sampling import ResumableSampler

T = TypeVar("T")


# Which kind of run each data purpose belongs to.
RUN_KINDS = {"search": "search", "train": "retrain"}
# What a run writes before its first checkpoint. A folder holding only these, with our
# metrics.csv and no checkpoints/last.pt, is a start that failed: a new run may replace it.
START_FILES = ("metrics.csv", "config.yaml", "splits.json", "search_space.yaml", "alphas.csv", "genotype.yaml")
# Keys that say what a checkpoint is (its data, split, network and optimiser state): a resumed
# run keeps them, or its config.yaml would describe another experiment than its checkpoints.
FROZEN_ON_RESUME = ("model.", "search.space", "data.image_size", "data.split", "data.groups", "data.limit",
                    "data.synthetic_n", "data.layout", "data.official_split", "run.seed", "train.optimizer",
                    "train.scheduler", "retrain.optimizer", "search.arch_optimizer")
# Keys that runs of earlier versions did not write, with the value those versions used: a
# resumed old run continues as it started, not with today's defaults.
EARLIER_DEFAULTS = {("search", "arch_optimizer"): "radam", ("search", "beta_decay", "mode"): "gradient"}
# ... and, for a checkpoint taken in the middle of an epoch, the batch that sets its position there.
FROZEN_MID_EPOCH = ("train.batch_size", "retrain.batch_size")


@dataclass
class PreparedRun:
    dir: Path
    cfg: Config
    rt: Runtime
    data: Any
    val_loader: Optional[Iterable]
    data_summary: dict
    saved: dict = field(default_factory=dict)
    resume: bool = False
    checkpoint: Optional[dict] = None   # the validated last.pt of a resumed run (on the CPU)

    def start(self, files: Optional[dict[str, Any]] = None) -> None:
        """Write the files a run starts with, once everything was checked (rank 0): a new run's
        metrics.csv header (first: it marks the folder as ours), config.yaml, splits.json and
        `files` (name -> YAML object); a resumed run's config.yaml (its new `--set` values)
        and any of `files` that went missing. The resume's checkpoint, restored by now, is let go."""
        self.checkpoint = None
        if not self.rt.is_main:
            return
        from nas.loop import METRICS_COLUMNS, CsvLog

        if not self.resume:
            CsvLog(self.dir / "metrics.csv", METRICS_COLUMNS).start()
            for name in START_FILES[1:]:  # a failed earlier start's files, e.g. of another kind
                (self.dir / name).unlink(missing_ok=True)
            (self.dir / "checkpoints" / "best.pt").unlink(missing_ok=True)
        atomic_write_text(self.dir / "config.yaml", dump_config(self.cfg))
        if not self.resume:
            write_json(self.dir / "splits.json", self.data.splits)
        for name, obj in (files or {}).items():
            if not self.resume or not (self.dir / name).exists():
                write_yaml(self.dir / name, obj)

    def standard_plots(self, kind: str) -> None:
        if not self.cfg.log.plots:
            return
        from nas.plots import write_standard_plots

        write_standard_plots(self.dir, kind)

    def close(self) -> None:
        shutdown(self.rt)


def holds_run_folder(command: Callable[..., T]) -> Callable[..., T]:
    """Decorate ``command(cfg, out_dir, resume=False)`` (search, retrain) to hold the exclusive lock
    of `out_dir` while it runs (rank 0 takes it), so two runs never write into one folder."""

    @functools.wraps(command)
    def locked(cfg: Config, out_dir: str | Path, resume: bool = False) -> T:
        if not is_rank_zero():
            return command(cfg, out_dir, resume=resume)
        with FolderLock(out_dir, create=not resume):
            return command(cfg, out_dir, resume=resume)

    return locked


def read_run_config(run_dir: Path) -> dict:
    """A run folder's saved ``config.yaml`` as a plain dict."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise UserError(f"{path}: not found; is {run_dir} a run folder?")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "not valid YAML"
        raise UserError(f"{path}: cannot read the run's config ({reason})") from None
    if not isinstance(tree, dict):
        raise UserError(f"{path}: cannot read the run's config (expected a mapping of sections)")
    return tree


def resume_config(run_dir: Path, overrides: list[str]) -> Config:
    """The saved config of a run, with `--set` overrides (e.g. more epochs) applied on top."""
    from nas.config import load_config

    return load_config(None, overrides, base=with_earlier_defaults(read_run_config(run_dir)))


def with_earlier_defaults(saved: dict) -> dict:
    """`saved` (a run's config.yaml) with the keys its version did not write set as it ran then."""
    for path, value in EARLIER_DEFAULTS.items():
        node = saved
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                break
            node = node[key]
        else:
            node.setdefault(path[-1], value)
    return saved


def check_resumable(run_dir: Path, kind: str, cfg: Config) -> tuple[dict, dict]:
    """Everything a resume needs, checked before anything is written: a readable last.pt of this
    kind, the run's split, and no change to a key in FROZEN_ON_RESUME. Returns (checkpoint, splits)."""
    from nas.data import read_splits
    from nas.loop import checkpoint_kind, checkpoint_path, load_checkpoint

    last = checkpoint_path(run_dir)
    if not last.is_file():
        raise UserError(f"{run_dir}: nothing to resume (no checkpoints/last.pt)")
    ckpt = load_checkpoint(last)
    found = checkpoint_kind(ckpt)
    if found != kind:
        if found is None:
            raise UserError(f"{last}: not a checkpoint of nas search or nas retrain")
        raise UserError(f"{run_dir}: holds a {found} run; continue it with `nas {found} --resume {run_dir}`")
    before, now = flat_keys(with_earlier_defaults(read_run_config(run_dir))), flat_keys(config_to_dict(cfg))
    mid_epoch = bool(ckpt.get("loop", {}).get("step_in_epoch"))
    for key in sorted(before):  # a key the run's version did not have yet cannot have changed
        if key not in now or before[key] == now[key]:
            continue
        if key.startswith(FROZEN_ON_RESUME):
            raise UserError(f"{key}: cannot change on --resume ({run_dir} was trained with {before[key]!r}, "
                            f"now {now[key]!r}); start a new run with --out instead")
        if mid_epoch and key.startswith(FROZEN_MID_EPOCH):
            raise UserError(f"{key}: cannot change on --resume from the middle of an epoch ({before[key]!r}, "
                            f"now {now[key]!r}); its checkpoint holds the position in that epoch in batches")
    splits_path = run_dir / "splits.json"
    if not splits_path.is_file():
        raise UserError(f"{splits_path}: missing; the run cannot be resumed with the same data split")
    return ckpt, read_splits(splits_path)


def check_new_run_folder(run_dir: Path) -> None:
    """`--out` must be new or empty, or hold only a failed start (no checkpoint) of a run: never
    replace someone's own files, never start over a run that has a checkpoint."""
    from nas.lock import LOCK_NAME
    from nas.runs import is_temp_file

    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a folder; choose another --out")
    entries = sorted(e.name for e in run_dir.iterdir() if e.name != LOCK_NAME and not is_temp_file(e.name))
    if not entries:
        return
    if (run_dir / "checkpoints" / "last.pt").exists():
        held = "search" if (run_dir / "search_space.yaml").exists() else "retrain"
        raise UserError(f"{run_dir}: already holds a {held} run; continue it with `nas {held} --resume {run_dir}` "
                        f"or choose another --out")
    ckpts = run_dir / "checkpoints"
    ours = _has_our_metrics(run_dir / "metrics.csv") and all(
        name in START_FILES or (name == "checkpoints" and ckpts.is_dir()
                                and {p.name for p in ckpts.iterdir()} <= {"best.pt"})
        for name in entries)
    if not ours:
        raise UserError(f"{run_dir}: already exists and holds other files ({', '.join(entries[:3])}"
                        f"{', ...' if len(entries) > 3 else ''}); --out must be a new or empty folder "
                        f"(or a run folder to continue with --resume)")


def _has_our_metrics(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.readline().startswith(b"epoch,step,phase,")
    except OSError:
        return False


def prepare_run(cfg: Config, run_dir: Path, resume: bool, purpose: str) -> PreparedRun:
    """Check the run folder (and a resume's checkpoint and split), set up the process and build
    the data. Writes nothing: the caller calls `start()` once its model and state are ready."""
    from nas.data import build_data

    kind = RUN_KINDS[purpose]
    checkpoint, splits, saved = None, None, {}
    if resume:
        checkpoint, splits = check_resumable(run_dir, kind, cfg)
        if kind == "search":
            saved["search_space"] = checkpoint["search_space"]
    else:
        check_new_run_folder(run_dir)
    rt = setup_runtime(cfg.run)
    seed_everything(cfg.run.seed)
    data = build_data(cfg, purpose, splits=splits)
    # Every rank evaluates the whole val split (no padding, identical decisions on all ranks); the
    # test split is scored on whole images at the end (nas.train).
    val_loader = data_loader(data.val, cfg, rt.local(), cfg.train.eval_batch_size, train=False)[0] if len(data.val) else None
    summary = {"root": cfg.data.root, "layout": getattr(data, "layout", cfg.data.layout),
               "image_size": cfg.data.image_size, "split": cfg.data.split, "limit": cfg.data.limit,
               "synthetic_n": cfg.data.synthetic_n if cfg.data.root is None else None,
               "sizes": {k: len(getattr(data, k)) for k in ("train", "val", "test")}}
    return PreparedRun(dir=run_dir, cfg=cfg, rt=rt, data=data, val_loader=val_loader,
                       data_summary=summary, saved=saved, resume=resume, checkpoint=checkpoint)


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
