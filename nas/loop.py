"""The one training loop: epochs, progress, logging, validation, checkpoints, resume, Ctrl-C.

Search and retrain differ only in what one step does, so each supplies a `LoopTask` (its
step, its optimizers and schedulers) and this module does everything else the same way.
"""

from __future__ import annotations

import csv
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nas.errors import UserError
from nas.evaluation import evaluate_loader, gather_counts
from nas.losses import target_probability
from nas.metrics import MetricAccumulator, metrics_from_counts
from nas.runs import atomic_torch_save, atomic_write_text
from nas.runtime import Runtime, all_reduce_sum, replicas_in_sync, rng_state, set_rng_state

METRICS_COLUMNS = ["epoch", "step", "phase", "loss", "arch_loss", "dice", "jaccard", "jaccard_t",
                   "accuracy", "sensitivity", "specificity", "precision", "lr", "arch_lr",
                   "beta_lambda", "images_per_s", "time_s",
                   "alpha_move", "alpha_move_ratio", "top_gain", "kl_uniform", "init_agreement"]
ALPHAS_COLUMNS = ["epoch", "step", "cell", "group", "input", "op", "alpha", "weight"]


# ----------------------------------------------------------------------------- CSV logs
class CsvLog:
    """Append-only CSV with a fixed header; `truncate_after(step)` drops rows a resume will redo."""

    def __init__(self, path: Path, columns: list[str], enabled: bool = True) -> None:
        self.path, self.columns, self.enabled = path, columns, enabled
        if enabled and not path.exists():
            atomic_write_text(path, ",".join(columns) + "\n")

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
            for row in rows:
                writer.writerow({k: _fmt(v) for k, v in row.items()})

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.exists():
            return
        with self.path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= step]
        lines = [",".join(self.columns)] + [",".join(r.get(c, "") or "" for c in self.columns) for r in rows]
        atomic_write_text(self.path, "\n".join(lines) + "\n")


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return "" if v is None else v


# ----------------------------------------------------------------------------- task protocol
@dataclass
class StepResult:
    loss: float
    logits: torch.Tensor
    mask: torch.Tensor
    extra: dict[str, float] = field(default_factory=dict)


class LoopTask(Protocol):
    """What a search or a retrain plugs into `fit`."""

    model: torch.nn.Module

    def train_batches(self, epoch: int, skip: int) -> tuple[Iterable[Any], int]: ...
    def begin_epoch(self, epoch: int) -> dict[str, float]: ...
    def train_step(self, batch: Any, epoch: int) -> StepResult: ...
    def end_epoch(self, epoch: int) -> None: ...
    def epoch_logs(self) -> dict[str, Any]: ...
    def learning_rates(self) -> dict[str, float]: ...
    def after_step(self, epoch_frac: float, step: int, last_in_epoch: bool) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class LoopSettings:
    epochs: int
    run_dir: Path
    val_loader: Optional[Iterable] = None
    loss_fn: Optional[Callable] = None
    early_stop_patience: Optional[int] = None
    progress: bool = True
    title: str = "train"
    checkpoint_extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoopState:
    epoch: int = 0            # completed epochs
    step: int = 0             # global optimisation steps done
    step_in_epoch: int = 0    # > 0 only for a checkpoint taken mid-epoch (Ctrl-C)
    best_dice: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    train_time_s: float = 0.0
    stopped_early: bool = False


def checkpoint_path(run_dir: Path, name: str = "last") -> Path:
    return run_dir / "checkpoints" / f"{name}.pt"


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # corrupt or foreign file
        raise UserError(f"{path}: cannot read checkpoint ({type(exc).__name__})") from None


