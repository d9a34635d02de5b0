"""Benchmark suites: validation (identical protocol), sequencing, skip/resume, report.

Training is faked: `nas.train.retrain`, `nas.search.search` and `nas.discretize.discretize_run`
are replaced by functions that write plausible run folders, so this tests the suite logic only.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import yaml

from nas.config import dump_config
from nas.errors import UserError
from nas.suite import load_suite, run_state, run_suite

REPO = Path(__file__).resolve().parents[1]


class FakeTraining:
    """Records every call; writes config.yaml + summary.json like the real commands do."""

    def __init__(self) -> None:
        self.retrains: list[tuple[str, int, bool, object]] = []
        self.searches: list[tuple[Path, bool, object]] = []
        self.discretized: list[tuple[Path, str, int]] = []
        self.return_record = False

    def retrain(self, cfg, out_dir: Path, resume: bool = False) -> dict:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(dump_config(cfg))
        label = cfg.model.name or Path(cfg.model.genotype).stem
        self.retrains.append((label, cfg.run.seed, resume, cfg))
        dice = 0.5 + 0.01 * cfg.run.seed + (0.1 if cfg.model.genotype else 0.0)
        summary = {"kind": "retrain", "model": cfg.model.name or "genotype", "genotype": cfg.model.genotype,
                   "params": 1000 * (cfg.model.width or 16), "macs": 10_000, "train_time_s": 1.0,
                   "test": {"dice": dice, "jaccard": dice - 0.1, "jaccard_t": 0.0, "accuracy": 0.9,
                            "sensitivity": 0.8, "specificity": 0.9},
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
    training = FakeTraining()
    for module, name in (("nas.train", "retrain"), ("nas.search", "search"), ("nas.discretize", "discretize_run")):
        fake_module = types.ModuleType(module)
        setattr(fake_module, name, getattr(training, name))
        monkeypatch.setitem(sys.modules, module, fake_module)
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
    assert [p.name for p in result.written] == ["report.md", "report.csv", "report_quality_vs_params.png",
                                                "report_metrics.png"]
    md = (out / "report.md").read_text()
    assert md.index("| unet_small |") < md.index("| searched_quick |") < md.index("| att |")
    assert "| searched_quick | 2 (seeds 1, 2) | **0.6150 ± 0.0071** |" in md
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
