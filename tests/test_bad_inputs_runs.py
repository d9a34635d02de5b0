"""Bad-input corpus of the run folder, the process and I/O: `--out` rules, failed resumes, locks,
unwritable folders and interrupts during start-up.

Every case drives the CLI in-process (`nas.cli.main`) and asserts the documented exit code, one
stderr line (`error: ...`, or `interrupted ...` for a signal), no traceback, and that nothing was
lost: the case folder (the user's files, run folders, checkpoints, lock files) is byte-for-byte as
before, with no temporary file, lock or folder left behind.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from nas.cli import main

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- shared runs
def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One finished 1-epoch `tiny` search and one finished 1-epoch U-Net retrain, copied per case."""
    from conftest import TINY

    base = tmp_path_factory.mktemp("runs")
    sets = _sets(TINY + ["train.epochs=1"])
    assert main(["search", "--out", str(base / "search"), *sets]) == 0
    assert main(["retrain", "--model", "unet", "--set", "model.width=4", "--out", str(base / "retrain"), *sets]) == 0
    return {"search": base / "search", "retrain": base / "retrain", "sets": sets}


@dataclass
class Ctx:
    tmp: Path
    runs: dict
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest

    @property
    def sets(self) -> list[str]:
        return self.runs["sets"]

    def copy(self, kind: str, name: str = "run") -> Path:
        return Path(shutil.copytree(self.runs[kind], self.tmp / name))


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under `folder`, by relative path."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


# ----------------------------------------------------------------------------- helpers for setups
def hold_lock(ctx: Ctx, folder: Path) -> int:
    """Another process takes the lock of `folder` and keeps it for the test; returns its pid."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = ("import sys, time\nfrom nas.lock import FolderLock\nFolderLock(sys.argv[1]).acquire()\n"
            "print('held', flush=True)\ntime.sleep(300)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    ctx.request.addfinalizer(lambda: (p.kill(), p.wait()))
    assert p.stdout.readline().strip() == "held", "the lock holder did not start"
    return p.pid


def read_only(ctx: Ctx, folder: Path) -> None:
    """Make every write under `folder` fail as on a read-only file system (EROFS); as root, chmod
    would not stop the writes, so the system calls are patched."""
    real_open, real_mkdir = os.open, os.mkdir
    inside = (lambda p: os.path.abspath(os.fspath(p)).startswith(str(folder)))

    def ro_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    def ro_mkdir(path, *args, **kwargs):
        if inside(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    ctx.monkeypatch.setattr(os, "open", ro_open)
    ctx.monkeypatch.setattr(os, "mkdir", ro_mkdir)


def user_experiment(ctx: Ctx) -> Path:
    """A user's own experiment folder: a config with comments and `extends:`, and a notes file."""
    from conftest import TINY

    import yaml

    sections: dict = {}
    for key, value in (o.split("=", 1) for o in TINY):
        if key.count(".") == 1:
            section, name = key.split(".")
            sections.setdefault(section, {})[name] = yaml.safe_load(value)
    (ctx.tmp / "base.yaml").write_text("# shared settings\n" + yaml.safe_dump(sections, sort_keys=False))
    exp = ctx.tmp / "myexp"
    exp.mkdir()
    (exp / "config.yaml").write_text("# my experiment: do not lose this comment\nextends: ../base.yaml\n"
                                     "train:\n  epochs: 1\n")
    return exp


def interrupt_startup(ctx: Ctx, signum: int) -> None:
    """Deliver `signum` while the data are being built (after the run folder was locked)."""
    import nas.data

    real = nas.data.build_data

    def build_data(*args, **kwargs):
        os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    ctx.monkeypatch.setattr(nas.data, "build_data", build_data)


# ----------------------------------------------------------------------------- the corpus
@dataclass
class Case:
    id: str
    code: int
    line: str                        # regex the one stderr line must match (from its start)
    setup: Callable[[Ctx], list[str]]  # builds the situation under ctx.tmp, returns the command line


CASES: list[Case] = []


def case(id: str, code: int, line: str) -> Callable:
    def register(setup: Callable[[Ctx], list[str]]) -> Callable:
        CASES.append(Case(id, code, line, setup))
        return setup
    return register


def search_new(c: Ctx, out: Path) -> list[str]:
    return ["search", "--out", str(out), *c.sets]


def notes(c: Ctx) -> Path:
    (c.tmp / "notes.txt").write_text("mine\n")
    return c.tmp / "notes.txt"


