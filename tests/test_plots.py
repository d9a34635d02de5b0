"""Plots from generated run folders: any cell/node/op count, partial runs, clear missing-file errors."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from nas.errors import UserError
from nas.plots import (KNOWN_OPS, alpha_panels, curve_panels, op_color, panels_of, plot_alphas, plot_curves,
                       plot_genotype, plot_predictions, read_alphas, write_standard_plots)
from nas.plots.alphas import (build_cell_figure, build_overview_figure, build_parameter_free_figure,
                              overview_matrices, read_lambda)
from nas.plots.curves import build_curves_figure, read_metrics, step_positions
from nas.plots.genotype import build_cells_figure, build_network_figure, load_genotype_dict, op_mix

METRICS_COLUMNS = ["epoch", "step", "phase", "loss", "arch_loss", "dice", "jaccard", "jaccard_t", "accuracy",
                   "sensitivity", "specificity", "precision", "lr", "arch_lr", "beta_lambda", "images_per_s",
                   "time_s"]


# ----------------------------------------------------------------------------- run-folder builders
def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def make_search_run(root: Path, cells=("skip_1_1", "skip_2_1"), nodes=3, ops=KNOWN_OPS[:4],
                    epochs=2, steps_per_epoch=4, alpha_every=2, finished=True, with_lambda=True) -> Path:
    """A search run folder with alphas.csv and metrics.csv in the documented formats."""
    rng = np.random.default_rng(0)
    alpha_rows, metric_rows = [], []
    step = 0
    for epoch in range(1, epochs + 1):
        lam = 0.5 * epoch
        last_epoch = epoch == epochs
        n_steps = steps_per_epoch if (finished or not last_epoch) else steps_per_epoch // 2
        for s in range(1, n_steps + 1):
            step += 1
            metric_rows.append({"epoch": epoch, "step": step, "phase": "step", "loss": 1.0 / step,
                                "arch_loss": 1.1 / step, "lr": 0.025 / epoch, "arch_lr": 3e-4,
                                "beta_lambda": lam if with_lambda else None})
            if step % alpha_every == 0 or s == steps_per_epoch:
                frac = round(epoch - 1 + s / steps_per_epoch, 6)
                for cell in cells:
                    for node in range(1, nodes + 1):
                        raw = rng.normal(size=(node, len(ops)))
                        weight = _softmax(raw.ravel()).reshape(raw.shape)
                        for i in range(node):
                            for j, op in enumerate(ops):
                                alpha_rows.append({"epoch": frac, "step": step, "cell": cell, "group": f"node{node}",
                                                   "input": f"n{i}", "op": op, "alpha": raw[i, j],
                                                   "weight": weight[i, j]})
                    for block in ("ssb", "csb"):
                        raw = rng.normal(size=nodes)
                        weight = _softmax(raw) if block == "ssb" else 1 / (1 + np.exp(-raw))
                        for i in range(nodes):
                            alpha_rows.append({"epoch": frac, "step": step, "cell": cell, "group": block,
                                               "input": f"n{i + 1}", "op": "-", "alpha": raw[i], "weight": weight[i]})
        if finished or not last_epoch:
            common = {"epoch": epoch, "step": step, "dice": 0.5 + 0.1 * epoch, "jaccard": 0.4 + 0.1 * epoch,
                      "accuracy": 0.8, "sensitivity": 0.7, "specificity": 0.9, "precision": 0.6}
            metric_rows.append({**common, "phase": "train", "loss": 0.5, "lr": 0.025 / epoch, "arch_lr": 3e-4,
                                "beta_lambda": lam if with_lambda else None, "time_s": 10.0 * epoch})
            metric_rows.append({**common, "phase": "val", "loss": 0.6})
    run = root / "search_run"
    _write_csv(run / "alphas.csv", ["epoch", "step", "cell", "group", "input", "op", "alpha", "weight"], alpha_rows)
    _write_csv(run / "metrics.csv", METRICS_COLUMNS, metric_rows)
    return run


GENOTYPE = {
    "format": "skipnas-genotype/1",
    "search_space": "plot_test_space",  # not a shipped space: skips the backbone match check
    "backbone": {"in_channels": 3, "widths": [8, 16, 32, 64, 128], "nodes": 3, "node_width": 16,
                 "resample_down": "maxpool", "head_channels": 2},
    "source": {"run": "runs/x", "epoch": 30, "policy": "thesis", "k": 3},
    "cells": {
        "skip_1_1": {"edges": [{"to": 1, "from": 0, "op": "sep_conv_3x3", "weight": 0.41},
                               {"to": 1, "from": 0, "op": "dil_conv_5x5", "weight": 0.2},
                               {"to": 2, "from": 1, "op": "sep_conv_3x3", "weight": 0.3},
                               {"to": 3, "from": 0, "op": "spatial_sep_conv_7x7", "weight": 0.25}],
                     "ssb": {"gating": "softmax", "nodes": [1, 3], "weights": [0.6, 0.4]},
                     "csb": {"gating": "sigmoid", "nodes": [2, 3], "weights": [0.55, 0.52]}},
        "skip_3_2": {"edges": [{"to": 1, "from": 0, "op": "identity", "weight": 0.9}],
                     "ssb": {"gating": "softmax", "nodes": [1], "weights": [1.0]},
                     "csb": {"gating": "sigmoid", "nodes": [], "weights": []}},
        "skip_4_1": {"edges": [], "ssb": {"gating": "softmax", "nodes": [], "weights": []},
                     "csb": {"gating": "sigmoid", "nodes": [], "weights": []}},
    },
}


def write_genotype(path: Path, genotype=GENOTYPE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(genotype, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- alphas
def test_op_colors_fixed_and_deterministic():
    assert len({op_color(op) for op in KNOWN_OPS}) == len(KNOWN_OPS)
    assert op_color("sep_conv_3x3") == op_color("sep_conv_3x3")
    custom = op_color("my_custom_op")
    assert custom.startswith("#") and len(custom) == 7 and custom == op_color("my_custom_op")


def test_alpha_panels_from_rows_and_names():
    rows = [{"group": g} for g in ("node2", "csb", "node10", "node1", "ssb", "node2")]
    assert alpha_panels(rows) == ["ssb", "csb", "node1", "node2", "node10"]
    assert alpha_panels(["node1"]) == ["node1"]


@pytest.mark.parametrize("nodes, ops, cells", [
    (3, KNOWN_OPS, ("skip_1_1", "skip_2_1", "skip_3_2")),
    (2, ("sep_conv_3x3", "my_op"), ("skip_4_4",)),
    (5, ("zero", "identity", "avg_pool_3x3"), ("skip_1_1", "skip_1_2")),
])
def test_plot_alphas_any_shape(tmp_path, nodes, ops, cells):
    run = make_search_run(tmp_path, cells=cells, nodes=nodes, ops=ops)
    files = plot_alphas(run)
    names = sorted(p.name for p in files)
    assert names == sorted([f"alphas_{c}.png" for c in cells] + ["alphas_overview.png", "alphas_parameter_free.png"])
    assert all(p.is_file() and p.stat().st_size > 0 and p.parent == run / "plots" for p in files)
    log = read_alphas(run)
    fig = build_cell_figure(cells[0], log[cells[0]], "weights", read_lambda(run))
    assert panels_of(fig) == ["ssb", "csb"] + [f"node{i}" for i in range(1, nodes + 1)]
    assert panels_of(build_overview_figure(log, list(cells))) == ["final weight", "change vs uniform"]
    assert panels_of(build_parameter_free_figure(log, list(cells))) == list(cells)


def test_plot_alphas_options_raw_svg_cells_out(tmp_path):
    run = make_search_run(tmp_path, cells=("skip_1_1", "skip_2_1", "skip_3_1"))
    files = plot_alphas(run, cells=["skip_2_1"], kind="raw", fmt="svg", out_dir=tmp_path / "out")
    assert sorted(p.name for p in files) == ["alphas_overview.svg", "alphas_parameter_free.svg",
                                             "alphas_raw_skip_2_1.svg"]
    assert all(p.parent == tmp_path / "out" for p in files)
    with pytest.raises(UserError, match="no cell skip_9_9 .*skip_1_1"):
        plot_alphas(run, cells=["skip_9_9"])
    with pytest.raises(UserError, match="kind"):
        plot_alphas(run, kind="logits")
    with pytest.raises(UserError, match="format"):
        plot_alphas(run, fmt="jpg")


def test_overview_change_vs_uniform_hand_computed(tmp_path):
    """One cell, two ops, nodes 1 and 2: shares and their % change from 1/n_ops, by hand."""
    rows = []
    for group, inp, op, w in [("node1", "n0", "sep_conv_3x3", 0.6), ("node1", "n0", "zero", 0.4),
                              ("node2", "n0", "sep_conv_3x3", 0.2), ("node2", "n0", "zero", 0.3),
                              ("node2", "n1", "sep_conv_3x3", 0.3), ("node2", "n1", "zero", 0.2)]:
        rows.append({"epoch": 1.0, "step": 1, "cell": "skip_1_1", "group": group, "input": inp, "op": op,
                     "alpha": 0.0, "weight": w})
    run = tmp_path / "run"
    _write_csv(run / "alphas.csv", ["epoch", "step", "cell", "group", "input", "op", "alpha", "weight"], rows)
    ops, shares, change = overview_matrices(read_alphas(run), ["skip_1_1"])
    assert ops == ["zero", "sep_conv_3x3"]
    # zero: node1 0.4, node2 0.3 + 0.2 = 0.5 -> mean 0.45; sep_conv: (0.6 + 0.5) / 2 = 0.55
    assert shares[0] == pytest.approx([0.45, 0.55])
    # uniform share 1/2: 0.45 -> -10 %, 0.55 -> +10 %
    assert change[0] == pytest.approx([-10.0, 10.0])


def test_parameter_free_share_sums_node_weights(tmp_path):
    from nas.plots.alphas import op_share_over_time

    run = make_search_run(tmp_path, cells=("skip_1_1",), nodes=3, ops=KNOWN_OPS)
    x, shares = op_share_over_time(read_alphas(run)["skip_1_1"])
    totals = [sum(v[i] for v in shares.values()) for i in range(len(x))]
    assert all(math.isclose(t, 1.0, rel_tol=1e-6) for t in totals)  # node-level softmax: shares sum to 1
    assert x == sorted(x) and x[-1] == 2.0


def test_alphas_partial_run_truncated_last_line_and_no_metrics(tmp_path):
    run = make_search_run(tmp_path, epochs=1, steps_per_epoch=4, alpha_every=2, finished=False)
    (run / "metrics.csv").unlink()
    text = (run / "alphas.csv").read_text().splitlines()
    (run / "alphas.csv").write_text("\n".join(text[:-3]) + "\n" + text[-3][:10])  # a write in progress
    log = read_alphas(run)
    steps = {len(s.x) for g in log["skip_1_1"].values() for s in g.values()}
    assert steps == {1}  # the incomplete step 4 is dropped, step 2 kept
    assert len(plot_alphas(run)) == 4


def test_alphas_missing_file_is_named(tmp_path):
    with pytest.raises(UserError) as e:
        plot_alphas(tmp_path)
    assert str(tmp_path / "alphas.csv") in str(e.value) and "not found" in str(e.value)
    (tmp_path / "alphas.csv").write_text("epoch,step,cell,group,input,op,alpha,weight\n")
    with pytest.raises(UserError, match="no rows yet"):
        plot_alphas(tmp_path)


# ----------------------------------------------------------------------------- curves
def test_plot_curves_search_and_retrain(tmp_path):
    run = make_search_run(tmp_path)
    (file,) = plot_curves(run)
    assert file == run / "plots" / "curves.png" and file.stat().st_size > 0
    rows = read_metrics(run)
    assert curve_panels(rows) == ["loss", "dice", "jaccard", "accuracy", "lr", "lambda"]
    assert panels_of(build_curves_figure(rows, "t")) == curve_panels(rows)
    retrain = make_search_run(tmp_path / "r", with_lambda=False)
    assert curve_panels(read_metrics(retrain)) == ["loss", "dice", "jaccard", "accuracy", "lr"]
    assert plot_curves(retrain, fmt="pdf")[0].suffix == ".pdf"


def test_curves_partial_run_steps_only(tmp_path):
    run = make_search_run(tmp_path, epochs=1, steps_per_epoch=6, finished=False)
    rows = read_metrics(run)
    assert {r["phase"] for r in rows} == {"step"}
    assert step_positions(rows) == {1: 0.0, 2: 1 / 3, 3: 2 / 3}
    assert plot_curves(run)[0].is_file()


def test_step_positions_use_finished_epoch_length(tmp_path):
    run = make_search_run(tmp_path, epochs=2, steps_per_epoch=4, finished=False)
    pos = step_positions(read_metrics(run))
    assert pos[4] == 0.75 and pos[5] == 1.0 and pos[6] == 1.25


def test_curves_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match=r"metrics\.csv: not found"):
        plot_curves(tmp_path)


# ----------------------------------------------------------------------------- genotype
def test_plot_genotype(tmp_path):
    path = write_genotype(tmp_path / "run" / "genotype.yaml")
    files = plot_genotype(path)
    assert [p.name for p in files] == ["genotype_cells.png", "genotype_network.png"]
    assert all(p.parent == tmp_path / "run" / "plots" and p.stat().st_size > 0 for p in files)
    genotype = load_genotype_dict(path)
    assert panels_of(build_cells_figure(genotype, "t")) == ["skip_1_1", "skip_3_2"]  # skip_4_1 was dropped
    assert panels_of(build_network_figure(genotype, "t")) == ["network"]
    assert op_mix(genotype["cells"]["skip_1_1"]) == "sep3×2 ssep7 dil5"
    assert plot_genotype(path, tmp_path / "o", fmt="svg")[0] == tmp_path / "o" / "genotype_cells.svg"


def test_plot_genotype_more_nodes_and_no_kept_cell(tmp_path):
    g = yaml.safe_load(yaml.safe_dump(GENOTYPE))
    g["backbone"]["nodes"] = 5
    g["cells"]["skip_1_1"]["edges"].append({"to": 5, "from": 2, "op": "avg_pool_3x3", "weight": 0.1})
    assert len(plot_genotype(write_genotype(tmp_path / "a.yaml", g))) == 2
    empty = {**GENOTYPE, "cells": {"skip_1_1": GENOTYPE["cells"]["skip_4_1"]}}
    assert panels_of(build_cells_figure(empty, "t")) == ["(no kept cell)"]
    assert len(plot_genotype(write_genotype(tmp_path / "b.yaml", empty))) == 2


def test_genotype_figures_with_unregistered_op():
    g = yaml.safe_load(yaml.safe_dump(GENOTYPE))
    g["cells"]["skip_1_1"]["edges"][3]["op"] = "my_custom_op"  # drawn even if no registry knows it
    assert op_mix(g["cells"]["skip_1_1"]) == "sep3×2 my_custom_op dil5"
    assert panels_of(build_cells_figure(g, "t")) == ["skip_1_1", "skip_3_2"]
    assert panels_of(build_network_figure(g, "t")) == ["network"]


def test_genotype_errors_are_named(tmp_path):
    with pytest.raises(UserError, match=r"nope\.yaml: not found"):
        plot_genotype(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    g = yaml.safe_load(yaml.safe_dump(GENOTYPE))
    del g["cells"]["skip_1_1"]["edges"][0]["from"]
    write_genotype(bad, g)
    with pytest.raises(UserError, match="skip_1_1"):
        plot_genotype(bad)


# ----------------------------------------------------------------------------- predictions
def make_predictions_run(root: Path, n_images: int = 6, synthetic: bool = False) -> Path:
    run = root / "retrain_run"
    (run / "predictions").mkdir(parents=True)
    data = root / "data"
    data.mkdir()
    index, per_image = [], []
    for i in range(n_images):
        image_id = f"ISIC_{i:07d}"
        mask = np.zeros((40, 50), dtype=np.uint8)
        mask[10:30, 10 + i:30 + i] = 255
        pred = np.zeros((32, 32), dtype=np.uint8)
        pred[8:24, 8:24 + i] = 255
        Image.fromarray(pred).save(run / "predictions" / f"{image_id}.png")
        img_path = mask_path = ""
        if not synthetic:
            Image.fromarray(np.full((40, 50, 3), 40 * i % 255, dtype=np.uint8)).save(data / f"{image_id}.jpg")
            Image.fromarray(mask).save(data / f"{image_id}_segmentation.png")
            img_path, mask_path = str(data / f"{image_id}.jpg"), str(data / f"{image_id}_segmentation.png")
        index.append({"id": image_id, "image_path": img_path, "mask_path": mask_path,
                      "pred_path": f"predictions/{image_id}.png"})
        per_image.append({"id": image_id, "dice": 0.9 - 0.1 * i, "jaccard": 0.8 - 0.1 * i})
    _write_csv(run / "predictions" / "index.csv", ["id", "image_path", "mask_path", "pred_path"], index)
    _write_csv(run / "per_image.csv", ["id", "dice", "jaccard"], per_image)
    return run


def test_plot_predictions_best_and_worst(tmp_path):
    from nas.plots.predictions import select_cases

    run = make_predictions_run(tmp_path)
    (file,) = plot_predictions(run, n=2)
    assert file == run / "plots" / "predictions.png" and file.stat().st_size > 0
    cases = select_cases([("a", 0.9), ("b", 0.1), ("c", 0.5)], 2)
    assert [(t, i) for t, i, _ in cases] == [("best", "a"), ("best", "c"), ("worst", "b")]


def test_plot_predictions_from_an_evaluate_folder(tmp_path):
    run = make_predictions_run(tmp_path, n_images=3)
    moved = tmp_path / "saved_masks"
    (run / "predictions").rename(moved)  # nas evaluate --save-predictions DIR: index.csv lives in DIR
    index = moved / "index.csv"
    index.write_text(index.read_text().replace("predictions/", str(moved) + "/"))
    (file,) = plot_predictions(run, n=1, predictions_dir=moved, out_dir=tmp_path / "o")
    assert file == tmp_path / "o" / "predictions.png"


def test_plot_predictions_synthetic_without_images(tmp_path):
    run = make_predictions_run(tmp_path, n_images=3, synthetic=True)
    assert plot_predictions(run, n=4)[0].is_file()


def test_predictions_missing_files_are_named(tmp_path):
    run = make_predictions_run(tmp_path, n_images=2)
    (run / "predictions" / "ISIC_0000001.png").unlink()
    with pytest.raises(UserError, match=r"index\.csv: file predictions/ISIC_0000001\.png not found"):
        plot_predictions(run)
    (run / "predictions" / "index.csv").unlink()
    with pytest.raises(UserError, match=r"predictions/index\.csv: not found"):
        plot_predictions(run)


# ----------------------------------------------------------------------------- standard plots
def test_write_standard_plots_search_and_retrain(tmp_path):
    run = make_search_run(tmp_path, cells=("skip_1_1",))
    names = {p.name for p in write_standard_plots(run, "search")}
    assert names == {"curves.png", "alphas_skip_1_1.png", "alphas_overview.png", "alphas_parameter_free.png"}
    write_genotype(run / "genotype.yaml")
    names = {p.name for p in write_standard_plots(run, "retrain")}
    assert names == {"curves.png", "genotype_cells.png", "genotype_network.png"}


def test_write_standard_plots_never_raises_on_partial_run(tmp_path):
    run = tmp_path / "partial"
    run.mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert write_standard_plots(run, "search") == []
    messages = [str(w.message) for w in caught]
    assert any("curves" in m and "metrics.csv" in m for m in messages)
    assert any("alphas" in m and "alphas.csv" in m for m in messages)


# ----------------------------------------------------------------------------- CLI
def test_cli_plot_commands(tmp_path, capsys):
    from nas.cli import main

    run = make_search_run(tmp_path, cells=("skip_1_1", "skip_3_2"))
    assert main(["plot", "alphas", str(run), "--cell", "skip_3_2", "--raw", "--format", "svg",
                 "--out", str(tmp_path / "figs")]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == ["alphas_overview.svg", "alphas_parameter_free.svg",
                                                      "alphas_raw_skip_3_2.svg"]
    assert main(["plot", "curves", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "plots" / "curves.png")
    genotype = write_genotype(tmp_path / "g" / "genotype.yaml")
    assert main(["plot", "genotype", str(genotype), "--out", str(tmp_path / "gp")]) == 0
    assert len(capsys.readouterr().out.split()) == 2
    assert main(["plot", "predictions", str(run)]) == 2
    assert "per_image.csv: not found" in capsys.readouterr().err
    assert main(["plot", "alphas", str(run), "--cell", "skip_9_9"]) == 2
    assert "error: " in capsys.readouterr().err


def test_genotype_figures_name_absent_cells(tmp_path):
    """A cell written as `absent` (no mapping) is neither drawn nor mistaken for a dropped one."""
    from nas.plots.genotype import kept_cells

    g = yaml.safe_load(yaml.safe_dump(GENOTYPE))
    g["cells"]["skip_2_2"] = "absent"
    assert kept_cells(g) == ["skip_1_1", "skip_3_2"]
    assert panels_of(build_cells_figure(g, "t")) == ["skip_1_1", "skip_3_2"]
    (ax,) = build_network_figure(g, "t").axes
    assert ax.get_title() == "2 kept skip(s); dropped: skip_4_1; absent: skip_2_2"
    assert len(plot_genotype(write_genotype(tmp_path / "g.yaml", g))) == 2
