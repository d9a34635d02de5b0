"""Figures from run-folder files only (alphas.csv, metrics.csv, genotype.yaml, per_image.csv,
predictions/): they work on copied, partial or still-running runs, never touch a model, and use
matplotlib's Agg-compatible object API (no pyplot, no display, no graphviz).

- `plot_alphas`: architecture weights per cell, overview heatmap, parameter-free share.
- `plot_curves`: losses, Dice, Jaccard, accuracy, learning rates, λ.
- `plot_genotype`: kept cells as graphs and the U-Net with its kept skips.
- `plot_predictions`: best / worst test images by Dice.
- `write_standard_plots`: what a finished command writes into `run_dir/plots/`.
"""

from nas.plots.alphas import alpha_panels, plot_alphas, read_alphas
from nas.plots.common import KNOWN_OPS, PARAMETER_FREE_OPS, op_color, panels_of
from nas.plots.curves import curve_panels, plot_curves
from nas.plots.genotype import load_genotype_dict, plot_genotype
from nas.plots.predictions import plot_predictions
from nas.plots.standard import write_standard_plots

__all__ = ["plot_alphas", "plot_curves", "plot_genotype", "plot_predictions", "write_standard_plots",
           "alpha_panels", "curve_panels", "read_alphas", "load_genotype_dict", "op_color", "panels_of",
           "KNOWN_OPS", "PARAMETER_FREE_OPS"]
