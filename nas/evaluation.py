"""Model evaluation shared by the search, the training loop and `nas evaluate`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from nas.errors import UserError
from nas.losses import target_probability
from nas.metrics import MASK_THRESHOLD, MetricAccumulator
from nas.runtime import Runtime, all_gather_cat, all_reduce_sum

IN_CHANNELS = 3  # RGB: the input of every model that latency and MACs are measured on
LATENCY_BATCH = 8  # the batched latency's batch size
LATENCY_REPEATS = 5  # timed forward passes per batch size (the median counts)


@dataclass
class EvalResult:
    summary: dict[str, float]          # mean over images (+ pooled_dice, loss)
    per_image: dict[str, torch.Tensor]  # metric -> [N] in loader order (rank-local under DDP)


def gather_counts(acc: MetricAccumulator, rt: Runtime) -> torch.Tensor:
    """All ranks' per-image confusion counts, concatenated (on CPU)."""
    local = torch.cat(acc.counts) if acc.counts else torch.zeros((0, 4), dtype=torch.float64)
    if not rt.distributed:
        return local
    return all_gather_cat(local.to(rt.device), rt).cpu()


@torch.no_grad()
def evaluate_loader(model: torch.nn.Module, loader: Iterable, rt: Runtime,
                    loss_fn: Optional[Callable] = None) -> EvalResult:
    """Mean metrics over every image of `loader` (all ranks), at the loader's (training) geometry."""
    was_training = model.training
    model.eval()
    acc = MetricAccumulator()
    loss_sum = torch.zeros(2, dtype=torch.float64)
    for image, mask in loader:
        image, mask = rt.to_device(image), mask.to(rt.device)
        with rt.autocast():
            logits = model(image)
        prob = target_probability(logits)
        if loss_fn is not None:
            loss_sum += torch.tensor([float(loss_fn(logits.float(), mask)) * mask.shape[0], mask.shape[0]],
                                     dtype=torch.float64)
        acc.update(prob, mask)
    model.train(was_training)
    counts = gather_counts(acc, rt)
    summary = MetricAccumulator(counts=[counts]).summary() if counts.numel() else {}
    if loss_fn is not None:
        loss_sum = all_reduce_sum(loss_sum, rt)
        summary["loss"] = float(loss_sum[0] / max(loss_sum[1], 1))
    return EvalResult(summary=summary, per_image=acc.per_image())


@torch.no_grad()
def evaluate_whole_images(model: torch.nn.Module, records: Sequence, image_size: int, rt: Runtime,
                          loss_fn: Optional[Callable] = None, batch_size: int = 8, workers: int = 0,
                          keep_rgb: bool = False,
                          on_image: Optional[Callable[[Any, torch.Tensor], None]] = None) -> EvalResult:
    """Test scores the way the ISIC challenge scores: every image of `records` whole, metrics at its
    original size against its original mask (`> 128`); `on_image(item, probability)` sees each
    image's `WholeImage` and original-size probability (e.g. to write the mask PNG).

    `loss` is the one figure at the network input size (logits vs the mask resized to it), the mean
    over images. Runs on this process alone (pass `rt.local()` under DDP).
    """
    from nas.inference import WholeImageDataset, iter_predictions, records_reader, whole_image_loader

    dataset = WholeImageDataset(records_reader(records), len(records), image_size, keep_rgb=keep_rgb,
                                with_target=loss_fn is not None)
    acc = MetricAccumulator()
    loss_sum = 0.0
    for item, logits, prob in iter_predictions(model, whole_image_loader(dataset, workers), rt, batch_size):
        if item.error is not None:
            raise UserError(item.error)
        if item.mask is None:
            raise UserError(f"{records[item.index].id}: no ground-truth mask to score the prediction against")
        gt = torch.from_numpy(item.mask).to(prob.device) > MASK_THRESHOLD
        acc.update(prob[None, None], gt[None, None])
        if loss_fn is not None:
            loss_sum += float(loss_fn(logits[None].float(), item.target[None].to(logits.device)))
        if on_image is not None:
            on_image(item, prob)
    summary = acc.summary()
    if loss_fn is not None and records:
        summary["loss"] = loss_sum / len(records)
    return EvalResult(summary=summary, per_image=acc.per_image())


@torch.no_grad()
def measure_latency(model: torch.nn.Module, image_size: int, rt: Runtime) -> dict[str, float]:
    """Inference latency (ms/image) at batch 1 and at `LATENCY_BATCH`, and throughput (images/s)."""
    model.eval()
    out: dict[str, float] = {}
    for b, key in ((1, "latency_ms_batch1"), (LATENCY_BATCH, "latency_ms_batched")):
        x = rt.to_device(torch.rand(b, IN_CHANNELS, image_size, image_size))
        with rt.autocast():
            model(x)  # warm-up
        times = []
        for _ in range(LATENCY_REPEATS):
            if rt.device.type == "cuda":
                torch.cuda.synchronize(rt.device)
            t0 = time.perf_counter()
            with rt.autocast():
                model(x)
            if rt.device.type == "cuda":
                torch.cuda.synchronize(rt.device)
            times.append(time.perf_counter() - t0)
        times.sort()
        out[key] = 1000.0 * times[len(times) // 2] / b
    out["images_per_s"] = 1000.0 / out["latency_ms_batched"]
    return out


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, image_size: int) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (torch.utils.flop_counter FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, IN_CHANNELS, image_size, image_size, device=device))
    model.train(was_training)
    return int(counter.get_total_flops() // 2)