class Trainer:
    """Runs `task` for `settings.epochs`, writing metrics.csv and checkpoints under run_dir."""

    def __init__(self, task: LoopTask, settings: LoopSettings, rt: Runtime, config_dict: dict) -> None:
        self.task, self.s, self.rt, self.config_dict = task, settings, rt, config_dict
        self.state = LoopState()
        self.console = Console(stderr=True, quiet=not rt.is_main)
        self.metrics = CsvLog(settings.run_dir / "metrics.csv", METRICS_COLUMNS, enabled=rt.is_main)

    # -- checkpoints
    def _checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.task.model.state_dict(),
            "task": self.task.state_dict(),
            "rng": rng_state(),
            "loop": vars(self.state).copy(),
            "config": self.config_dict,
            "world_size": self.rt.world_size,
            **self.s.checkpoint_extra,
        }

    def save(self, name: str = "last") -> None:
        if self.rt.is_main:
            atomic_torch_save(self._checkpoint(), checkpoint_path(self.s.run_dir, name))

    def resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.rt.device)
        self.task.model.load_state_dict(ckpt["model"])
        self.task.load_state_dict(ckpt["task"])
        set_rng_state({k: (v.cpu() if torch.is_tensor(v) else v) for k, v in ckpt["rng"].items()})
        self.state = LoopState(**ckpt["loop"])
        self.metrics.truncate_after(self.state.step)

    # -- the loop
    def request_stop(self, *_: Any) -> None:
        """Ask the loop to stop after the current step (what Ctrl-C does)."""
        self._stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

    def _should_stop(self) -> bool:
        """All ranks agree to stop if any was interrupted (so no collective is left waiting)."""
        if not self.rt.distributed:
            return self._stop_requested
        flag = torch.tensor([1.0 if self._stop_requested else 0.0], device=self.rt.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        self._stop_requested = bool(flag.item())
        return self._stop_requested

    def fit(self) -> LoopState:
        st = self.state
        start = self._t0 = time.perf_counter() - st.train_time_s
        self._stop_requested = False
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, self.request_stop) if in_main_thread else None
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=self.console, disable=not (self.s.progress and self.rt.is_main),
                            transient=True)
        try:
            with progress:
                for epoch in range(st.epoch + 1, self.s.epochs + 1):
                    if st.stopped_early:
                        break
                    finished = self._run_epoch(epoch, progress)
                    st.train_time_s = time.perf_counter() - start
                    if finished:
                        st.epoch = epoch
                    self.save("last")
                    if not finished or (self._stop_requested and epoch < self.s.epochs):
                        raise UserError(f"interrupted at epoch {epoch}, step {st.step}; checkpoint saved to "
                                        f"{checkpoint_path(self.s.run_dir)}; continue with --resume "
                                        f"{self.s.run_dir}", exit_code=130)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        return st

    def _run_epoch(self, epoch: int, progress: Progress) -> bool:
        """One epoch (or its remainder after a resume); False when stopped by Ctrl-C mid-way."""
        st, task = self.state, self.task
        extra_logs = task.begin_epoch(epoch)
        batches, n_steps = task.train_batches(epoch, st.step_in_epoch)
        bar = progress.add_task(f"{self.s.title} {epoch}/{self.s.epochs}", total=n_steps,
                                completed=st.step_in_epoch, info="")
        acc = MetricAccumulator()
        loss_sum = torch.zeros(2, dtype=torch.float64)
        task.model.train()
        for batch in batches:
            t0 = time.perf_counter()
            out = task.train_step(batch, epoch)
            if not math.isfinite(out.loss):
                last = checkpoint_path(self.s.run_dir)
                kept = (f"the last good checkpoint is kept at {last}" if last.is_file()
                        else "no checkpoint was written yet")
                raise UserError(f"loss became {out.loss} at epoch {epoch}, step {st.step + 1}; stopped, {kept} "
                                f"(lower the learning rate or disable bf16)", exit_code=1)
            st.step += 1
            st.step_in_epoch += 1
            n = out.mask.shape[0]
            loss_sum += torch.tensor([out.loss * n, n], dtype=torch.float64)
            acc.update(target_probability(out.logits.detach()), out.mask)
            ips = n * self.rt.world_size / max(time.perf_counter() - t0, 1e-9)
            lrs = task.learning_rates()
            row = {"epoch": epoch, "step": st.step, "phase": "step", "loss": out.loss,
                   "images_per_s": round(ips, 2), **lrs, **extra_logs, **out.extra}
            self.metrics.write([row])
            last = st.step_in_epoch == n_steps
            task.after_step(epoch - 1 + st.step_in_epoch / n_steps, st.step, last)
            dice = float(metrics_from_counts(acc.counts[-1])["dice"].mean())
            info = f"loss {out.loss:.4f}  dice {dice:.3f}  " + "  ".join(f"{k} {v:.3g}" for k, v in {**lrs, **extra_logs}.items())
            progress.update(bar, advance=1, info=f"{info}  {ips:.1f} img/s")
            if self._should_stop() and not last:
                progress.remove_task(bar)
                return False
        progress.remove_task(bar)
        st.step_in_epoch = 0
        task.end_epoch(epoch)
        self._end_of_epoch(epoch, acc, loss_sum, extra_logs)
        return True

    def _end_of_epoch(self, epoch: int, acc: MetricAccumulator, loss_sum: torch.Tensor,
                      extra_logs: dict[str, float]) -> None:
        st = self.state
        if not replicas_in_sync(self.task.model, self.rt):
            raise UserError(f"ranks hold different parameters after epoch {epoch}; stopped (this is a bug: "
                            f"please report it with the run's config.yaml)", exit_code=1)
        loss_sum = all_reduce_sum(loss_sum, self.rt)
        counts = gather_counts(acc, self.rt)
        train = MetricAccumulator(counts=[counts]).summary() if counts.numel() else {}
        extra_logs = {**extra_logs, **self.task.epoch_logs()}
        train_row = {"epoch": epoch, "step": st.step, "phase": "train",
                     "loss": float(loss_sum[0] / max(loss_sum[1], 1)), **train,
                     **self.task.learning_rates(), **extra_logs,
                     "time_s": round(time.perf_counter() - self._t0, 3)}
        rows = [train_row]
        line = f"epoch {epoch}/{self.s.epochs}  train loss {train_row['loss']:.4f} dice {train.get('dice', float('nan')):.4f}"
        if self.s.val_loader is not None:
            val = evaluate_loader(self.task.model, self.s.val_loader, self.rt.local(), self.s.loss_fn)
            rows.append({"epoch": epoch, "step": st.step, "phase": "val", **val.summary})
            vd = val.summary.get("dice", 0.0)
            line += f"  val loss {val.summary.get('loss', float('nan')):.4f} dice {vd:.4f}"
            if vd > st.best_dice:
                st.best_dice, st.best_epoch, st.bad_epochs = vd, epoch, 0
                self.save("best")
            else:
                st.bad_epochs += 1
                if self.s.early_stop_patience and st.bad_epochs >= self.s.early_stop_patience:
                    st.stopped_early = True
                    line += "  (early stop)"
        self.metrics.write(rows)
        if extra_logs:
            line += "  " + "  ".join(f"{k} {v:.3g}" for k, v in extra_logs.items())
        self.console.print(line, soft_wrap=True)