# -- `--out` must be new, empty, or a run to --resume (item 2)
@case("out-is-a-file", 2, r"error: .*notes\.txt: exists and is not a folder$")
def _(c):
    return search_new(c, notes(c))


@case("out-below-a-file", 2, r"error: .*notes\.txt/run: cannot be created \(a path above it is a file\)$")
def _(c):
    return search_new(c, notes(c) / "run")


@case("out-is-the-users-config-folder", 2,
      r"error: .*myexp: already exists and holds other files \(config\.yaml\); --out must be a new or empty folder")
def _(c):
    return ["search", "--config", str(user_experiment(c) / "config.yaml"), "--out", str(c.tmp / "myexp")]


@case("retrain-out-is-the-users-config-folder", 2, r"error: .*myexp: already exists and holds other files")
def _(c):
    return ["retrain", "--model", "unet", "--config", str(user_experiment(c) / "config.yaml"),
            "--out", str(c.tmp / "myexp")]


@case("out-holds-other-files", 2, r"error: .*data: already exists and holds other files \(a\.png\)")
def _(c):
    (c.tmp / "data").mkdir()
    (c.tmp / "data" / "a.png").write_bytes(b"x")
    return search_new(c, c.tmp / "data")


@case("search-out-holds-a-search-run", 2,
      r"error: .*run: already holds a search run; continue it with `nas search --resume .*run` or choose another --out")
def _(c):
    return search_new(c, c.copy("search"))


@case("retrain-out-holds-a-search-run", 2, r"error: .*run: already holds a search run")
def _(c):
    return ["retrain", "--model", "unet", "--out", str(c.copy("search")), *c.sets]


@case("search-out-holds-a-retrain-run", 2, r"error: .*run: already holds a retrain run")
def _(c):
    return search_new(c, c.copy("retrain"))


# -- a failed --resume writes nothing (item 3)
@case("resume-truncated-checkpoint", 2, r"error: .*last\.pt: cannot read checkpoint \(damaged or not a checkpoint")
def _(c):
    last = c.copy("search") / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    return ["search", "--resume", str(c.tmp / "run"), "--set", "train.epochs=2"]


@case("resume-empty-checkpoint", 2, r"error: .*last\.pt: cannot read checkpoint")
def _(c):
    (c.copy("search") / "checkpoints" / "last.pt").write_bytes(b"")
    return ["search", "--resume", str(c.tmp / "run"), "--set", "train.epochs=2"]


@case("resume-checkpoint-not-ours", 2, r"error: .*last\.pt: not a nas checkpoint")
def _(c):
    import torch

    torch.save({"weights": 1}, c.copy("retrain") / "checkpoints" / "last.pt")
    return ["retrain", "--resume", str(c.tmp / "run")]


@case("search-resume-of-a-retrain-run", 2,
      r"error: .*run: holds a retrain run; continue it with `nas retrain --resume .*run`")
def _(c):
    return ["search", "--resume", str(c.copy("retrain")), "--set", "train.epochs=2"]


@case("retrain-resume-of-a-search-run", 2,
      r"error: .*run: holds a search run; continue it with `nas search --resume .*run`")
def _(c):
    return ["retrain", "--resume", str(c.copy("search")), "--set", "train.epochs=2"]


@case("resume-set-not-a-number", 2, r"error: --set train\.epochs=abc: ")
def _(c):
    return ["search", "--resume", str(c.copy("search")), "--set", "train.epochs=abc"]


@case("resume-set-unknown-key", 2, r"error: --set train\.epochz=3: train\.epochz: unknown key")
def _(c):
    return ["search", "--resume", str(c.copy("search")), "--set", "train.epochz=3"]


@case("resume-set-other-model", 2,
      r"error: model\.name: cannot change on --resume \(.*run was trained with 'unet', now 'attunet'\); "
      r"start a new run with --out instead$")
def _(c):
    return ["retrain", "--resume", str(c.copy("retrain")), "--set", "model.name=attunet"]


@case("resume-set-other-search-space", 2, r"error: search\.space: cannot change on --resume")
def _(c):
    return ["search", "--resume", str(c.copy("search")), "--set", "search.space=unet_classic"]


@case("resume-set-other-image-size", 2, r"error: data\.image_size: cannot change on --resume")
def _(c):
    return ["search", "--resume", str(c.copy("search")), "--set", "data.image_size=64"]


@case("resume-set-other-optimizer", 2, r"error: train\.optimizer: cannot change on --resume")
def _(c):
    return ["retrain", "--resume", str(c.copy("retrain")), "--set", "train.optimizer=adam", "--set", "train.epochs=2"]


