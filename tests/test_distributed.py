"""torchrun with 2 CPU processes (gloo): ranks stay identical, match one process, one run folder."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from nas.config import load_config
from nas.search import search

ROOT = Path(__file__).resolve().parent.parent


def _torchrun(args, cwd, nproc=2):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "nas", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)



def test_two_rank_search_matches_single_process(tmp_path, tiny_overrides):
    # global batch 4 = 2 ranks x 2; sync_bn gives BatchNorm the statistics of the global batch.
    # 24 images = 2 steps per epoch: Adam's first α steps are ±lr whatever a gradient's size, so an
    # α whose gradient is at rounding level (e.g. a `zero` op's) can take opposite steps under the
    # two float summation orders a few steps later; two steps compare the algorithms, not that.
    common = [o for o in tiny_overrides if not o.startswith(("train.batch_size", "train.epochs", "data.synthetic_n"))]
    common += ["train.epochs=1", "run.sync_bn=true", "run.device=cpu", "data.synthetic_n=24"]
    args = ["search", "--out", str(tmp_path / "ddp")]
    for o in common + ["train.batch_size=2"]:
        args += ["--set", o]
    r = _torchrun(args, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # only rank 0 wrote, and only one run folder exists
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]
    ddp = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=False)
    assert ddp["world_size"] == 2

    single = search(load_config(None, common + ["train.batch_size=4", "run.distributed=false"]),
                    tmp_path / "single")
    one = torch.load(single / "checkpoints" / "last.pt", weights_only=False)
    for k, v in one["model"].items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, ddp["model"][k], atol=2e-5, rtol=1e-4), k
        else:
            assert torch.equal(v, ddp["model"][k]), k

    # a 2-rank checkpoint resumes in a single process (one more epoch)
    from nas.session import resume_config

    cfg = resume_config(tmp_path / "ddp", ["train.epochs=2", "run.distributed=false"])
    search(cfg, tmp_path / "ddp", resume=True)
    resumed = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=False)
    assert resumed["loop"]["epoch"] == 2 and resumed["world_size"] == 1
