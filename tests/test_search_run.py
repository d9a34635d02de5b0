"""`nas search` end to end: the run folder, determinism, kill-and-resume equality, NaN stop."""

import csv
import json

import pytest
import torch
import yaml

from nas.cli import main
from nas.config import load_config
from nas.loop import Trainer
from nas.search import search


def _params(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    return ckpt["model"]


def test_search_writes_run_folder(tmp_path, tiny_overrides):
    out = tmp_path / "run"
    args = ["search", "--out", str(out)]
    for o in tiny_overrides + ["train.epochs=1", "data.image_size=64", "search.space=unet_fullscale",
                               "data.synthetic_n=12", "train.batch_size=2"]:
        args += ["--set", o]
    assert main(args) == 0
    for name in ("config.yaml", "search_space.yaml", "splits.json", "metrics.csv", "alphas.csv",
                 "checkpoints/last.pt", "summary.json"):
        assert (out / name).is_file(), name
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["image_size"] == 64
    space = yaml.safe_load((out / "search_space.yaml").read_text())
    assert len(space["skips"]) == 16
    with (out / "alphas.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["cell"] for r in rows} == {f"skip_{e}_{d}" for e in range(1, 5) for d in range(1, 5)}
    assert {r["group"] for r in rows} == {"node1", "node2", "node3", "ssb", "csb"}
    with (out / "metrics.csv").open() as f:
        phases = [r["phase"] for r in csv.DictReader(f)]
    assert "step" in phases and "train" in phases and "val" in phases
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "search" and summary["epochs"] == 1
    splits = json.loads((out / "splits.json").read_text())
    assert set(splits["w_half"]).isdisjoint(splits["a_half"])


def test_same_seed_same_alphas_bit_for_bit(tmp_path, tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["train.epochs=1"])
    a = _params(search(cfg, tmp_path / "a"))
    b = _params(search(cfg, tmp_path / "b"))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_kill_and_resume_ends_identical(tmp_path, tiny_overrides, monkeypatch, caplog, interrupt_at_step,
                                       log_rows):
    cfg = load_config(None, tiny_overrides)
    straight = _params(search(cfg, tmp_path / "straight"))

    # Interrupt (SIGINT, as Ctrl-C) in the middle of epoch 2 (3 steps per epoch), then resume.
    original = interrupt_at_step(4)
    run = tmp_path / "interrupted"
    with pytest.raises(Exception, match="interrupted at epoch 2"):
        search(cfg, run)
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["loop"]["step"] == 4 and ckpt["loop"]["epoch"] == 1
    assert ckpt["epoch_sums"]["counts"].shape == (4, 4)  # the 4 images of step 4, as (tp, fp, fn, tn)
    # A kill or a full disk during an append leaves a torn last row: in metrics.csv one cut right
    # after its step field (which a step filter alone would keep), in alphas.csv one cut before it.
    with (run / "metrics.csv").open("a") as f:
        f.write("2,4")
    with (run / "alphas.csv").open("a") as f:
        f.write("1.3")
    monkeypatch.setattr(Trainer, "fit", original)
    search(cfg, run, resume=True)
    assert sum("dropped a partial last row" in r.message for r in caplog.records) == 2
    resumed = _params(run)
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    steps = [int(r["step"]) for r in log_rows(run) if r["phase"] == "step"]
    assert steps == sorted(set(steps)) == list(range(1, 7))
    # The interrupted epoch's train row averages all its steps, before and after the resume.
    assert log_rows(run) == log_rows(tmp_path / "straight")
    assert log_rows(run, "alphas.csv") == log_rows(tmp_path / "straight", "alphas.csv")


def test_resume_refuses_missing_checkpoint(tmp_path, tiny_overrides):
    assert main(["search", "--resume", str(tmp_path / "nothing")]) == 2


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_overrides, monkeypatch):
    from nas import search as search_mod

    cfg = load_config(None, tiny_overrides)
    calls = {"n": 0}
    original = search_mod.SearchTask.train_step

    def bad_step(self, batch, epoch):
        calls["n"] += 1
        out = original(self, batch, epoch)
        if calls["n"] == 5:
            out.loss = float("nan")
        return out

    monkeypatch.setattr(search_mod.SearchTask, "train_step", bad_step)
    with pytest.raises(Exception, match=r"epoch 2, step 5"):
        search(cfg, tmp_path / "nan")
    ckpt = torch.load(tmp_path / "nan" / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["loop"]["epoch"] == 1


def _image_keys(dataset):
    return {dataset[i][0].numpy().tobytes() for i in range(len(dataset))}


def test_alpha_steps_see_the_alpha_half_and_weight_steps_the_weight_half(tmp_path, tiny_overrides, monkeypatch):
    from nas import search as search_mod

    seen = {"alpha": [], "weight": []}
    original_arch_step = search_mod.Architect.step
    original_weight_step = search_mod.weight_step

    def arch_step(self, x_val, y_val, *args, **kwargs):
        seen["alpha"].append(x_val.clone())
        return original_arch_step(self, x_val, y_val, *args, **kwargs)

    def w_step(model, loss_fn, x, *args, **kwargs):
        seen["weight"].append(x.clone())
        return original_weight_step(model, loss_fn, x, *args, **kwargs)

    monkeypatch.setattr(search_mod.Architect, "step", arch_step)
    monkeypatch.setattr(search_mod, "weight_step", w_step)
    tasks = []
    original_init = search_mod.SearchTask.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        tasks.append(self)

    monkeypatch.setattr(search_mod.SearchTask, "__init__", init)
    cfg = load_config(None, tiny_overrides + ["train.epochs=1", "data.augment.enabled=false"])
    search(cfg, tmp_path / "run")
    data = tasks[0].data
    a_keys, w_keys = _image_keys(data.a_half), _image_keys(data.w_half)
    assert a_keys.isdisjoint(w_keys)
    assert seen["alpha"] and seen["weight"]
    for x in seen["alpha"]:
        assert all(img.numpy().tobytes() in a_keys for img in x)
    for x in seen["weight"]:
        assert all(img.numpy().tobytes() in w_keys for img in x)


def test_lambda_follows_the_schedule_from_the_first_epoch(tmp_path, tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["train.epochs=3", "search.beta_decay.lambda_start=0.25",
                                              "search.beta_decay.lambda_step=0.5", "search.beta_decay.lambda_max=0.9"])
    run = search(cfg, tmp_path / "run")
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    by_epoch = {int(r["epoch"]): float(r["beta_lambda"]) for r in rows if r["phase"] == "train"}
    assert by_epoch == {1: 0.25, 2: 0.75, 3: 0.9}
    assert {float(r["beta_lambda"]) for r in rows if r["phase"] == "step" and r["epoch"] == "2"} == {0.75}


def test_a_default_search_moves_alpha_and_records_its_signal(tmp_path, tiny_overrides):
    """With the shipped α settings, one short search moves α far beyond their initial spread;
    the signal is logged per epoch and in summary.json, and α₀ is row 0 of alphas.csv."""
    cfg = load_config(None, tiny_overrides)
    run = search(cfg, tmp_path / "run")
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    init = ckpt["task"]["alpha_init"]
    moved = [float((ckpt["model"][f"cells.{c}.node_alphas.{i - 1}"].double() - init[c][f"node{i}"]).abs().max())
             for c in init for i in (1, 2)]
    assert min(moved) > 0
    summary = json.loads((run / "summary.json").read_text())["signal"]
    assert summary["alpha_move_ratio"] > 3, summary  # old defaults: 0.002
    assert summary["init_agreement"] < 0.9
    with (run / "metrics.csv").open() as f:
        train = [r for r in csv.DictReader(f) if r["phase"] == "train"]
    assert [float(r["alpha_move"]) > 0 for r in train] == [True, True]
    assert float(train[-1]["top_gain"]) == pytest.approx(summary["top_gain"])
    with (run / "alphas.csv").open() as f:
        first = [r for r in csv.DictReader(f) if r["step"] == "0"]
    assert len(first) == sum(t.numel() for c in init.values() for t in c.values())


def test_a_run_of_an_earlier_version_resumes_with_the_alpha_recipe_it_started_with(tmp_path, tiny_overrides):
    """Runs written before `search.arch_optimizer` and `search.beta_decay.mode` existed used RAdam
    and the plain β-decay gradient; a resume must not switch them to today's defaults."""
    out = tmp_path / "old"
    args = ["search", "--out", str(out), *[a for o in tiny_overrides + ["train.epochs=1", "search.arch_optimizer=radam",
                                                                       "search.beta_decay.mode=gradient"]
                                           for a in ("--set", o)]]
    assert main(args) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["search"]["arch_optimizer"], saved["search"]["beta_decay"]["mode"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["search", "--resume", str(out), "--set", "train.epochs=2"]) == 0
    resumed = yaml.safe_load((out / "config.yaml").read_text())
    assert resumed["search"]["arch_optimizer"] == "radam" and resumed["search"]["beta_decay"]["mode"] == "gradient"
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert "amsgrad" not in ckpt["task"]["a_opt"]["param_groups"][0]  # torch.optim.RAdam's state, not Adam's
