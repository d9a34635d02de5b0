"""How `run.seed` becomes NumPy generators, in one place so every stream is derived the same way.

`np.random.default_rng` takes a list of non-negative ints and hashes it (SeedSequence), so
`[seed, epoch, index]` gives independent, reproducible streams without any global state; that
is what makes augmentation independent of DataLoader workers and of resuming.
"""

from __future__ import annotations

import numpy as np


def rng_seed(seed: int) -> int:
    """Map any int (a negative `run.seed` too) onto the non-negative ints SeedSequence accepts."""
    return int(seed) % (1 << 63)


def make_rng(seed: int, *keys: int) -> np.random.Generator:
    """The generator of stream `keys` (e.g. epoch, index) under `seed`."""
    return np.random.default_rng([rng_seed(seed), *(int(k) for k in keys)])
