"""`nas retrain`: train any registered model (a searched genotype or a baseline) and test it."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

import torch

from nas.config import Config, config_to_dict, retrain_settings
from nas.errors import UserError
from nas.evaluation import EvalResult, count_macs, count_parameters, evaluate_whole_images, measure_latency
from nas.loop import LoopSettings, StepResult, Trainer, checkpoint_path, load_checkpoint
from nas.losses import LossFn, build_loss
from nas.metrics import METRIC_NAMES
from nas.runs import atomic_write_text, write_json
from nas.runtime import Runtime, average_gradients
from nas.session import (build_optimizer, build_scheduler, data_loader, holds_run_folder, load_scheduler_state,
                         place_model, prepare_run)

if TYPE_CHECKING:
    from nas.genotype import Genotype


def model_spec(cfg: Config) -> tuple[dict[str, Any], Optional[Genotype]]:
    """What is needed to rebuild the network later (saved in every checkpoint), and the genotype
    it was made from (loaded and checked here; None for a baseline)."""
    mc = cfg.model
    if (mc.name is None) == (mc.genotype is None):
        raise UserError("model: set exactly one of model.name (a baseline, see `nas retrain --list-models`) "
                        "or model.genotype (a genotype.yaml)")
    if mc.genotype is not None:
        from nas.genotype import load_genotype

        genotype = load_genotype(mc.genotype)
        return {"name": "genotype", "label": Path(mc.genotype).parent.name or Path(mc.genotype).stem,
                "kwargs": {"genotype": genotype.to_dict(), "width_multiplier": mc.width_multiplier,
                           "out_channels": mc.out_channels if mc.out_channels != 1 else None,
                           **mc.options}}, genotype
    from nas.models import list_models

    if mc.name.lower().replace("-", "_") not in list_models():
        raise UserError(f"model.name: unknown model '{mc.name}'; known: {', '.join(list_models())}")
    kwargs: dict[str, Any] = {"in_channels": 3, "out_channels": mc.out_channels, **mc.options}
    if mc.width is not None:
        kwargs["width"] = mc.width
    return {"name": mc.name, "label": mc.name, "kwargs": kwargs}, None


def build_from_spec(spec: dict[str, Any], genotype: Optional[Genotype] = None) -> torch.nn.Module:
    """The network of a model spec. A genotype spec holds the genotype's dict form, which the
    network parses and checks; ``genotype``, when given, is that genotype already loaded
    (see :func:`model_spec`) and is used instead, so it is not parsed again."""
    from nas.models import build_model

    kwargs = dict(spec["kwargs"])
    if spec["name"] == "genotype":
        if genotype is not None:
            kwargs["genotype"] = genotype
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return build_model(spec["name"], **kwargs)


def retrain_loss(cfg: Config) -> LossFn:
    """The loss retrain trains with, also the one `nas evaluate` reports: `train.loss` and
    `train.bce_pos_weight` with the `retrain.*` overrides applied."""
    tc = retrain_settings(cfg)
    return build_loss(tc.loss, tc.bce_pos_weight)


class RetrainTask:
    """One step = forward, loss, backward, (all-reduce), clip, optimiser step."""

    def __init__(self, cfg: Config, model: torch.nn.Module, data: Any, rt: Runtime) -> None:
        self.cfg, self.rt, self.data = cfg, rt, data
        self.tc = retrain_settings(cfg)
        self.model = model = place_model(model, cfg, rt)
        self.loss_fn = retrain_loss(cfg)
        self.opt = build_optimizer(self.tc, model.parameters(), rt, cfg.run.lr_scaling)
        self.sched = build_scheduler(self.tc, self.opt, self.tc.epochs)
        self.loader, self.sampler = data_loader(data.train, cfg, rt, self.tc.batch_size, train=True)

    def train_batches(self, epoch: int, skip: int) -> tuple[Iterable[Any], int]:
        self.sampler.set_epoch(epoch, skip * self.tc.batch_size)
        self.data.train.set_epoch(epoch)
        return self.loader, math.ceil(len(self.sampler.inner) / self.tc.batch_size)

    def begin_epoch(self, epoch: int) -> dict[str, float]:
        return {}

    def train_step(self, batch: Any, epoch: int) -> StepResult:
        image, mask = batch
        image, mask = self.rt.to_device(image), mask.to(self.rt.device)
        self.opt.zero_grad(set_to_none=True)
        with self.rt.autocast():
            out = self.model(image)
            # deep supervision (e.g. unet3plus) returns (main, side1, ...): sum the losses
            outputs = out if isinstance(out, (tuple, list)) else (out,)
            loss = sum(self.loss_fn(o.float(), mask) for o in outputs)
            logits = outputs[0]
        loss.backward()
        average_gradients(self.model.parameters(), self.rt)
        if self.tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
        self.opt.step()
        return StepResult(loss=float(loss.detach()), logits=logits.detach(), mask=mask)

    def end_epoch(self, epoch: int) -> None:
        self.sched.step()

    def epoch_logs(self) -> dict[str, Any]:
        return {}

    def learning_rates(self) -> dict[str, float]:
        return {"lr": self.opt.param_groups[0]["lr"]}

    def after_step(self, epoch_frac: float, step: int, last_in_epoch: bool) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict(), "sched": self.sched.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["opt"])
        load_scheduler_state(self.sched, state["sched"], self.tc.epochs)


def write_per_image(path: Path, ids: list[str], result: EvalResult) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", *METRIC_NAMES])
    for i, image_id in enumerate(ids):
        writer.writerow([image_id, *(f"{float(result.per_image[m][i]):.6f}" for m in METRIC_NAMES)])
    atomic_write_text(path, buf.getvalue())


@holds_run_folder
def retrain(cfg: Config, out_dir: Path, resume: bool = False) -> dict:
    """Train, validate every epoch, test the best checkpoint; returns the summary written."""
    if resume:  # the network is the one the checkpoint was trained as, not a re-read genotype file
        run = prepare_run(cfg, Path(out_dir), resume, purpose="train")
        spec, genotype = run.checkpoint["model_spec"], None
    else:
        spec, genotype = model_spec(cfg)
        run = prepare_run(cfg, Path(out_dir), resume, purpose="train")
    cfg, rt, data = run.cfg, run.rt, run.data
    torch.manual_seed(cfg.run.seed)
    task = RetrainTask(cfg, build_from_spec(spec, genotype), data, rt)
    extra = {"model_spec": spec, "splits": data.splits}
    settings = LoopSettings(epochs=task.tc.epochs, run_dir=run.dir, val_loader=run.val_loader,
                            loss_fn=task.loss_fn, early_stop_patience=cfg.train.early_stop_patience,
                            progress=cfg.log.progress, title=spec["label"], checkpoint_extra=extra)
    trainer = Trainer(task, settings, rt, config_to_dict(cfg))
    if resume:
        trainer.resume(run.checkpoint)
    run.start({"genotype.yaml": spec["kwargs"]["genotype"]} if spec["name"] == "genotype" else {})
    state = trainer.fit()
    best = checkpoint_path(run.dir, "best")
    if best.is_file():
        task.model.load_state_dict(load_checkpoint(best, rt.device)["model"])
    summary: dict[str, Any] = {
        "kind": "retrain", "model": spec["label"], "genotype": cfg.model.genotype,
        "params": count_parameters(task.model),
        "macs": count_macs(task.model, cfg.data.image_size),
        "train_time_s": round(state.train_time_s, 2), "epochs": state.epoch,
        "best_epoch": state.best_epoch, "best_val_dice": state.best_dice,
        "data": run.data_summary, "seed": cfg.run.seed,
    }
    if len(data.test):
        # scored as the challenge scores: whole images, metrics at each image's original size
        result = evaluate_whole_images(task.model, data.test.records, cfg.data.image_size, rt.local(), task.loss_fn,
                                       batch_size=cfg.train.eval_batch_size, workers=cfg.run.workers)
        summary["test"] = {k: v for k, v in result.summary.items() if k in METRIC_NAMES or k == "loss"}
        summary["test_pooled_dice"] = result.summary.get("pooled_dice")
        if rt.is_main:
            write_per_image(run.dir / "per_image.csv", data.test.ids, result)
    if rt.is_main:
        summary.update(measure_latency(task.model, cfg.data.image_size, rt))
        write_json(run.dir / "summary.json", summary)
        run.standard_plots("retrain")
    run.close()
    return summary
