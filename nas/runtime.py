"""Where and how a run executes: device, threads, seeds, mixed precision and torch.distributed.

Kept apart from the training code so that search and retrain set up the process the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
import torch.distributed as dist

from nas.config import RunConfig
from nas.errors import UserError


@dataclass
class Runtime:
    """The resolved execution setting of one process."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    bf16: bool = False
    channels_last: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local(self) -> "Runtime":
        """This process seen alone: for work every rank repeats in full (validation, test)."""
        return dataclasses.replace(self, world_size=1, rank=0)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on this process's device (CUDA or CPU) when ``run.bf16`` is set,
        else a no-op. Losses and optimiser state stay float32 either way."""
        if self.bf16 and self.device.type in ("cuda", "cpu"):
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _wants_distributed(setting: str) -> bool:
    env = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if setting == "false":
        return False
    if setting == "true" and not env:
        raise UserError("run.distributed: true, but this process was not started by torchrun "
                        "(WORLD_SIZE is not set); launch with `torchrun --nproc_per_node=N -m nas ...`")
    return env


def select_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"run.device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"run.device: {name} requested but CUDA is not available on this machine")
    return device


def setup_runtime(cfg: RunConfig) -> Runtime:
    """Initialise threads, determinism and (under torchrun) the process group."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world, local_rank = 0, 1, 0
    if _wants_distributed(cfg.distributed):
        rank = int(os.environ["RANK"])
        world = int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(cfg.device, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device=device, rank=rank, world_size=world, bf16=cfg.bf16,
                   channels_last=cfg.channels_last)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- distributed
def average_gradients(params: Iterable[torch.nn.Parameter], rt: Runtime) -> None:
    """All-reduce (mean) the gradients of `params` across ranks in one flat bucket."""
    if not rt.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= rt.world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def broadcast_module(module: torch.nn.Module, rt: Runtime) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not rt.distributed:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def all_reduce_sum(values: torch.Tensor, rt: Runtime) -> torch.Tensor:
    if rt.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_cat(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """Concatenate a per-rank tensor [n_i, ...] over ranks (sizes may differ)."""
    if not rt.distributed:
        return t
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(rt.world_size)]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    out = [torch.zeros_like(padded) for _ in range(rt.world_size)]
    dist.all_gather(out, padded)
    return torch.cat([o[: int(s.item())] for o, s in zip(out, sizes)])


def shutdown(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


def replicas_in_sync(module: torch.nn.Module, rt: Runtime) -> bool:
    """True when every rank holds bit-identical parameters (a checksum compared across ranks)."""
    if not rt.distributed:
        return True
    gen = torch.Generator().manual_seed(0)
    total = torch.zeros(2, dtype=torch.float64)
    for p in module.parameters():
        flat = p.detach().double().flatten().cpu()
        w = torch.rand(flat.numel(), generator=gen, dtype=torch.float64)
        total += torch.stack([flat.sum(), (flat * w).sum()])
    total = total.to(rt.device)
    gathered = [torch.zeros_like(total) for _ in range(rt.world_size)]
    dist.all_gather(gathered, total)
    return all(torch.equal(g, gathered[0]) for g in gathered)
