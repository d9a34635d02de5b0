"""Shared fixtures: tiny, fast configurations for end-to-end runs on the CPU."""

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

TINY = [
    "search.space=tiny", "data.image_size=32", "data.synthetic_n=36", "data.split=[0.66666666667, 0.16666666667, 0.16666666666]",
    "train.batch_size=4", "train.eval_batch_size=8", "train.epochs=2", "log.progress=false",
    "log.plots=false", "log.alpha_every=1", "run.threads=1", "run.seed=7", "model.out_channels=1",
]


@pytest.fixture
def tiny_overrides():
    return list(TINY)


@pytest.fixture
def tiny_supernet_alphas():
    """A `tiny` supernet (seed 0) with α drawn from N(0, 1), and its α as `alpha_state_from_state_dict` reads them."""
    from nas.discretize import alpha_state_from_state_dict
    from nas.supernet import Supernet

    torch.manual_seed(0)
    net = Supernet("tiny")
    with torch.no_grad():
        for p in net.arch_parameters():
            p.normal_()
    return net, alpha_state_from_state_dict(net.state_dict(), "tiny supernet")


@pytest.fixture
def log_rows():
    """`log_rows(run_dir, name="metrics.csv")`: a run's CSV log without its wall-clock columns
    (the only ones an interrupted-and-resumed run may differ in)."""
    import csv

    def rows(run_dir, name="metrics.csv"):
        with (run_dir / name).open() as f:
            return [{k: v for k, v in r.items() if k not in ("time_s", "images_per_s")} for r in csv.DictReader(f)]

    return rows


@pytest.fixture
def interrupt_at_step(monkeypatch):
    """`interrupt_at_step(step, signum=SIGINT)`: the next `Trainer.fit` receives `signum` (Ctrl-C by
    default) right after global step `step`. Returns the original `Trainer.fit`."""
    import signal

    from nas.loop import Trainer

    original = Trainer.fit

    def arm(step, signum=signal.SIGINT):
        def fit_with_interrupt(self):
            after = self.task.after_step

            def after_step(epoch_frac, s, last):
                after(epoch_frac, s, last)
                if s == step:
                    os.kill(os.getpid(), signum)

            self.task.after_step = after_step
            return original(self)

        monkeypatch.setattr(Trainer, "fit", fit_with_interrupt)
        return original

    return arm