@case("resume-set-other-arch-optimizer", 2,
      r"error: search\.arch_optimizer: cannot change on --resume \(.*run was trained with 'adam', now 'radam'\)")
def _(c):
    return ["search", "--resume", str(c.copy("search")), "--set", "search.arch_optimizer=radam"]


@case("resume-of-an-earlier-version-keeps-its-arch-optimizer", 2,
      r"error: search\.arch_optimizer: cannot change on --resume \(.*run was trained with 'radam', now 'adam'\)")
def _(c):
    run = c.copy("search")  # a run of a version before search.arch_optimizer existed: it used RAdam
    text = (run / "config.yaml").read_text()
    assert "  arch_optimizer: adam\n" in text
    (run / "config.yaml").write_text(text.replace("  arch_optimizer: adam\n", ""))
    return ["search", "--resume", str(run), "--set", "search.arch_optimizer=adam"]


@case("resume-mid-epoch-with-another-batch-size", 2,
      r"error: train\.batch_size: cannot change on --resume from the middle of an epoch \(4, now 2\)")
def _(c):
    import torch

    last = c.copy("search") / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=False)
    ckpt["loop"]["step_in_epoch"] = 1  # as if stopped by Ctrl-C after the first step of an epoch
    torch.save(ckpt, last)
    return ["search", "--resume", str(c.tmp / "run"), "--set", "train.batch_size=2", "--set", "train.epochs=2"]


@case("resume-without-splits", 2, r"error: .*splits\.json: missing; the run cannot be resumed with the same data split")
def _(c):
    (c.copy("search") / "splits.json").unlink()
    return ["search", "--resume", str(c.tmp / "run"), "--set", "train.epochs=2"]


@case("resume-corrupt-splits", 2, r"error: .*splits\.json: not a readable splits file")
def _(c):
    (c.copy("search") / "splits.json").write_text('{"train": [')
    return ["search", "--resume", str(c.tmp / "run"), "--set", "train.epochs=2"]


@case("resume-config-not-utf8", 2, r"error: .*config\.yaml: cannot read the run's config \(not UTF-8 text\)")
def _(c):
    (c.copy("search") / "config.yaml").write_bytes(b"data:\n  root: \xff\xfe\n")
    return ["search", "--resume", str(c.tmp / "run")]


@case("resume-without-checkpoint", 2, r"error: .*run: nothing to resume \(no checkpoints/last\.pt\)")
def _(c):
    (c.copy("search") / "checkpoints" / "last.pt").unlink()
    return ["search", "--resume", str(c.tmp / "run")]


@case("resume-missing-folder", 2, r"error: .*nothing/config\.yaml: not found")
def _(c):
    return ["search", "--resume", str(c.tmp / "nothing")]


@case("resume-with-out", 2, r"error: --resume continues a run with its own saved config\.yaml")
def _(c):
    return ["search", "--resume", str(c.copy("search")), "--out", str(c.tmp / "other")]


# -- one writer per folder (item 4)
@case("search-into-a-locked-folder", 2,
      r"error: .*run: in use by another nas command \(pid \d+ on [A-Za-z0-9-]+\); wait for it to finish")
def _(c):
    (c.tmp / "run").mkdir()
    hold_lock(c, c.tmp / "run")
    return search_new(c, c.tmp / "run")


@case("resume-of-a-running-search", 2, r"error: .*run: in use by another nas command \(pid \d+ on ")
def _(c):
    hold_lock(c, c.copy("search"))
    return ["search", "--resume", str(c.tmp / "run"), "--set", "train.epochs=2"]


@case("evaluate-a-run-being-retrained", 2, r"error: .*run: in use by another nas command")
def _(c):
    hold_lock(c, c.copy("retrain"))
    return ["evaluate", str(c.tmp / "run")]


@case("predict-into-a-folder-in-use", 2, r"error: .*preds: in use by another nas command \(pid \d+ on ")
def _(c):
    import cv2
    import numpy as np

    cv2.imwrite(str(c.tmp / "photo.png"), np.full((20, 30, 3), 128, np.uint8))
    hold_lock(c, c.tmp / "preds")
    return ["predict", str(c.copy("retrain")), str(c.tmp / "photo.png"), "--out", str(c.tmp / "preds")]


@case("lock-of-another-host", 2,
      r"error: .*run: in use by another nas command \(pid 4242 on node-17\); if that process is gone "
      r"\(e\.g\. its machine failed\), delete .*run/\.nas\.lock")
