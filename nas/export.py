"""`nas export`: a trained run's network as a `torch.export` program that runs without skipnas.

The program includes the input scaling the network was trained with, so it takes raw pixels:

    input   uint8 [B, 3, H, W], RGB channel order, values 0..255 (an image array moved to
            channels-first); H and W multiples of `size_multiple` (16 for the U-Nets), any batch
    output  float32 [B, 1, H, W], the lesion probability (sigmoid of the network's target logit)

Inside: `x = image / 255`, the network, `sigmoid(logits[:, :1])`. Nothing else is normalised
(the networks are trained on [0, 1] RGB without mean/std). To get the mask `nas predict` writes,
resize the whole image to `image_size` x `image_size` (INTER_AREA), run the program, resize the
probability back to the image (bilinear) and threshold at 0.5. Those numbers travel inside the
file as the extra file `skipnas.json` (`torch.export.load(path, extra_files={"skipnas.json": ""})`).

The image size is exported as dynamic (`H = size_multiple * h`, `W = size_multiple * w`), so the
program also runs at other sizes (e.g. larger inputs), and it is checked at a second size against
the network; if export or that check fails at the network's size step, the next step (x2, up to
64) is tried, then a static program at `image_size` x `image_size` (batch still dynamic), with the
reason in `dynamic_reason`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Optional

import torch

from nas.errors import UserError
from nas.losses import target_probability
from nas.runs import atomic_write_bytes

FORMAT = "skipnas-export/1"
SIZE_STEP = 16             # the U-Nets pool 4 times
META_NAME = "skipnas.json"
MAX_SIDE = 8192            # largest H or W the dynamic program accepts
TOLERANCE = 1e-4           # max |probability difference| accepted between program and network


def size_multiple(model: torch.nn.Module) -> int:
    """What each side of the input must divide by: 16, or 2**(depth-1) for a deeper baseline.

    Looks through wrappers for a module with an int `depth`.
    """
    depths = [m.depth for m in model.modules() if isinstance(getattr(m, "depth", None), int)]
    return max([SIZE_STEP] + [2 ** (d - 1) for d in depths])


class RawImageModel(torch.nn.Module):
    """uint8 RGB [B, 3, H, W] -> lesion probability [B, 1, H, W]: the scaling, the network, the sigmoid."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return target_probability(self.model(image.float() / 255.0))


def _example(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g)


def _max_difference(program: torch.export.ExportedProgram, wrapper: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((program.module()(x) - wrapper(x)).abs().max())


def _export(wrapper: torch.nn.Module, size: int, step: Optional[int]) -> torch.export.ExportedProgram:
    """Export with a dynamic batch, and a dynamic size in multiples of `step` (None: static size)."""
    from torch.export import Dim

    shapes: dict[int, Any] = {0: Dim("batch", min=1, max=4096)}
    if step is not None:
        shapes[2] = step * Dim("h", min=1, max=MAX_SIDE // step)
        shapes[3] = step * Dim("w", min=1, max=MAX_SIDE // step)
    # batch 2 in the example: export specialises a dimension traced at size 1
    return torch.export.export(wrapper, (_example(2, size, size),), dynamic_shapes={"image": shapes})


def export_model(model: torch.nn.Module, image_size: int) -> tuple[torch.export.ExportedProgram, dict[str, Any]]:
    """(program, facts): a dynamic-size program checked at a second size, or a static one."""
    wrapper = RawImageModel(model).eval()
    base = size_multiple(model)
    reason = ""
    step: Optional[int] = base
    while step is not None and step <= 64:
        try:
            program = _export(wrapper, image_size, step)
            other = (image_size + step, image_size + 2 * step)
            diff = max(_max_difference(program, wrapper, _example(1, image_size, image_size, 1)),
                       _max_difference(program, wrapper, _example(3, *other, 2)))
            if diff <= TOLERANCE:
                return program, {"dynamic": True, "size_multiple": step, "max_difference": diff}
            reason = f"step {step}: program and network differ by {diff:.2e}"
        except Exception as exc:  # torch.export raises many types; the reason is reported
            reason = f"step {step}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
        step *= 2
    try:
        program = torch.export.export(wrapper, (_example(2, image_size, image_size),),
                                      dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=4096)}})
    except Exception as exc:
        raise UserError(f"export: torch.export cannot trace this model ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0][:200]})") from None
    diff = _max_difference(program, wrapper, _example(1, image_size, image_size, 1))
    if diff > TOLERANCE:
        raise UserError(f"export: the exported program differs from the network by {diff:.2e}")
    return program, {"dynamic": False, "size_multiple": base, "max_difference": diff, "dynamic_reason": reason}


def is_export_file(path: Path) -> bool:
    """A file written by `nas export` (a torch.export archive holding skipnas.json)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith(f"/extra/{META_NAME}") or n == META_NAME for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def export_run(run_dir: Path, out: Path, checkpoint: str = "best") -> dict[str, Any]:
    """Write `out` (a .pt2 file): the run's network as a `torch.export` program plus `skipnas.json`."""
    from nas.predict import load_trained_model, run_config

    run_dir, out = Path(run_dir), Path(out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a file name such as {out / 'model.pt2'}")
    if out.exists() and not is_export_file(out):
        raise UserError(f"--out {out}: already exists and is not a program written by nas export; "
                        "refusing to overwrite it")
    cfg, _ = run_config(run_dir, (), "export")
    model, ckpt = load_trained_model(run_dir, checkpoint, torch.device("cpu"))
    program, facts = export_model(model, cfg.data.image_size)
    meta = {
        "format": FORMAT, "model": ckpt["model_spec"]["label"], "run": str(run_dir), "checkpoint": checkpoint,
        "image_size": cfg.data.image_size, **facts,
        "input": "uint8 [B, 3, H, W], RGB, 0..255" + (
            f"; H, W multiples of {facts['size_multiple']}" if facts["dynamic"]
            else f"; H = W = {cfg.data.image_size} (static)"),
        "output": "float32 [B, 1, H, W], lesion probability",
        "preprocess": "resize the whole image (INTER_AREA) to image_size x image_size, as nas predict does; "
                      "no mean/std normalisation (the program divides by 255)",
        "postprocess": "resize the probability back to the image (bilinear); lesion where probability > 0.5",
    }
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files={META_NAME: json.dumps(meta, indent=2)})
    atomic_write_bytes(out, buf.getvalue())
    return {**meta, "out": str(out), "bytes": len(buf.getvalue())}
