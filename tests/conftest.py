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