def _(c):
    (c.tmp / "run").mkdir()
    (c.tmp / "run" / ".nas.lock").write_text('{"pid": 4242, "host": "node-17"}\n')
    return search_new(c, c.tmp / "run")


@case("lock-file-not-ours", 2, r"error: .*\.nas\.lock: exists but is not a nas lock file")
def _(c):
    (c.tmp / "run").mkdir()
    (c.tmp / "run" / ".nas.lock").write_text("svn\n")
    return search_new(c, c.tmp / "run")


# -- folders that cannot be written: refused before any work
@case("out-on-a-read-only-file-system", 2, r"error: .*ro/run: cannot write here \(Read-only file system\)")
def _(c):
    (c.tmp / "ro").mkdir()
    read_only(c, c.tmp / "ro")
    return search_new(c, c.tmp / "ro" / "run")


@case("out-is-a-read-only-empty-folder", 2, r"error: .*ro: cannot write here \(Read-only file system\)")
def _(c):
    (c.tmp / "ro").mkdir()
    read_only(c, c.tmp / "ro")
    return search_new(c, c.tmp / "ro")


@case("resume-on-a-read-only-file-system", 2, r"error: .*run: cannot write here \(Read-only file system\)")
def _(c):
    read_only(c, c.copy("search"))
    return ["search", "--resume", str(c.tmp / "run"), "--set", "train.epochs=2"]


# -- interrupted during start-up: nothing to save, one line (Ctrl-C 130, SIGTERM 143)
@case("ctrl-c-during-start-up", 130, r"interrupted$")
def _(c):
    interrupt_startup(c, signal.SIGINT)
    return search_new(c, c.tmp / "run")


@case("sigterm-during-start-up", 143, r"interrupted by SIGTERM$")
def _(c):
    interrupt_startup(c, signal.SIGTERM)
    return search_new(c, c.tmp / "run")


@case("ctrl-c-during-resume-start-up", 130, r"interrupted$")
def _(c):
    c.copy("search")
    interrupt_startup(c, signal.SIGINT)
    return ["search", "--resume", str(c.tmp / "run"), "--set", "train.epochs=2"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, runs, tmp_path, monkeypatch, request, capsys):
    argv = case.setup(Ctx(tmp_path, runs, monkeypatch, request))
    before = snapshot(tmp_path)
    capsys.readouterr()
    try:
        code = main(argv)
    except BaseException as exc:  # what a user would see as a traceback
        pytest.fail(f"TRACEBACK {type(exc).__name__}: {exc}")
    monkeypatch.undo()  # the read-only patches, before the folder is read back
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(case.line, lines[0]), lines[0]
    assert code == case.code, (code, lines[0])
    assert snapshot(tmp_path) == before, "files changed, appeared or vanished"


