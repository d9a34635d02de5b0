"""`nas search`: bilevel DARTS search of the supernet's skip cells, written to a run folder."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from nas.architect import Architect, beta_lambda, weight_step
from nas.config import Config, config_to_dict
from nas.evaluation import count_parameters
from nas.loop import ALPHAS_COLUMNS, CsvLog, LoopSettings, StepResult, Trainer
from nas.losses import build_loss
from nas.runs import write_json
from nas.runtime import Runtime, average_gradients
from nas.search_signal import model_alpha_state, search_signal, signal_columns
from nas.search_space import SearchSpace, load_search_space
from nas.session import (build_optimizer, build_scheduler, data_loader, holds_run_folder, load_scheduler_state,
                         place_model, prepare_run)
from nas.supernet import Supernet


def _endless(loader: Iterable[Any]) -> Iterator[Any]:
    """Re-iterate the α loader as often as the weight loader needs (fresh batches, not a cache).

    A resume's skip applies to the first pass only: the sampler consumes it when iterated."""
    while True:
        yield from loader


class SearchTask:
    """One search step = an α step on a batch of the α-half, then a weight step on the w-half."""

    def __init__(self, cfg: Config, space: SearchSpace, data: Any, rt: Runtime, run_dir: Path) -> None:
        self.cfg, self.rt, self.data = cfg, rt, data
        self.space = space
        self.model = model = place_model(Supernet(space, alpha_init=cfg.search.alpha_init), cfg, rt)
        self.alpha_init = model_alpha_state(model)  # for the search signal; restored on resume
        self._average = lambda params: average_gradients(params, rt)
        self.loss_fn = build_loss(cfg.train.loss, cfg.train.bce_pos_weight)
        self.w_opt = build_optimizer(cfg.train, model.weight_parameters(), rt, cfg.run.lr_scaling)
        self.w_sched = build_scheduler(cfg.train, self.w_opt, cfg.train.epochs)
        self.a_opt = build_arch_optimizer(cfg, model.arch_parameters())
        self.architect = Architect(model, self.loss_fn, self.a_opt, order=cfg.search.order,
                                   w_lr=cfg.train.lr, w_momentum=cfg.train.momentum,
                                   w_weight_decay=cfg.train.weight_decay,
                                   include_blocks=cfg.search.beta_decay.include_blocks,
                                   autocast=rt.autocast, grad_hook=self._average,
                                   beta_mode=cfg.search.beta_decay.mode)
        self.w_loader, self.w_sampler = data_loader(data.w_half, cfg, rt, cfg.train.batch_size, train=True)
        self.a_loader, self.a_sampler = data_loader(data.a_half, cfg, rt, cfg.train.batch_size, train=True,
                                                    seed_offset=1)
        self.alphas = CsvLog(run_dir / "alphas.csv", ALPHAS_COLUMNS, enabled=rt.is_main)
        self.lam = 0.0
        self.arch_frozen = True
        self.resumed = False

    # -- LoopTask
    def train_batches(self, epoch: int, skip: int) -> tuple[Iterable[Any], int]:
        bs = self.cfg.train.batch_size
        n_steps = math.ceil(len(self.w_sampler.inner) / bs)
        self.w_sampler.set_epoch(epoch, skip * bs)
        self.a_sampler.set_epoch(epoch, skip * bs)
        self.data.w_half.set_epoch(epoch)
        self.data.a_half.set_epoch(epoch)
        return zip(self.w_loader, _endless(self.a_loader)), n_steps

    def begin_epoch(self, epoch: int) -> dict[str, float]:
        if epoch == 1 and not self.resumed:
            self.log_initial_alphas()  # α₀ as step 0 (the logs have just been started)
        bd = self.cfg.search.beta_decay
        self.arch_frozen = epoch <= self.cfg.search.warmup_epochs
        self.lam = beta_lambda(epoch - 1, bd.lambda_start, bd.lambda_step, bd.lambda_max) if bd.enabled else 0.0
        return {"beta_lambda": self.lam}

    def train_step(self, batch: Any, epoch: int) -> StepResult:
        (xw, yw), (xa, ya) = batch
        rt = self.rt
        xw, yw = rt.to_device(xw), yw.to(rt.device)
        extra: dict[str, float] = {}
        # During the α warm-up the α batch is still drawn (same data order) but never moved or used.
        if not self.arch_frozen:
            xa, ya = rt.to_device(xa), ya.to(rt.device)
            out = self.architect.step(xa, ya, xw, yw, lam=self.lam, w_optimizer=self.w_opt)
            extra["arch_loss"] = out["arch_loss"]
        loss, logits = weight_step(self.model, self.loss_fn, xw, yw, self.w_opt, self.cfg.train.grad_clip,
                                   autocast=rt.autocast, grad_hook=self._average)
        return StepResult(loss=loss, logits=logits, mask=yw, extra=extra)

    def end_epoch(self, epoch: int) -> None:
        self.w_sched.step()

    def signal(self) -> dict[str, Any]:
        """The search signal (:mod:`nas.search_signal`) of the current α."""
        d = self.cfg.discretize
        return search_signal(self.alpha_init, model_alpha_state(self.model), self.space, d.policy, d.k, d.threshold)

    def epoch_logs(self) -> dict[str, Any]:
        return signal_columns(self.signal())

    def learning_rates(self) -> dict[str, float]:
        return {"lr": self.w_opt.param_groups[0]["lr"], "arch_lr": self.a_opt.param_groups[0]["lr"]}

    def after_step(self, epoch_frac: float, step: int, last_in_epoch: bool) -> None:
        if step % self.cfg.log.alpha_every == 0 or last_in_epoch:
            rows = self.model.alpha_rows()
            self.alphas.write({"epoch": round(epoch_frac, 6), "step": step, **r} for r in rows)

    def state_dict(self) -> dict[str, Any]:
        return {"w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
                "w_sched": self.w_sched.state_dict(), "alpha_init": self.alpha_init}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        load_scheduler_state(self.w_sched, state["w_sched"], self.cfg.train.epochs)
        # Checkpoints written before the signal existed lack it: measure from the resume point.
        self.alpha_init = state.get("alpha_init") or model_alpha_state(self.model)
        self.resumed = True

    def log_initial_alphas(self) -> None:
        """α before the first step as rows of epoch 0, step 0 in ``alphas.csv``."""
        self.alphas.write({"epoch": 0.0, "step": 0, **r} for r in self.model.alpha_rows())


