"""The run folder's guarantees: one writer at a time (nas.lock), file modes and temporary files
of the atomic writers (nas.runs), and which `--out` folders a new run accepts."""

import json
import logging
import os
import stat
import subprocess
import sys

import pytest

from nas.cli import main
from nas.errors import UserError
from nas.lock import LOCK_NAME, FolderLock, this_host
from nas.runs import atomic_write_text, remove_stale_temp_files, temp_prefix


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ----------------------------------------------------------------------------- lock
def test_lock_holds_pid_and_host_and_is_gone_after_release(tmp_path):
    folder = tmp_path / "a" / "b"
    with FolderLock(folder) as lock:
        assert json.loads((folder / LOCK_NAME).read_text()) == {"pid": os.getpid(), "host": this_host()}
        assert lock.held
        with pytest.raises(UserError, match=rf"in use by another nas command \(this process \(pid {os.getpid()}\)\)"):
            FolderLock(folder).acquire()
    assert not (folder / LOCK_NAME).exists()
    # the folders it created were empty again, so they are gone; a folder with files stays
    assert not (tmp_path / "a").exists()
    with FolderLock(folder):
        (folder / "x").write_text("1")
    assert sorted(p.name for p in folder.iterdir()) == ["x"]


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    pid = _dead_pid()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": this_host()}) + "\n")
    with caplog.at_level(logging.WARNING, logger="nas.lock"), FolderLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert [r.getMessage() for r in caplog.records] == [
        f"warning: {tmp_path / LOCK_NAME}: taking over a stale lock of pid {pid} on {this_host()} (that process is gone)"]


def test_lock_of_a_live_pid_without_flock_is_refused(tmp_path, monkeypatch):
    """On a file system without flock only the pid tells: a live one on this host holds the lock."""
    monkeypatch.setattr(FolderLock, "_flock", staticmethod(lambda fd: None))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": sleeper.pid, "host": this_host()}) + "\n")
        with pytest.raises(UserError, match=rf"\(pid {sleeper.pid} on {this_host()}\); wait for it to finish"):
            FolderLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with FolderLock(tmp_path):  # now it is dead: taken over
        pass


def test_a_stale_lock_does_not_stop_a_new_search(tmp_path, tiny_overrides):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": this_host()}) + "\n")
    args = ["search", "--out", str(run)]
    for o in tiny_overrides + ["train.epochs=1"]:
        args += ["--set", o]
    assert main(args) == 0
    assert (run / "checkpoints" / "last.pt").is_file() and not (run / LOCK_NAME).exists()


# ----------------------------------------------------------------------------- atomic writes
def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        os.umask(0o002)
        path = atomic_write_text(tmp_path / "a.txt", "y")  # replacing keeps following it
        assert stat.S_IMODE(path.stat().st_mode) == 0o664
    finally:
        os.umask(old)


def test_temp_files_of_dead_writers_are_removed_on_the_next_write(tmp_path):
    dead = _dead_pid()
    left = tmp_path / f".last.pt.{this_host()}.{dead}.abcd1234.tmp"  # what a kill -9 during a save leaves
    mine = tmp_path / f"{temp_prefix('last.pt')}efgh5678.tmp"       # a write in flight in this process
    other_host = tmp_path / f".last.pt.node-17.{dead}.ijkl9012.tmp"   # cannot tell from here
    not_ours = tmp_path / ".last.pt.tmp"
    for p in (left, mine, other_host, not_ours):
        p.write_bytes(b"partial")
    assert remove_stale_temp_files(tmp_path) == [left]
    assert mine.exists() and other_host.exists() and not_ours.exists()
    left.write_bytes(b"partial")
    atomic_write_text(tmp_path / "sub" / "x.txt", "1")  # another folder: not swept
    assert left.exists()
    atomic_write_text(tmp_path / "last.pt", "1")  # the first write into the folder sweeps it
    assert not left.exists()


# ----------------------------------------------------------------------------- --out rules
def _search(out, overrides, *extra):
    args = ["search", "--out", str(out), *extra]
    for o in overrides:
        args += ["--set", o]
    return main(args)


def test_out_may_be_an_empty_folder(tmp_path, tiny_overrides):
    (tmp_path / "run").mkdir()
    assert _search(tmp_path / "run", tiny_overrides + ["train.epochs=1"]) == 0


def test_out_holding_a_failed_start_is_started_again_cleanly(tmp_path, tiny_overrides, monkeypatch, capsys):
    """A run that stopped before its first checkpoint (here a NaN loss) may be started again in
    the same folder; its files are replaced, none of them survives into the new run."""
    from nas import search as search_mod

    original = search_mod.SearchTask.train_step

    def nan_step(self, batch, epoch):
        out = original(self, batch, epoch)
        out.loss = float("nan")
        return out

    run = tmp_path / "run"
    monkeypatch.setattr(search_mod.SearchTask, "train_step", nan_step)
    assert _search(run, tiny_overrides + ["train.epochs=1", "train.lr=0.5"]) == 1
    assert "loss became nan" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["alphas.csv", "config.yaml", "metrics.csv",
                                                     "search_space.yaml", "splits.json"]
    with (run / "metrics.csv").open("a") as f:
        f.write("9,9,step,0.5\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.pt").write_bytes(b"from the failed start")
    monkeypatch.undo()
    assert _search(run, tiny_overrides + ["train.epochs=1"]) == 0
    assert "lr: 0.025" in (run / "config.yaml").read_text()
    with (run / "metrics.csv").open() as f:
        assert [line.split(",")[:3] for line in f][1:3] == [["1", "1", "step"], ["1", "2", "step"]]
    assert "9,9,step" not in (run / "metrics.csv").read_text()
    assert (run / "checkpoints" / "best.pt").read_bytes() != b"from the failed start"
