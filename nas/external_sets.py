"""External test sets of a suite (`evaluate_on:`): every trained run scored once on each.

Cross-dataset testing (train on ISIC, test on PH2) is the standard protocol in lesion
segmentation. Each run is scored by `nas evaluate`'s own code (:func:`nas.predict.evaluate_run`)
into `RUN/evaluation-<name>/` with its predictions, which the report reads like any other
dataset. Resumable: an evaluation whose summary names the same data folder, has its per-image
scores and predictions, and is newer than the run's own summary is kept.

A `limit:` scores the first N pairs in the `data.limit` order through a folder of links that keeps
the dataset's own folder and file names, so its layout, image ids and prediction names stay as
they are.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from nas.errors import UserError


@dataclass
class EvalDataset:
    """An external test set every trained run is scored on."""

    name: str
    root: Path
    layout: str = "auto"
    limit: Optional[int] = None


def check_datasets(datasets: Sequence[EvalDataset], where: str) -> None:
    """Every folder exists and holds pairs in its layout (checked before training, so a typo does
    not surface after hours of it)."""
    from nas.data.layouts import scan_folder

    for i, ds in enumerate(datasets):
        w = f"{where}: evaluate_on[{i}] ({ds.name})"
        if not ds.root.is_dir():
            raise UserError(f"{w}: root: {ds.root} not found (paths are relative to the suite file)")
        try:
            found = scan_folder(ds.root, ds.layout)
        except UserError as exc:
            raise UserError(f"{w}: {exc}") from None
        if not found.records:
            raise UserError(f"{w}: root: no image/mask pairs found in {ds.root}")


def _view_path(ds: EvalDataset, out_dir: Path) -> Path:
    return out_dir / "datasets" / f"{ds.name}-limit{ds.limit}"


def evaluation_root(ds: EvalDataset, out_dir: Path) -> Path:
    """The folder a run is scored on: the dataset's own, or (with `limit:`) its linked view."""
    return _view_path(ds, out_dir).resolve() if ds.limit is not None else ds.root


def evaluations_done(datasets: Sequence[EvalDataset], run_dir: Path, out_dir: Path) -> bool:
    """Whether `run_dir` was scored on every dataset (what :func:`evaluate_runs` would skip)."""
    return all(evaluation_done(run_dir / f"evaluation-{ds.name}", evaluation_root(ds, out_dir), run_dir)
               for ds in datasets)


def linked_view(ds: EvalDataset, out_dir: Path) -> Path:
    """`out_dir/datasets/<name>-limit<N>/`: links to the first `limit` pairs of `ds`, under their
    own relative paths. Rebuilt when the dataset's first N pairs changed."""
    from nas.data.layouts import scan_folder
    from nas.data.splits import apply_limit

    assert ds.limit is not None
    view = _view_path(ds, out_dir)
    wanted: dict[Path, Path] = {}
    for rec in apply_limit(scan_folder(ds.root, ds.layout).records, ds.limit):
        for src in (rec.image_path, rec.mask_path):
            rel = Path(os.path.relpath(Path(src).resolve(), ds.root))
            if rel.parts and rel.parts[0] == "..":
                raise UserError(f"evaluate_on ({ds.name}): {src} lies outside {ds.root}")
            wanted[rel] = Path(src).resolve()
    present = {p.relative_to(view): p.resolve() for p in view.rglob("*") if p.is_symlink()} if view.is_dir() else {}
    if present != wanted:
        if view.exists():
            shutil.rmtree(view)  # a view built earlier by this suite, for another state of the dataset
        for rel, src in wanted.items():
            (view / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(src, view / rel)
    return view.resolve()


def evaluation_done(eval_dir: Path, data_root: Path, run_dir: Path) -> bool:
    """A finished evaluation of this run's current model on `data_root`, predictions included."""
    summary_path = eval_dir / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return (isinstance(summary, dict) and summary.get("kind") == "evaluate"
            and summary.get("data") == str(Path(data_root).resolve()) and (eval_dir / "per_image.csv").is_file()
            and (eval_dir / "predictions" / "index.csv").is_file()
            and summary_path.stat().st_mtime >= (run_dir / "summary.json").stat().st_mtime)


def evaluate_runs(datasets: Sequence[EvalDataset], run_dirs: Sequence[Path], out_dir: Path,
                  log: Callable[[str], None]) -> None:
    """Score every run on every dataset into `RUN/evaluation-<name>/` (predictions in its
    `predictions/`, for the report's gallery), skipping finished evaluations."""
    from nas.predict import evaluate_run

    for ds in datasets:
        root = linked_view(ds, out_dir) if ds.limit is not None else ds.root
        for run_dir in run_dirs:
            eval_dir = run_dir / f"evaluation-{ds.name}"
            if evaluation_done(eval_dir, root, run_dir):
                continue
            log(f"{run_dir}: evaluating on {ds.name} ({root})")
            evaluate_run(run_dir, data_root=str(root), layout=None if ds.layout == "auto" else ds.layout,
                         out_dir=eval_dir, save_predictions=eval_dir / "predictions")
