"""The one training loop: epochs, progress, logging, validation, checkpoints, resume, Ctrl-C.

Search and retrain differ only in what one step does, so each supplies a `LoopTask` (its
step, its optimizers and schedulers) and this module does everything else the same way.
"""

from __future__ import annotations

import csv
import errno
import logging
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
from nas.runs import WriteError, atomic_torch_save, atomic_write_text
from nas.runtime import Runtime, all_reduce_sum, replicas_in_sync, rng_state, set_rng_state

# The search signal (nas.search_signal) of a search's train rows.
SIGNAL_COLUMNS = ["alpha_move", "alpha_move_ratio", "top_gain", "kl_uniform", "init_agreement"]
METRICS_COLUMNS = ["epoch", "step", "phase", "loss", "arch_loss", "dice", "jaccard", "jaccard_t",
                   "accuracy", "sensitivity", "specificity", "precision", "lr", "arch_lr",
                   "beta_lambda", "images_per_s", "time_s", *SIGNAL_COLUMNS]
ALPHAS_COLUMNS = ["epoch", "step", "cell", "group", "input", "op", "alpha", "weight"]
log = logging.getLogger("nas.loop")


# ----------------------------------------------------------------------------- CSV logs
class CsvLog:
    """Append-only CSV with a fixed header. A new run starts it empty (`start()`); a resumed run
    drops the rows logged after its checkpoint (`start(step)`), and a last row torn by a kill or a
    full disk, with a warning."""

    def __init__(self, path: Path, columns: list[str], enabled: bool = True) -> None:
        self.path, self.columns, self.enabled = path, columns, enabled

    def start(self, resume_step: Optional[int] = None) -> None:
        if not self.enabled:
            return
        if resume_step is None or not self.path.exists():
            atomic_write_text(self.path, ",".join(self.columns) + "\n")
        else:
            self.truncate_after(resume_step)

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        if not self.path.exists():
            atomic_write_text(self.path, ",".join(self.columns) + "\n")
        try:
            with self.path.open("a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
                for row in rows:
                    writer.writerow({k: _fmt(v) for k, v in row.items()})
        except OSError as exc:
            raise WriteError(self.path, exc) from None

    def complete_rows(self) -> list[dict[str, str]]:
        """The rows of the file that were written whole; a torn last row is left out with a warning."""
        text = self.path.read_text(encoding="utf-8", errors="replace")
        lines = text.split("\n")
        if lines[-1]:  # every row ends with a newline: text after the last one was cut off
            log.warning("warning: %s: dropped a partial last row %r (cut off by a kill or a full disk)",
                        self.path, lines[-1][:60])
        lines = lines[:-1]
        if not lines:
            return []
        header, rows, bad = lines[0].split(","), [], 0
        for values in csv.reader(lines[1:]):
            row = dict(zip(header, values))
            if len(values) != len(header) or not _is_int(row.get("step")):
                bad += 1
                continue
            rows.append(row)
        if bad:
            log.warning("warning: %s: dropped %d malformed row%s", self.path, bad, "s" if bad > 1 else "")
        return rows

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.exists():
            return
        rows = [r for r in self.complete_rows() if int(float(r["step"])) <= step]
        lines = [",".join(self.columns)] + [",".join(r.get(c, "") or "" for c in self.columns) for r in rows]
        atomic_write_text(self.path, "\n".join(lines) + "\n")


def _is_int(text: Optional[str]) -> bool:
    try:
        return text is not None and float(text) == int(float(text))
    except (ValueError, OverflowError):
        return False


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
    logs: list[CsvLog] = field(default_factory=list)  # more CSV logs started/truncated with metrics.csv


@dataclass
class LoopState:
    epoch: int = 0            # completed epochs
    step: int = 0             # global optimisation steps done
    step_in_epoch: int = 0    # > 0 only for a checkpoint taken mid-epoch (Ctrl-C, SIGTERM)
    best_dice: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    train_time_s: float = 0.0
    stopped_early: bool = False


@dataclass
class EpochSums:
    """What the epoch's `train` row averages: loss × images and images (float64), and the per-image
    confusion counts. A mid-epoch checkpoint stores them, so a resumed epoch logs the same row."""

    loss: torch.Tensor = field(default_factory=lambda: torch.zeros(2, dtype=torch.float64))
    acc: MetricAccumulator = field(default_factory=MetricAccumulator)

    def gathered(self, rt: Runtime) -> dict[str, torch.Tensor]:
        """All ranks' sums (a collective: every rank calls it)."""
        return {"loss": all_reduce_sum(self.loss, rt).cpu(), "counts": gather_counts(self.acc, rt)}

    @classmethod
    def from_saved(cls, saved: dict[str, torch.Tensor]) -> "EpochSums":
        counts = saved["counts"].cpu()
        return cls(loss=saved["loss"].cpu().clone(), acc=MetricAccumulator(counts=[counts] if len(counts) else []))


SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def checkpoint_path(run_dir: Path, name: str = "last") -> Path:
    return run_dir / "checkpoints" / f"{name}.pt"


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated, corrupt or foreign file
        raise UserError(f"{path}: cannot read checkpoint (damaged or not a checkpoint: "
                        f"{type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UserError(f"{path}: not a nas checkpoint (no model state in it)")
    return ckpt


def checkpoint_kind(ckpt: dict[str, Any]) -> Optional[str]:
    """"search" or "retrain": which command wrote a checkpoint (None if neither can be told)."""
    if "search_space" in ckpt:
        return "search"
    if "model_spec" in ckpt:
        return "retrain"
    return None


class Trainer:
    """Runs `task` for `settings.epochs`, writing metrics.csv and checkpoints under run_dir."""

    def __init__(self, task: LoopTask, settings: LoopSettings, rt: Runtime, config_dict: dict) -> None:
        self.task, self.s, self.rt, self.config_dict = task, settings, rt, config_dict
        self.state = LoopState()
        self.console = Console(stderr=True, quiet=not rt.is_main)
        self.metrics = CsvLog(settings.run_dir / "metrics.csv", METRICS_COLUMNS, enabled=rt.is_main)
        self._resumed = False
        self._sums: Optional[EpochSums] = None   # the current epoch's running sums
        self._saved: Optional[tuple[int, int]] = None  # (epoch, step) of the last.pt on disk
        self._stop_signal, self._stop_time = 0, 0.0
        self._epoch = self.state.epoch + 1  # the epoch being run

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
        """Write a checkpoint (rank 0). Every rank calls it: a mid-epoch one gathers the sums."""
        mid_epoch = self.state.step_in_epoch > 0 and self._sums is not None
        sums = self._sums.gathered(self.rt) if mid_epoch else None
        if self.rt.is_main:
            ckpt = self._checkpoint()
            if sums is not None:
                ckpt["epoch_sums"] = sums
            atomic_torch_save(ckpt, checkpoint_path(self.s.run_dir, name))
        if name == "last":
            self._saved = (self.state.epoch, self.state.step)

    def resume(self, ckpt: dict[str, Any]) -> None:
        """Restore model, optimisers, RNG, position and running sums from a loaded checkpoint
        (`load_checkpoint`); writes nothing."""
        path = checkpoint_path(self.s.run_dir)
        try:
            self.task.model.load_state_dict(ckpt["model"])
            self.task.load_state_dict(ckpt["task"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"{path}: does not fit this run's model or optimiser ({first}); a setting that "
                            f"changes them cannot be applied on --resume") from None
        set_rng_state({k: (v.cpu() if torch.is_tensor(v) else v) for k, v in ckpt["rng"].items()})
        self.state = LoopState(**ckpt["loop"])
        saved_sums = ckpt.get("epoch_sums")
        if saved_sums is not None and self.state.step_in_epoch and self.rt.is_main:
            self._sums = EpochSums.from_saved(saved_sums)  # the other ranks add theirs from here on
        self._saved = (self.state.epoch, self.state.step)
        self._resumed = True

    # -- stopping
    def request_stop(self, signum: int = signal.SIGINT, frame: Any = None) -> None:
        """Ask the loop to stop after the current step (Ctrl-C, SIGTERM). Another Ctrl-C more than
        a second later stops at once; copies within that second, and further SIGTERMs, are the same
        request forwarded by a launcher (torchrun, srun) and are ignored."""
        now = time.monotonic()
        if not self._stop_signal:
            self._stop_signal, self._stop_time = int(signum), now
        elif signum == signal.SIGINT and now - self._stop_time > 1.0:
            raise KeyboardInterrupt

    def _should_stop(self) -> bool:
        """All ranks agree to stop if any was interrupted (so no collective is left waiting)."""
        if not self.rt.distributed:
            return bool(self._stop_signal)
        flag = torch.tensor([float(self._stop_signal)], device=self.rt.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        agreed = int(flag.item())
        if agreed and not self._stop_signal:  # another rank's signal: this one's copy may still come
            self._stop_time = time.monotonic()
        self._stop_signal = agreed
        return bool(agreed)

    def _interrupted(self, epoch: int) -> UserError:
        how = "interrupted" if self._stop_signal != signal.SIGTERM else "stopped by SIGTERM"
        return UserError(f"{how} at epoch {epoch}, step {self.state.step}; checkpoint saved to "
                         f"{checkpoint_path(self.s.run_dir)}; continue with --resume {self.s.run_dir}",
                         exit_code=SIGNAL_EXIT_CODES.get(self._stop_signal, 130))

    def _write_failed(self, exc: WriteError) -> UserError:
        """The one line for a failed write: the file, and which checkpoint is intact."""
        last = checkpoint_path(self.s.run_dir)
        if self._saved is not None and last.is_file():
            fix = ("free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                   else f"make {self.s.run_dir} writable")
            kept = (f"the previous checkpoint {last} (epoch {self._saved[0]}, step {self._saved[1]}) is intact; "
                    f"{fix}, then continue with --resume {self.s.run_dir}")
        else:
            kept = "no checkpoint was written yet"
        return UserError(f"{exc}; stopped at epoch {self._epoch}, step {self.state.step}; {kept}",
                         exit_code=exc.exit_code)

    def _out_of_memory(self, exc: Exception) -> UserError:
        """The one line for an out-of-memory error: where, what to lower, which checkpoint is intact."""
        what = (str(exc).strip().splitlines() or ["out of memory"])[0].split(". ")[0]
        where = f"out of memory on {self.rt.device} in epoch {self._epoch} after step {self.state.step} ({what})"
        last = checkpoint_path(self.s.run_dir)
        if self._saved is None or not last.is_file():
            return UserError(f"{where}; no checkpoint was written yet: start again with a smaller train.batch_size "
                             f"(retrain.batch_size for a retrain), data.image_size or search.space, or "
                             f"run.bf16=true", exit_code=1)
        return UserError(f"{where}; the previous checkpoint {last} (epoch {self._saved[0]}, step {self._saved[1]}) "
                         f"is intact: continue with --resume {self.s.run_dir} --set train.batch_size=<smaller> "
                         f"(retrain.batch_size for a retrain), or start a new run with a smaller data.image_size "
                         f"or search.space, or run.bf16=true", exit_code=1)

    # -- the loop
    def fit(self) -> LoopState:
        st = self.state
        start = self._t0 = time.perf_counter() - st.train_time_s
        self._stop_signal, self._epoch = 0, st.epoch + 1
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, self.request_stop) for sig in SIGNAL_EXIT_CODES}
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=self.console, disable=not (self.s.progress and self.rt.is_main),
                            transient=True)
        try:
            for csv_log in [self.metrics, *self.s.logs]:
                csv_log.start(st.step if self._resumed else None)
            with progress:
                for epoch in range(st.epoch + 1, self.s.epochs + 1):
                    if st.stopped_early:
                        break
                    self._epoch = epoch
                    finished = self._run_epoch(epoch, progress)
                    st.train_time_s = time.perf_counter() - start
                    if finished:
                        st.epoch = epoch
                    self.save("last")
                    if not finished or (epoch < self.s.epochs and self._should_stop()):
                        raise self._interrupted(epoch)
        except WriteError as exc:
            raise self._write_failed(exc) from None
        except torch.OutOfMemoryError as exc:
            raise self._out_of_memory(exc) from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return st

    def _run_epoch(self, epoch: int, progress: Progress) -> bool:
        """One epoch (or its remainder after a resume); False when stopped by a signal mid-way."""
        st, task = self.state, self.task
        extra_logs = task.begin_epoch(epoch)
        batches, n_steps = task.train_batches(epoch, st.step_in_epoch)
        bar = progress.add_task(f"{self.s.title} {epoch}/{self.s.epochs}", total=n_steps,
                                completed=st.step_in_epoch, info="")
        if self._sums is None:  # else restored from a mid-epoch checkpoint
            self._sums = EpochSums()
        acc, loss_sum = self._sums.acc, self._sums.loss
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
        self._sums = None
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