# ----------------------------------------------------------------------------- failed writes mid-run
def fail_fsync(monkeypatch, name: str, err: int = errno.ENOSPC, after: int = 0) -> None:
    """The writes of file `name` fail with `err` (as on a full disk) from its (after+1)-th write on."""
    real = os.fsync
    seen = {"n": 0}

    def fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".{name}."):
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(err, os.strerror(err))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    return errors[0]


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.rglob("*.tmp")], sorted(folder.rglob("*.tmp"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell which file an fd is")
def test_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, capsys, tiny_overrides):
    import torch

    run = tmp_path / "run"
    fail_fsync(monkeypatch, "last.pt", after=1)  # epoch 1's last.pt is written, epoch 2's is not
    code = main(["search", "--out", str(run), *_sets(tiny_overrides)])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 1
    assert re.fullmatch(rf"error: {re.escape(str(run))}/checkpoints/last\.pt: cannot write \(No space left on "
                        rf"device\); stopped at epoch 2, step 6; the previous checkpoint .*last\.pt \(epoch 1, "
                        rf"step 3\) is intact; free some space, then continue with --resume {re.escape(str(run))}",
                        line), line
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["loop"]["epoch"] == 1
    _no_temp_files(tmp_path)
    assert not (run / ".nas.lock").exists()
    monkeypatch.undo()
    assert main(["search", "--resume", str(run)]) == 0  # nothing was lost
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["loop"]["epoch"] == 2


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell which file an fd is")
def test_full_disk_while_writing_the_summary(tmp_path, monkeypatch, capsys, tiny_overrides):
    run = tmp_path / "run"
    fail_fsync(monkeypatch, "summary.json")
    code = main(["retrain", "--model", "unet", "--set", "model.width=4", "--out", str(run),
                 *_sets(tiny_overrides + ["train.epochs=1"])])
    line = _one_error_line(capsys.readouterr().err)
    assert (code, line) == (1, f"error: {run}/summary.json: cannot write (No space left on device)")
    _no_temp_files(tmp_path)
    monkeypatch.undo()
    assert main(["retrain", "--resume", str(run)]) == 0 and (run / "summary.json").is_file()


def test_out_of_memory_names_what_to_lower_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys, tiny_overrides):
    import torch

    from nas import search as search_mod

    original, calls = search_mod.SearchTask.train_step, {"n": 0}

    def step(self, batch, epoch):
        calls["n"] += 1
        if calls["n"] == 5:  # in epoch 2 (3 steps per epoch), as CUDA reports it
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
                                         "capacity of 79.19 GiB of which 1.02 GiB is free.")
        return original(self, batch, epoch)

    monkeypatch.setattr(search_mod.SearchTask, "train_step", step)
    run = tmp_path / "run"
    code = main(["search", "--out", str(run), *_sets(tiny_overrides)])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 1
    assert re.fullmatch(rf"error: out of memory on cpu in epoch 2 after step 4 \(CUDA out of memory\); the previous "
                        rf"checkpoint .*last\.pt \(epoch 1, step 3\) is intact: continue with --resume "
                        rf"{re.escape(str(run))} --set train\.batch_size=<smaller> \(retrain\.batch_size for a "
                        rf"retrain\), or start a new run with a smaller data\.image_size or search\.space, or "
                        rf"run\.bf16=true", line), line
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["loop"]["epoch"] == 1
    monkeypatch.undo()
    # the advice works: a smaller batch from the epoch-end checkpoint
    assert main(["search", "--resume", str(run), "--set", "train.batch_size=2"]) == 0
    assert "batch_size: 2" in (run / "config.yaml").read_text()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_for_real(tmp_path, capsys, tiny_overrides):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["search", "--out", str(ro / "run"), *_sets(tiny_overrides)]) == 2
        assert re.fullmatch(r"error: .*ro/run: cannot write here \(Permission denied\)",
                            _one_error_line(capsys.readouterr().err))
    finally:
        ro.chmod(0o755)


# ----------------------------------------------------------------------------- signals (subprocess)
def _nas(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "nas", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(predicate, proc, timeout=120.0):
    import time

    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_signal_at_start_up_is_one_line(tmp_path, tiny_overrides, signum, code):
    """A signal as soon as the run folder is locked: before or at the first step, never a traceback."""
    run = tmp_path / "run"
    p = _nas(["search", "--out", str(run), *_sets(tiny_overrides)], tmp_path)
    _wait_for(lambda: (run / ".nas.lock").exists(), p)
    p.send_signal(signum)
    _, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.fullmatch(r"interrupted( by SIGTERM)?|error: (interrupted|stopped by SIGTERM) at epoch 1, step \d+; "
                        r"checkpoint saved to .*", lines[0]), lines[0]
    assert not (run / ".nas.lock").exists()
    # nothing half-written: no folder at all, or a run with its checkpoint
    assert not run.exists() or (run / "checkpoints" / "last.pt").is_file()


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path, tiny_overrides):
    """What a cluster's time limit does (SLURM --signal, `timeout`): SIGTERM, repeated by the
    launchers, saves at the next step and exits 143; `--resume` then finishes the run."""
    import torch

    run = tmp_path / "run"
    p = _nas(["search", "--out", str(run), *_sets(tiny_overrides + ["train.epochs=50"])], tmp_path)
    metrics = run / "metrics.csv"
    _wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 3, p)
    p.send_signal(signal.SIGTERM)
    p.send_signal(signal.SIGTERM)  # srun and torchrun forward theirs: a repeat must not kill it
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    line = err.strip().splitlines()[-1]
    m = re.fullmatch(rf"error: stopped by SIGTERM at epoch (\d+), step (\d+); checkpoint saved to "
                     rf"{re.escape(str(run))}/checkpoints/last\.pt; continue with --resume {re.escape(str(run))}", line)
    assert m and "Traceback" not in err, err
    loop = torch.load(run / "checkpoints" / "last.pt", weights_only=False)["loop"]
    # saved where it stopped: mid-epoch, or at the end of the epoch when the signal came in its last step
    assert loop["step"] == int(m[2]) and loop["epoch"] == int(m[1]) - (loop["step_in_epoch"] > 0)
    assert not (run / ".nas.lock").exists()
    _no_temp_files(tmp_path)
    assert main(["search", "--resume", str(run), "--set", f"train.epochs={m[1]}"]) == 0
