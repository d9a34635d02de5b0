"""Suites on several workers, with real training in real processes (tiny: 32 px, few images).

Several `nas compare --suite FILE --out DIR` processes share the runs through the run folders'
locks; a killed worker's run is resumed by the next worker that looks; the report does not depend
on how many workers trained it.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 600  # generous: the machine running the tests may be busy
# Columns measured in wall time: they differ between any two trainings.
TIMING = ("train_time_s", "latency_ms_batch1")


def write_suite(tmp_path: Path, tiny: list[str], entries: list, epochs: int = 1, seeds=(1,)) -> Path:
    base = [o for o in tiny if not o.startswith(("run.seed", "data.synthetic_n"))]
    base += ["data.synthetic_n=24", f"retrain.epochs={epochs}", "model.width=4", "retrain.optimizer=adamw"]
    (tmp_path / "base.yaml").write_text("{}\n")
    suite = {"name": "w", "base": {"config": "base.yaml", "set": base}, "seeds": list(seeds), "entries": entries}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def nas(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "nas", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, **kw)


def finish(p: subprocess.Popen) -> str:
    out, _ = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0, out
    return out


def report_rows(out_dir: Path) -> list[dict]:
    """report.csv without the wall-time columns."""
    with open(out_dir / "report.csv", newline="") as f:
        return [{k: v for k, v in row.items() if not k.startswith(TIMING)} for row in csv.DictReader(f)]


def stats_text(out_dir: Path) -> str:
    return (out_dir / "report_stats.csv").read_text()


ENTRIES = [{"name": "unet4", "model": "unet"},
           {"name": "rnd", "random": {"samples": 2}, "set": ["model.width_multiplier=0.5"]}]


def test_two_workers_train_each_run_once_and_report_as_one_worker(tmp_path, tiny_overrides):
    path = write_suite(tmp_path, tiny_overrides, ENTRIES)
    finish(nas("compare", "--suite", str(path), "--out", str(tmp_path / "one")))
    two = finish(nas("compare", "--suite", str(path), "--out", str(tmp_path / "two"), "--workers", "2"))
    runs = ["unet4/seed1", "rnd/sample0/seed1", "rnd/sample1/seed1"]
    for run in runs:  # trained exactly once, by one of the two workers
        trained = [line for line in two.splitlines() if line.endswith(f"training in {tmp_path / 'two' / run}")]
        assert len(trained) == 1, two
        assert trained[0].startswith(("worker 1/2: ", "worker 2/2: "))
    assert "resuming" not in two
    # Which worker trains which run depends on start-up timing (one may claim all three before the
    # other has imported torch), so it is not asserted here; the kill test below shows two workers
    # holding different runs at once.
    assert report_rows(tmp_path / "one") == report_rows(tmp_path / "two")
    assert stats_text(tmp_path / "one") == stats_text(tmp_path / "two")
    assert not list((tmp_path / "two").rglob(".nas.lock"))


def test_a_killed_worker_s_run_is_resumed_by_another_and_reports_as_clean(tmp_path, tiny_overrides):
    """SIGKILL a worker mid-run (after its first checkpoint): the other worker takes the dead lock
    over and resumes that run from its checkpoint; the report equals an uninterrupted suite's."""
    path = write_suite(tmp_path, tiny_overrides, [ENTRIES[0]], epochs=4, seeds=(1, 2))
    out = tmp_path / "killed"
    workers = [nas("compare", "--suite", str(path), "--out", str(out)) for _ in range(2)]
    victim_run = out / "unet4" / "seed1"
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (victim_run / "checkpoints" / "last.pt").is_file():
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers)
            time.sleep(0.02)
        holder = int(yaml.safe_load((victim_run / ".nas.lock").read_text())["pid"])
        victim = next(w for w in workers if w.pid == holder)
        victim.send_signal(signal.SIGSTOP)  # frozen: it cannot finish the run while we look
        assert not (victim_run / "summary.json").exists(), "the run finished before the kill; use more epochs"
        victim.kill()
        victim.communicate(timeout=TIMEOUT)
        survivor = finish(next(w for w in workers if w is not victim))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.communicate()
    assert f"resuming in {victim_run}" in survivor
    with open(victim_run / "metrics.csv", newline="") as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f) if r["phase"] == "train"]
    assert epochs == [1, 2, 3, 4], epochs  # epoch 1 was not trained twice
    finish(nas("compare", "--suite", str(path), "--out", str(tmp_path / "clean")))
    assert report_rows(out) == report_rows(tmp_path / "clean")
    assert stats_text(out) == stats_text(tmp_path / "clean")
