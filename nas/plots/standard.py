"""The plots every training command leaves in `run_dir/plots/` when it finishes.

Called at the end of `nas search` / `nas retrain` (`nas evaluate` draws its predictions figure
itself, see `nas.predict`): a plotting problem must never turn a finished run into a failed
command, so each plot is tried on its own and a failure becomes a warning that says which plot
and why.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

from nas.plots.alphas import plot_alphas
from nas.plots.curves import plot_curves
from nas.plots.genotype import plot_genotype
from nas.plots.predictions import plot_predictions

KINDS = ("search", "retrain")


def _plans(run_dir: Path, kind: str) -> list[tuple[str, Callable[[], list[Path]]]]:
    """(name, thunk) for each plot that makes sense for this kind of run and these files."""
    plans: list[tuple[str, Callable[[], list[Path]]]] = [("curves", lambda: plot_curves(run_dir))]
    if kind == "search":
        plans.append(("alphas", lambda: plot_alphas(run_dir)))
    if kind == "retrain" and (run_dir / "genotype.yaml").is_file():
        plans.append(("genotype", lambda: plot_genotype(run_dir / "genotype.yaml")))
    if kind == "retrain" and (run_dir / "predictions" / "index.csv").is_file():
        plans.append(("predictions", lambda: plot_predictions(run_dir)))
    return plans


def write_standard_plots(run_dir: str | Path, kind: str) -> list[Path]:
    """Write the standard plots of a `kind` run (search: curves + alphas; retrain: curves,
    genotype when the run has one, predictions when the evaluator listed them).

    Never raises on a partial or odd run folder: each failing plot is reported with
    `warnings.warn` and skipped. Returns the files written.
    """
    run_dir = Path(run_dir)
    if kind not in KINDS:
        warnings.warn(f"plots: unknown run kind {kind!r} (expected {', '.join(KINDS)}); no plots written",
                      RuntimeWarning, stacklevel=2)
        return []
    written: list[Path] = []
    for name, make in _plans(run_dir, kind):
        try:
            written.extend(make())
        except Exception as exc:  # noqa: BLE001 - a plot must never fail the run that produced the data
            warnings.warn(f"plots: skipped {name} for {run_dir}: {exc}", RuntimeWarning, stacklevel=2)
    return written