def build_arch_optimizer(cfg: Config, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The α optimiser of ``search.arch_optimizer`` (Adam, or RAdam as the thesis)."""
    sc = cfg.search
    cls = torch.optim.RAdam if sc.arch_optimizer == "radam" else torch.optim.Adam
    return cls(list(params), lr=sc.arch_lr, betas=tuple(sc.arch_betas), weight_decay=sc.arch_weight_decay)


@holds_run_folder
def search(cfg: Config, out_dir: Path, resume: bool = False) -> Path:
    """Run (or continue) a search into `out_dir`; returns the run folder."""
    space = None if resume else load_search_space(cfg.search.space)  # fail before any file is written
    run = prepare_run(cfg, Path(out_dir), resume, purpose="search")
    cfg, rt, data = run.cfg, run.rt, run.data
    if space is None:
        space = SearchSpace.from_dict(run.saved["search_space"])
    task = SearchTask(cfg, space, data, rt, run.dir)
    settings = LoopSettings(epochs=cfg.train.epochs, run_dir=run.dir, val_loader=run.val_loader,
                            loss_fn=task.loss_fn, progress=cfg.log.progress, title="search",
                            checkpoint_extra={"search_space": space.to_dict(), "splits": data.splits},
                            logs=[task.alphas])
    trainer = Trainer(task, settings, rt, config_to_dict(cfg))
    if resume:
        trainer.resume(run.checkpoint)
    run.start({"search_space.yaml": space.to_dict()})
    state = trainer.fit()
    if rt.is_main:
        write_json(run.dir / "summary.json", {
            "kind": "search", "model": f"supernet:{space.name}", "genotype": None,
            "params": count_parameters(task.model),
            "arch_params": sum(p.numel() for p in task.model.arch_parameters()),
            "train_time_s": round(state.train_time_s, 2), "epochs": state.epoch,
            "best_epoch": state.best_epoch, "best_val_dice": state.best_dice,
            "data": run.data_summary, "seed": cfg.run.seed,
            "signal": task.signal(),
        })
        run.standard_plots("search")
    run.close()
    return run.dir
