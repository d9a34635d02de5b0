"""Epoch-seeded, rank-sharded, resumable batch order.

`DistributedSampler` already gives a permutation that is a pure function of (seed, epoch) and a
shard per rank; this wrapper adds the one thing a mid-epoch resume needs: skipping the samples
of the batches that were already done.
"""

from __future__ import annotations

from typing import Iterator, Sized

from torch.utils.data import DistributedSampler, Sampler


class ResumableSampler(Sampler[int]):
    def __init__(self, dataset: Sized, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False) -> None:
        self.inner = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                        seed=seed, drop_last=drop_last)
        self.skip = 0

    def set_epoch(self, epoch: int, skip_samples: int = 0) -> None:
        """Use epoch ``epoch``'s order; the next pass (only) starts after ``skip_samples``."""
        self.inner.set_epoch(epoch)
        self.skip = skip_samples

    def __iter__(self) -> Iterator[int]:
        # The skip is consumed by this pass: iterating again (within the epoch) starts over.
        skip, self.skip = self.skip, 0
        it = iter(self.inner)
        for _ in range(skip):
            next(it, None)
        return it

    def __len__(self) -> int:
        """Length of the next pass (the pending skip subtracted)."""
        return max(len(self.inner) - self.skip, 0)
