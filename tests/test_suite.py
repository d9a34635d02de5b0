"""Benchmark suites: validation (identical protocol), sequencing, skip/resume, report.

Training is faked: `nas.train.retrain`, `nas.search.search`, `nas.discretize.discretize_run` and
`nas.predict.evaluate_run` are replaced by functions that write plausible run folders, so this
tests the suite logic only (random genotypes are sampled for real). One end-to-end test at the
end runs the real training and evaluation on tiny synthetic data.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from nas.config import dump_config
from nas.errors import UserError
from nas.suite import load_suite, run_state, run_suite

REPO = Path(__file__).resolve().parents[1]


IMAGES = ["i1", "i2", "i3", "i4"]


def write_scores(folder: Path, dice: list[float]) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    metrics = ("dice", "jaccard", "jaccard_t", "accuracy", "sensitivity", "specificity", "precision")
    with open(folder / "per_image.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *metrics])
        for image_id, d in zip(IMAGES, dice):
            w.writerow([image_id, d, d - 0.1, 0.0, 0.9, 0.8, 0.9, 0.7])
    mean = sum(dice) / len(dice)
    return {"dice": mean, "jaccard": mean - 0.1, "jaccard_t": 0.0, "accuracy": 0.9, "sensitivity": 0.8,
            "specificity": 0.9}


class FakeTraining:
    """Records every call; writes config.yaml + summary.json + per_image.csv like the real commands do."""

    def __init__(self) -> None:
        self.retrains: list[tuple[str, int, bool, object]] = []
        self.searches: list[tuple[Path, bool, object]] = []
        self.discretized: list[tuple[Path, str, int]] = []
        self.evaluations: list[tuple[Path, str, object, Path]] = []
        self.return_record = False

    def retrain(self, cfg, out_dir: Path, resume: bool = False) -> dict:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(dump_config(cfg))
        label = cfg.model.name or Path(cfg.model.genotype).stem
        self.retrains.append((label, cfg.run.seed, resume, cfg))
        dice = 0.5 + 0.01 * cfg.run.seed + (0.1 if cfg.model.genotype else 0.0)
        if cfg.model.genotype:
            (out_dir / "genotype.yaml").write_text(Path(cfg.model.genotype).read_text())
            if "random" in Path(cfg.model.genotype).read_text():
                dice -= 0.05
        summary = {"kind": "retrain", "model": cfg.model.name or "genotype", "genotype": cfg.model.genotype,
                   "params": 1000 * (cfg.model.width or 16), "macs": 10_000, "train_time_s": 1.0,
                   "test": write_scores(out_dir, [dice + d for d in (0.0, 0.02, -0.02, 0.01)]),
                   "latency_ms_batch1": 1.0, "seed": cfg.run.seed,
                   "data": {"root": cfg.data.root, "image_size": cfg.data.image_size, "split": cfg.data.split}}
        (out_dir / "summary.json").write_text(json.dumps(summary))
        return summary

    def search(self, cfg, out_dir: Path, resume: bool = False) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(dump_config(cfg))
        self.searches.append((out_dir, resume, cfg))
        (out_dir / "summary.json").write_text(json.dumps({"kind": "search", "seed": cfg.run.seed}))
        return out_dir

    def evaluate_run(self, run_dir: Path, data_root=None, layout=None, out_dir=None, save_predictions=None, **kw):
        self.evaluations.append((Path(run_dir), data_root, layout, Path(out_dir)))
        test = write_scores(Path(out_dir), [0.3, 0.4, 0.5, 0.6])
        Path(save_predictions).mkdir(parents=True, exist_ok=True)
        (Path(save_predictions) / "index.csv").write_text("id,image_path,mask_path,pred_path\n")
        summary = {"kind": "evaluate", "model": "m", "run": str(run_dir), "data": data_root, "images": 4,
                   "test": test}
        (Path(out_dir) / "summary.json").write_text(json.dumps(summary))
        return summary

    def discretize_run(self, run_dir: Path, policy: str, k: int):
        """Returns a written file, or (like nas.discretize today) a record with to_dict()."""
        self.discretized.append((Path(run_dir), policy, k))
        data = {"format": "skipnas-genotype/1", "cells": {}, "source": {"policy": policy, "k": k}}
        if self.return_record:
            return types.SimpleNamespace(to_dict=lambda: data)
        path = Path(run_dir) / "genotype.yaml"
        path.write_text(yaml.safe_dump(data))
        return path


@pytest.fixture
def fake(monkeypatch):
    """Install the fakes where `nas.suite` imports them from, and a fixed model list."""
    import nas.discretize as real_discretize

    training = FakeTraining()
    for module, name in (("nas.train", "retrain"), ("nas.search", "search"), ("nas.discretize", "discretize_run"),
                         ("nas.predict", "evaluate_run")):
        fake_module = types.ModuleType(module)
        setattr(fake_module, name, getattr(training, name))
        monkeypatch.setitem(sys.modules, module, fake_module)
    for name in ("random_genotype", "check_policy"):  # random sampling stays real
        setattr(sys.modules["nas.discretize"], name, getattr(real_discretize, name))

    def touch(fig, path):  # the report's charts are tested in test_report.py; here only their names
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")
        return path

    monkeypatch.setattr("nas.plots.compare.save_figure", touch)
    monkeypatch.setattr("nas.suite._known_models", lambda: ["attunet", "genotype", "r2unet", "unet"])
    return training


def write_suite(tmp_path: Path, entries: list, seeds=(1, 2), base_set=("data.image_size=32",), **top) -> Path:
    base = tmp_path / "base.yaml"
    base.write_text("data:\n  image_size: 64\ntrain:\n  epochs: 2\nretrain:\n  epochs: 2\n")
    suite = {"name": "t", "base": {"config": "base.yaml", "set": list(base_set)}, "seeds": list(seeds),
             "entries": entries, **top}
    path = tmp_path / "suite_t.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


ENTRIES = [{"name": "unet_small", "model": "unet", "set": ["model.width=8"]},
           {"name": "searched_quick", "search": {"set": ["train.epochs=1"], "k": 2}},
           {"name": "att", "model": "attunet"}]


def test_run_suite_trains_every_entry_and_seed_then_reports(tmp_path, fake):
    path = write_suite(tmp_path, ENTRIES)
    out = tmp_path / "out"
    result = run_suite(path, out)
    assert [(label, seed, resume) for label, seed, resume, _ in fake.retrains] == [
        ("unet", 1, False), ("unet", 2, False), ("searched_quick", 1, False), ("searched_quick", 2, False),
        ("attunet", 1, False), ("attunet", 2, False)]
    # one search, at the first seed, with its own budget; discretized with the entry's k
    ((search_dir, resumed, search_cfg),) = fake.searches
    assert search_dir == out / "searched_quick" / "search" and not resumed
    assert search_cfg.train.epochs == 1 and search_cfg.run.seed == 1
    assert fake.discretized == [(search_dir, "thesis", 2)]
    genotype = out / "genotypes" / "searched_quick.yaml"
    assert genotype.is_file() and fake.retrains[2][3].model.genotype == str(genotype.resolve())
    # identical data and budget for every retrain
    cfgs = [cfg for *_, cfg in fake.retrains]
    protocols = {(c.data.image_size, c.train.epochs, c.retrain.epochs, tuple(c.data.split)) for c in cfgs}
    assert protocols == {(32, 2, 2, (0.7, 0.15, 0.15))}
    assert cfgs[0].model.width == 8 and cfgs[4].model.width is None
    # the report, rows named after the entries, in entry order
    assert [p.name for p in result.written] == ["report.md", "report.csv", "report_stats.csv",
                                                "report_quality_vs_params.png", "report_metrics.png",
                                                "report_test-split_per_image.png"]
    md = (out / "report.md").read_text()
    assert md.index("| unet_small |") < md.index("| searched_quick |") < md.index("| att |")
    assert "| searched_quick | searched | 2 (seeds 1, 2) | **0.6175 ± 0.0071** |" in md
    assert result.comparison.reference == "unet_small"  # best baseline (same Dice as att: the first)
    assert (out / "suite.yaml").read_text() == path.read_text()


def test_rerun_skips_finished_and_resumes_interrupted(tmp_path, fake):
    path = write_suite(tmp_path, ENTRIES)
    out = tmp_path / "out"
    run_suite(path, out)
    assert len(fake.retrains) == 6 and len(fake.searches) == 1
    # an interrupted run: checkpoint, no summary
    interrupted = out / "att" / "seed2"
    (interrupted / "summary.json").unlink()
    (interrupted / "checkpoints").mkdir()
    (interrupted / "checkpoints" / "last.pt").write_bytes(b"x")
    assert run_state(interrupted, "retrain") == "resume"
    run_suite(path, out)
    assert [(label, seed, resume) for label, seed, resume, _ in fake.retrains[6:]] == [("attunet", 2, True)]
    assert len(fake.searches) == 1 and len(fake.discretized) == 1  # search and genotype reused
    assert run_state(interrupted, "retrain") == "done"


def test_a_run_held_by_another_process_is_skipped_then_trained(tmp_path, fake, monkeypatch, capsys):
    """A worker claims runs through their run folder's lock: a run another live process holds is
    left to it (other runs go first), and trained once that process lets it go."""
    monkeypatch.setattr("nas.suite.POLL_S", 0.05)
    path = write_suite(tmp_path, ENTRIES)
    out = tmp_path / "out"
    held = out / "unet_small" / "seed1"
    code = ("import sys, time\nfrom pathlib import Path\nfrom nas.lock import FolderLock\n"
            "lock = FolderLock(sys.argv[1]).acquire()\nprint('held', flush=True)\n"
            "while not Path(sys.argv[2]).exists():\n    time.sleep(0.05)\nlock.release()\n")
    last = out / "att" / "seed2" / "summary.json"  # the last run of the others
    holder = subprocess.Popen([sys.executable, "-c", code, str(held), str(last)], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout.readline().strip() == "held"
        run_suite(path, out)
        assert holder.wait(timeout=120) == 0
    finally:
        holder.kill()
        holder.wait()
    order = [(label, seed) for label, seed, _, _ in fake.retrains]
    assert sorted(order) == sorted({*order}) and len(order) == 6  # every run once
    assert order[-1] == ("unet", 1)  # the held run last
    assert "waiting for unet_small/seed1 (held by other workers)" in capsys.readouterr().err
    assert not list(out.rglob(".nas.lock"))


def test_interrupted_search_is_resumed(tmp_path, fake):
    fake.return_record = True
    path = write_suite(tmp_path, [ENTRIES[1]], seeds=[3])
    search_dir = tmp_path / "out" / "searched_quick" / "search"
    (search_dir / "checkpoints").mkdir(parents=True)
    (search_dir / "checkpoints" / "last.pt").write_bytes(b"x")
    run_suite(path, tmp_path / "out")
    assert [(d, r) for d, r, _ in fake.searches] == [(search_dir, True)]
    assert fake.searches[0][2].run.seed == 3
    saved = yaml.safe_load((tmp_path / "out" / "genotypes" / "searched_quick.yaml").read_text())
    assert saved["source"] == {"policy": "thesis", "k": 2}


def test_changed_protocol_refuses_to_reuse_runs(tmp_path, fake):
    out = tmp_path / "out"
    run_suite(write_suite(tmp_path, [ENTRIES[0]], seeds=[1]), out)
    with pytest.raises(UserError, match=r"entries\[0\] \(unet_small\): .*seed1 was run with data.image_size=32.* 48"):
        run_suite(write_suite(tmp_path, [ENTRIES[0]], seeds=[1], base_set=["data.image_size=48"]), out)


@pytest.mark.parametrize("entry, message", [
    ({"name": "big", "model": "unet", "set": ["data.image_size=128"]},
     "entries[2] (big): sets data.image_size; data, splits and budget must be identical across entries"),
    ({"name": "long", "model": "unet", "set": ["train.epochs=10"]}, "entries[2] (long): sets train.epochs; data"),
    ({"name": "s", "model": "unet", "set": ["run.seed=5"]}, "entries[2] (s): sets run.seed; data"),
    ({"name": "opt", "model": "unet", "set": ["retrain.lr=0.1"]}, "entries[2] (opt): sets retrain.lr; data"),
    ({"name": "sp", "model": "unet", "set": ["search.order=2"]}, "entries[2] (sp): sets search.order; data"),
    ({"name": "sd", "search": {"set": ["data.limit=5"]}}, "entries[2] (sd): search: sets data.limit"),
    ({"name": "m", "model": "unet", "set": ["model.name=attunet"]}, "entries[2] (m): sets model.name; use the"),
])
def test_entries_that_change_the_protocol_are_refused(tmp_path, entry, message):
    path = write_suite(tmp_path, [ENTRIES[0], ENTRIES[2], entry])
    with pytest.raises(UserError) as e:
        load_suite(path)
    assert str(e.value).startswith(f"suite {path}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_search_entries_may_set_search_keys(tmp_path, fake):
    path = write_suite(tmp_path, [{"name": "s", "search": {"set": ["search.warmup_epochs=1"]},
                                   "set": ["search.order=2", "model.width_multiplier=1.5"]}])
    suite = load_suite(path)
    cfg = suite.search_config(suite.entries[0])
    assert cfg.search.order == 2 and cfg.search.warmup_epochs == 1 and cfg.data.image_size == 32
    assert suite.retrain_config(suite.entries[0], 2).model.width_multiplier == 1.5


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.update(extra=1), "unknown key 'extra'"),
    (lambda s: s["entries"][0].update(width=3), "entries[0]: unknown key 'width'"),
    (lambda s: s["base"].update(config="missing.yaml"), "base: config: "),
    (lambda s: s["entries"].append({"name": "g", "genotype": "nope/genotype.yaml"}), "entries[1] (g): genotype: "),
    (lambda s: s["entries"].append({"name": "unet_small", "model": "unet"}), "entries[1] (unet_small): name: used"),
    (lambda s: s["entries"].append({"name": "x", "model": "unet", "genotype": "a.yaml"}), "exactly one of"),
    (lambda s: s["entries"].append({"name": "x", "model": "unte"}), "entries[1] (x): model: unknown model 'unte'"),
    (lambda s: s["entries"].append({"name": "x", "model": "unet", "set": ["model.widht=3"]}),
     "entries[1] (x): --set model.widht=3: model.widht: unknown key"),
    (lambda s: s["entries"].append({"name": "x", "model": "unet", "set": "model.width=3"}), "set: expected a list"),
    (lambda s: s.update(seeds=[1, 1]), "seeds: expected a non-empty list of distinct ints"),
    (lambda s: s.update(entries=[]), "entries: expected a non-empty list"),
    (lambda s: s["entries"].append({"name": "bad/name", "model": "unet"}), "folder-safe name"),
])
def test_bad_suite_files_are_named(tmp_path, fake, mutate, message):
    suite = {"name": "t", "base": {"config": "base.yaml"}, "seeds": [1], "entries": [dict(ENTRIES[0])]}
    mutate(suite)
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 1\n")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises(UserError) as e:
        load_suite(path)
    assert str(e.value).startswith(f"suite {path}") and message in str(e.value)
    with pytest.raises(UserError, match="file not found"):
        load_suite(tmp_path / "none.yaml")


def test_genotype_entry_paths_are_relative_to_the_suite(tmp_path, fake):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "best.yaml").write_text("format: skipnas-genotype/1\n")
    suite = load_suite(write_suite(tmp_path, [{"name": "mine", "genotype": "g/best.yaml"}], seeds=[4]))
    cfg = suite.retrain_config(suite.entries[0], 4)
    assert cfg.model.genotype == str((tmp_path / "g" / "best.yaml").resolve()) and cfg.model.name is None


def test_shipped_suites_load():  # real model registry: the baseline names must exist
    quick = load_suite(REPO / "experiments" / "suite_quick.yaml")
    assert [e.name for e in quick.entries if e.search] and len(quick.seeds) == 1
    cfg = quick.retrain_config(quick.entries[1], quick.seeds[0])
    assert cfg.data.image_size == 64 and cfg.retrain.epochs == 2 and cfg.data.root is None
    isic = load_suite(REPO / "experiments" / "suite_isic2017.yaml")
    assert len(isic.seeds) == 3 and {e.model for e in isic.entries if e.model} == {
        "unet", "r2unet", "attunet", "r2attunet", "unet3plus", "elunet", "improved_unet", "aernet", "mobilenetv2_unet"}
    cfg = isic.retrain_config(isic.entries[0], 1)
    assert cfg.data.image_size == 128 and cfg.retrain.epochs == 40 and cfg.data.root


def test_cli_compare_suite(tmp_path, fake, capsys):
    from nas.cli import main

    path = write_suite(tmp_path, [ENTRIES[0]], seeds=[1])
    assert main(["compare", "--suite", str(path), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "unet_small" in out and str(tmp_path / "o" / "report.md") in out
    assert main(["compare", "--suite", str(path), str(tmp_path)]) == 2


# ----------------------------------------------------------------------------- random controls
def test_random_entry_samples_genotypes_and_faces_the_search(tmp_path, fake):
    entries = [{"name": "s", "search": {"k": 2}, "set": ["model.width_multiplier=1.5"]},
               {"name": "rnd", "random": {"samples": 2, "seed": 10}},  # from: the only search entry
               {"name": "u", "model": "unet"}]
    path = write_suite(tmp_path, entries, base_set=("data.image_size=32", "search.space=tiny"))
    suite = load_suite(path)
    assert suite.entry("rnd").random.source == "s" and suite.random_pairs() == [("s", "rnd")]
    assert suite.random_settings(suite.entry("rnd")) == ("tiny", "thesis", 2, 0.9)
    out = tmp_path / "out"
    result = run_suite(path, out)
    random_runs = [(label, seed, cfg) for label, seed, _, cfg in fake.retrains if label.startswith("rnd")]
    assert [(label, seed) for label, seed, _ in random_runs] == [
        ("rnd-sample10", 1), ("rnd-sample10", 2), ("rnd-sample11", 1), ("rnd-sample11", 2)]
    assert all(cfg.model.width_multiplier == 1.5 for *_, cfg in random_runs)  # the search entry's width
    from nas.discretize import random_genotype
    from nas.search_space import load_search_space

    saved = yaml.safe_load((out / "genotypes" / "rnd-sample11.yaml").read_text())
    assert saved == random_genotype(load_search_space("tiny"), 11, "thesis", 2).to_dict()
    assert saved["source"]["random"] is True
    assert (out / "rnd" / "sample11" / "seed2" / "summary.json").is_file()
    row = result.comparison.datasets[0].table.row("rnd")
    assert row.kind == "random" and row.samples == [10, 11] and len(row.runs) == 4
    (vs,) = result.comparison.datasets[0].searched_vs_random
    assert (vs.model, vs.reference) == ("s", "rnd") and vs.diffs["dice"].mean == pytest.approx(0.05)
    md = (out / "report.md").read_text()
    assert "### Searched vs random" in md and "**s** vs rnd" in md
    # rerun: nothing retrained; a changed k would make other genotypes: refused, not mixed in
    n = len(fake.retrains)
    run_suite(path, out)
    assert len(fake.retrains) == n
    entries[0]["search"]["k"] = 1
    with pytest.raises(UserError, match=r"entries\[1\] \(rnd\): .*rnd-sample10\.yaml differs from a fresh random sample"):
        run_suite(write_suite(tmp_path, entries, base_set=("data.image_size=32", "search.space=tiny")), out)


@pytest.mark.parametrize("entries, message", [
    ([{"name": "r", "random": {"seed": 1}}], "entries[0] (r): random: samples: required"),
    ([{"name": "r", "random": {"samples": 0}}], "entries[0] (r): random: samples: expected an int >= 1, got 0"),
    ([{"name": "r", "random": {"samples": 1, "form": "s"}}], "entries[0] (r): random: unknown key 'form'"),
    ([{"name": "r", "random": {"samples": 1, "from": "u"}}, {"name": "u", "model": "unet"}],
     "entries[0] (r): random: from: no search entry named 'u' (search entries: none)"),
    ([{"name": "a", "search": {}}, {"name": "b", "search": {}}, {"name": "r", "random": {"samples": 1}}],
     "entries[2] (r): random: from: required, the suite has several search entries (a, b)"),
    ([{"name": "r", "random": {"samples": 1}, "set": ["search.order=2"]}], "entries[0] (r): sets search.order"),
])
def test_bad_random_entries(tmp_path, fake, entries, message):
    with pytest.raises(UserError) as e:
        load_suite(write_suite(tmp_path, entries))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_random_without_search_uses_the_base_config(tmp_path, fake):
    path = write_suite(tmp_path, [{"name": "r", "random": {"samples": 1}}, {"name": "u", "model": "unet"}],
                       base_set=("search.space=tiny", "discretize.k=1"))
    suite = load_suite(path)
    assert suite.entry("r").random.source is None and suite.random_settings(suite.entry("r")) == ("tiny", "thesis", 1, 0.9)


# ----------------------------------------------------------------------------- reference and external sets
def test_reference_from_the_suite_and_the_command_line(tmp_path, fake):
    path = write_suite(tmp_path, [ENTRIES[0], ENTRIES[2]], seeds=[1], reference="att")
    assert run_suite(path, tmp_path / "o").comparison.reference == "att"
    assert run_suite(path, tmp_path / "o", reference="unet_small").comparison.reference == "unet_small"
    with pytest.raises(UserError, match="--reference nope: no entry of .* has that name"):
        run_suite(path, tmp_path / "o", reference="nope")
    with pytest.raises(UserError, match=r"reference: no entry named 'x' \(entries: unet_small, att\)"):
        load_suite(write_suite(tmp_path, [ENTRIES[0], ENTRIES[2]], reference="x"))


def external_folder(root: Path, ids=("e1", "e2", "e3")) -> Path:
    import cv2
    import numpy as np

    for i in ids:
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "images" / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
        cv2.imwrite(str(root / "masks" / f"{i}_mask.png"), np.zeros((8, 8), np.uint8))
    return root


def test_evaluate_on_scores_every_run_once(tmp_path, fake):
    ext = external_folder(tmp_path / "ext")
    path = write_suite(tmp_path, [ENTRIES[0], ENTRIES[2]], seeds=[1, 2],
                       evaluate_on=[{"name": "ext", "root": "ext", "layout": "folder"}])
    out = tmp_path / "out"
    result = run_suite(path, out)
    runs = [out / e / f"seed{s}" for e in ("unet_small", "att") for s in (1, 2)]
    assert fake.evaluations == [(r, str(ext.resolve()), "folder", r / "evaluation-ext") for r in runs]
    assert [d.dataset for d in result.comparison.datasets] == ["test split", "ext"]
    md = (out / "report.md").read_text()
    assert f"## Dataset `ext` (`{ext.resolve()}`, 4 images)" in md
    run_suite(path, out)  # finished evaluations are kept
    assert len(fake.evaluations) == 4
    summary = runs[1] / "summary.json"
    os.utime(summary, (summary.stat().st_mtime + 10,) * 2)  # that run was retrained since
    run_suite(path, out)
    assert [e[0] for e in fake.evaluations[4:]] == [runs[1]]


def test_evaluate_on_limit_links_the_first_ids(tmp_path, fake):
    from nas.data.layouts import scan_folder
    from nas.data.splits import apply_limit

    ext = external_folder(tmp_path / "ext", ids=[f"e{i}" for i in range(6)])
    path = write_suite(tmp_path, [ENTRIES[0]], seeds=[1],
                       evaluate_on=[{"name": "ext", "root": "ext", "limit": 2}])
    run_suite(path, tmp_path / "out")
    view = tmp_path / "out" / "datasets" / "ext-limit2"
    assert fake.evaluations[0][1] == str(view.resolve()) and fake.evaluations[0][2] is None
    expected = sorted(r.id for r in apply_limit(scan_folder(ext).records, 2))
    assert sorted(r.id for r in scan_folder(view).records) == expected
    assert all(p.is_symlink() for p in (view / "images").iterdir())


@pytest.mark.parametrize("evaluate_on, message", [
    ([{"name": "test", "root": "ext"}], "evaluate_on[0]: name: expected a folder-safe name other than 'test'"),
    ([{"name": "e", "root": "ext"}, {"name": "e", "root": "ext"}], "evaluate_on[1] (e): name: used by another"),
    ([{"name": "e", "root": "ext", "layout": "ph3"}], "evaluate_on[0] (e): layout: expected auto or one of"),
    ([{"name": "e", "root": "ext", "limit": -1}], "evaluate_on[0] (e): limit: expected an int >= 1, got -1"),
    ([{"name": "e", "rot": "ext"}], "evaluate_on[0]: unknown key 'rot'"),
    ({"name": "e"}, "evaluate_on: expected a list of datasets"),
])
def test_bad_evaluate_on(tmp_path, fake, evaluate_on, message):
    external_folder(tmp_path / "ext")
    with pytest.raises(UserError) as e:
        load_suite(write_suite(tmp_path, [ENTRIES[0]], evaluate_on=evaluate_on))
    assert message in str(e.value)


def test_missing_external_folder_fails_before_training(tmp_path, fake):
    path = write_suite(tmp_path, [ENTRIES[0]], evaluate_on=[{"name": "e", "root": "nowhere"}])
    with pytest.raises(UserError, match=r"evaluate_on\[0\] \(e\): root: .*nowhere not found \(paths are relative"):
        run_suite(path, tmp_path / "o")
    (tmp_path / "empty").mkdir()
    path = write_suite(tmp_path, [ENTRIES[0]], evaluate_on=[{"name": "e", "root": "empty", "layout": "ph2"}])
    with pytest.raises(UserError, match=r"evaluate_on\[0\] \(e\): .*does not look like PH2"):
        run_suite(path, tmp_path / "o")
    assert fake.retrains == []


def test_data_root_is_relative_to_the_suite_file(tmp_path, fake):
    suite = load_suite(write_suite(tmp_path, [ENTRIES[0]], base_set=("data.root=data/x",)))
    assert suite.retrain_config(suite.entries[0], 1).data.root == str((tmp_path / "data" / "x").resolve())
    suite = load_suite(write_suite(tmp_path, [ENTRIES[0]], base_set=("data.root=null",)))
    assert suite.retrain_config(suite.entries[0], 1).data.root is None


def test_shipped_sample_suite_loads():
    suite = load_suite(REPO / "experiments" / "suite_isic2017_sample.yaml")
    cfg = suite.retrain_config(suite.entry("unet_w8"), 1)
    assert Path(cfg.data.root) == (REPO.parent / "shared" / "data" / "isic2017-sample").resolve()
    assert cfg.data.limit == 40 and suite.reference == "unet_w8" and suite.random_pairs() == [("searched", "random")]
    (ds,) = suite.evaluate_on
    assert ds.root == (REPO / "data" / "isic2017-sample-heldout").resolve() and ds.layout == "folder"
    raw = yaml.safe_load((REPO / "experiments" / "suite_isic2017_sample.yaml").read_text())
    roots = [o.partition("=")[2] for o in raw["base"]["set"] if o.startswith("data.root=")]
    assert roots and not any(Path(p).is_absolute() for p in roots + [d["root"] for d in raw["evaluate_on"]])


def test_make_heldout_set_tool(tmp_path):
    sample = REPO.parent / "shared" / "data" / "isic2017-sample"
    if not sample.is_dir():
        pytest.skip("real sample not available")
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from make_heldout_set import make_heldout
    finally:
        sys.path.pop(0)
    from nas.data.layouts import scan_folder
    from nas.data.splits import apply_limit

    ids = make_heldout(sample, 40, tmp_path / "held")
    records = scan_folder(sample).records
    trained = {r.id for r in apply_limit(records, 40)}
    assert len(ids) == 12 and not trained & set(ids) and trained | set(ids) == {r.id for r in records}
    scan = scan_folder(tmp_path / "held")
    assert scan.layout == "folder" and sorted(r.id for r in scan.records) == ids
    src = next(r for r in records if r.id == ids[0])
    assert (tmp_path / "held" / "images" / f"{ids[0]}.jpg").read_bytes() == Path(src.image_path).read_bytes()
    with pytest.raises(UserError, match="exists and is not an empty folder"):
        make_heldout(sample, 40, tmp_path / "held")
    with pytest.raises(UserError, match="inside the source dataset"):  # a rescan would train on the copy
        make_heldout(sample, 40, sample / "held")
    assert not (sample / "held").exists()


# ----------------------------------------------------------------------------- end to end (real training)
def test_suite_end_to_end_with_external_set_and_random_control(tmp_path, tiny_overrides):
    """Real retrain + evaluate_run on tiny synthetic data: every file the report promises is there."""
    from nas.data.synthetic import write_dataset

    write_dataset(tmp_path / "ext", n=6, size=40, seed=99)
    base = [o for o in tiny_overrides if not o.startswith(("run.seed", "data.synthetic_n"))]
    base += ["data.synthetic_n=24", "retrain.epochs=1", "model.width=4", "retrain.optimizer=adamw"]
    (tmp_path / "base.yaml").write_text("{}\n")
    suite = {"name": "e2e", "base": {"config": "base.yaml", "set": base}, "seeds": [1],
             "evaluate_on": [{"name": "ext", "root": "ext", "layout": "isic2017"}],
             "entries": [{"name": "unet4", "model": "unet"},
                         {"name": "rnd", "random": {"samples": 1}, "set": ["model.width_multiplier=0.5"]}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    result = run_suite(path, tmp_path / "out")
    run = tmp_path / "out" / "rnd" / "sample0" / "seed1"
    assert (run / "evaluation-ext" / "per_image.csv").is_file()
    assert (run / "evaluation-ext" / "predictions" / "index.csv").is_file()
    names = {p.name for p in result.written}
    assert {"report_ext_per_image.png", "report_ext_gallery_rnd.png", "report_ext_gallery_unet4.png"} <= names
    ext = result.comparison.datasets[1]
    assert ext.dataset == "ext" and ext.versus_reference[0].diffs["dice"].n_images == 6
    assert result.comparison.reference == "unet4" and ext.table.row("rnd").kind == "random"


def test_report_only_refuses_unfinished_runs_then_rewrites(tmp_path, fake):
    path = write_suite(tmp_path, ENTRIES)
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"--report-only: .*out: 7 of 7 runs are not finished \(searched_quick/search, "
                                        r"unet_small/seed1, unet_small/seed2, searched_quick/seed1, "):
        run_suite(path, out, report_only=True)
    assert fake.retrains == [] and not (out / "report.md").exists()
    run_suite(path, out)
    (out / "report.md").unlink()
    run_suite(path, out, report_only=True)
    assert (out / "report.md").is_file() and len(fake.retrains) == 6 and len(fake.searches) == 1


def test_search_entry_with_several_seeds(tmp_path, fake):
    """One search per seed, each genotype retrained at every suite seed; one report row whose
    genotypes (search seeds) are resampled like a random entry's; random: from: samples its space."""
    entries = [{"name": "unet_small", "model": "unet", "set": ["model.width=8"]},
               {"name": "multi", "search": {"seeds": [5, 6], "k": 2}},
               {"name": "rnd", "random": {"samples": 2, "from": "multi"}}]
    path = write_suite(tmp_path, entries, base_set=("data.image_size=32", "search.space=tiny"))
    out = tmp_path / "out"
    result = run_suite(path, out)
    assert [(d, c.run.seed) for d, _, c in fake.searches] == [(out / "multi" / "search-seed5", 5),
                                                            (out / "multi" / "search-seed6", 6)]
    for s in (5, 6):
        genotype = out / "genotypes" / f"multi-seed{s}.yaml"
        assert genotype.is_file()
        for seed in (1, 2):
            cfg = yaml.safe_load((out / "multi" / f"search{s}" / f"seed{seed}" / "config.yaml").read_text())
            assert cfg["model"]["genotype"] == str(genotype.resolve()) and cfg["run"]["seed"] == seed
    row = result.comparison.datasets[0].table.row("multi")
    assert row.kind == "searched" and row.samples == [5, 6] and len(row.runs) == 4
    ((vs_random,),) = [[c for c in ds.searched_vs_random] for ds in result.comparison.datasets]
    assert (vs_random.model, vs_random.reference) == ("multi", "rnd")
    versus = next(c for c in result.comparison.datasets[0].versus_reference if c.model == "multi")
    assert versus.diffs["dice"].n_samples == 2  # the two searched genotypes are resampled
    run_suite(path, out)  # finished: nothing is searched or trained again
    assert len(fake.searches) == 2 and len(fake.retrains) == 2 + 4 + 4


def test_bad_search_seeds(tmp_path, fake):
    path = write_suite(tmp_path, [{"name": "s", "search": {"seeds": [1, 1]}}])
    with pytest.raises(UserError, match=r"entries\[0\] \(s\): search: seeds: expected a non-empty list of distinct"):
        load_suite(path)
