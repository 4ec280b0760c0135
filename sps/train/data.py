"""Batching for training: length-bucketed, resumable, shardable batch order; padding.

The order of batches in epoch ``e`` is a pure function of ``(seed, e)``, so a run that
resumes from a checkpoint taken after batch ``k`` of epoch ``e`` replays exactly the
batches the uninterrupted run would have seen, and every DDP rank can compute its
share without talking to the others.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of indices for one epoch, optionally bucketed by length.

    With ``lengths`` given, the shuffled indices are cut into pools of
    ``pool_batches * batch_size`` items, each pool is sorted by length and cut into
    batches, and the batches are shuffled: batches hold sequences of similar length
    (little padding) while the epoch order stays random.

    Parameters
    ----------
    num_items : int
        Dataset size.
    batch_size : int
        Items per batch (per rank).
    lengths : sequence of int, optional
        Item lengths (frames); enables bucketing.
    shuffle : bool
        Random order (training) or dataset order (validation).
    seed : int
        Base seed; the order of epoch ``e`` depends only on ``seed + e``.
    rank, world_size : int
        DDP rank share: rank ``r`` takes batches ``r, r + W, ...`` of a list trimmed
        to a multiple of ``W`` (ranks run the same number of steps).
    drop_last : bool
        Drop a final incomplete batch.
    pool_batches : int
        Batches per sorting pool when bucketing.
    """

    def __init__(self, num_items: int, batch_size: int, lengths: Sequence[int] | None = None, *,
                 shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, pool_batches: int = 50):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if lengths is not None and len(lengths) != num_items:
            raise ValueError(f"lengths has {len(lengths)} entries for {num_items} items")
        self.num_items, self.batch_size = num_items, batch_size
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.drop_last, self.pool_batches = drop_last, pool_batches
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's order; ``skip`` leaves out its first batches (resume)."""
        self.epoch, self.skip = epoch, skip

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """All of this rank's batches of ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.num_items) if self.shuffle else np.arange(self.num_items)
        if self.lengths is not None:
            pool = self.batch_size * self.pool_batches
            # stable sort by length inside each pool
            order = np.concatenate([p[np.argsort(self.lengths[p], kind="stable")]
                                    for p in np.split(order, range(pool, len(order), pool))]) \
                if len(order) else order
        out = [order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        if self.drop_last and out and len(out[-1]) < self.batch_size:
            out.pop()
        if self.lengths is not None and self.shuffle:
            out = [out[i] for i in rng.permutation(len(out))]
        if self.world_size > 1:
            n = len(out) // self.world_size * self.world_size
            if n == 0:
                raise ValueError(f"{len(out)} batches cannot be shared by {self.world_size} ranks")
            out = out[self.rank:n:self.world_size]
        return out

    def __iter__(self):
        return iter(self.batches()[self.skip:])

    def __len__(self) -> int:
        n = math.ceil(self.num_items / self.batch_size) if not self.drop_last else self.num_items // self.batch_size
        return n // self.world_size - self.skip if self.world_size > 1 else n - self.skip


def pad_sequences(seqs: Sequence[torch.Tensor | np.ndarray], value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length sequences into a padded batch.

    Parameters
    ----------
    seqs : sequence of Tensor or ndarray [shape=(T_i, ...)]

    Returns
    -------
    x : Tensor [shape=(B, max T_i, ...)]
        Padded with ``value``.
    lengths : LongTensor [shape=(B,)]
    """
    seqs = [torch.as_tensor(s) for s in seqs]
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = seqs[0].new_full((len(seqs), int(lengths.max()), *seqs[0].shape[1:]), value)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


def length_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Boolean mask [shape=(B, T)], True on valid frames (``t < lengths[b]``)."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
