"""Batching for training: length-bucketed, resumable, shardable batch order; padding.

The order of batches in epoch ``e`` is a pure function of ``(seed, e)``, so a run that
resumes from a checkpoint taken after batch ``k`` of epoch ``e`` replays exactly the
batches the uninterrupted run would have seen, and every DDP rank can compute its
share without talking to the others.

A batch is the *global* batch of one optimizer step, whatever the number of processes:
:class:`RankBatches` deals its items to the ``W`` ranks (rank ``r`` takes items
``r, r + W, ...``) and each rank's share into ``A`` micro-batches for gradient
accumulation (its items ``m, m + A, ...``). So the batches, and a resumed run's next
batch, do not depend on ``W`` or ``A``; a rank whose share of a (small, last) batch is
empty processes a *filler* (the batch's first item with weight 0) so that every rank
takes part in every gradient all-reduce.
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
        Base seed; the order of epoch ``e`` depends only on ``(seed, e)``.
    drop_last : bool
        Drop a final incomplete batch.
    pool_batches : int
        Batches per sorting pool when bucketing.
    """

    def __init__(self, num_items: int, batch_size: int, lengths: Sequence[int] | None = None, *,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False, pool_batches: int = 50):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if lengths is not None and len(lengths) != num_items:
            raise ValueError(f"lengths has {len(lengths)} entries for {num_items} items")
        self.num_items, self.batch_size = num_items, batch_size
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.shuffle, self.seed = shuffle, seed
        self.drop_last, self.pool_batches = drop_last, pool_batches
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's order; ``skip`` leaves out its first batches (resume)."""
        self.epoch, self.skip = epoch, skip

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """All batches of ``epoch`` (default: the current one)."""
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
        return out

    def __iter__(self):
        return iter(self.batches()[self.skip:])

    def __len__(self) -> int:
        n = math.ceil(self.num_items / self.batch_size) if not self.drop_last else self.num_items // self.batch_size
        return n - self.skip


def rank_share(batch: Sequence[int], rank: int = 0, world_size: int = 1, accum_steps: int = 1
               ) -> list[tuple[list[int], bool]]:
    """The micro-batches of ``rank`` for one global ``batch``: ``accum_steps`` pairs
    ``(indices, real)``.

    Rank ``r`` takes items ``r, r + W, ...`` of the batch, and micro-batch ``m`` takes
    items ``m, m + A, ...`` of that share. An empty micro-batch becomes ``([batch[0]],
    False)``: a filler to be run with weight 0.
    """
    share = list(batch)[rank::world_size]
    out = []
    for m in range(accum_steps):
        part = share[m::accum_steps]
        out.append((part, True) if part else ([batch[0]], False))
    return out


class RankBatches(torch.utils.data.Sampler):
    """This rank's micro-batches of the global batches of a :class:`BucketBatchSampler`.

    Yields ``accum_steps`` index lists per global batch (see :func:`rank_share`); the
    indices of a filler micro-batch are wrapped as :class:`Filler`, which
    :class:`WithFillers` recognises.

    Parameters
    ----------
    batches : BucketBatchSampler
        The global batch order (its ``set_epoch(epoch, skip)`` selects the epoch and the
        first batch).
    rank, world_size : int
    accum_steps : int
        Micro-batches per rank and optimizer step.
    """

    def __init__(self, batches: BucketBatchSampler, rank: int = 0, world_size: int = 1, accum_steps: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        if accum_steps < 1:
            raise ValueError(f"accum_steps must be >= 1, got {accum_steps}")
        self.global_batches, self.rank, self.world_size, self.accum_steps = batches, rank, world_size, accum_steps

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Epoch ``epoch`` from its global batch ``skip`` on."""
        self.global_batches.set_epoch(epoch, skip)

    def __iter__(self):
        for batch in self.global_batches:
            for part, real in rank_share(batch, self.rank, self.world_size, self.accum_steps):
                yield part if real else [Filler(i) for i in part]

    def __len__(self) -> int:
        return len(self.global_batches) * self.accum_steps


class Filler(int):
    """An item index that takes part in a step with weight 0 (see :func:`rank_share`)."""


class WithFillers(torch.utils.data.Dataset):
    """``dataset`` whose items come as ``(item, real)``: ``real`` is False for a
    :class:`Filler` index."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[int(i)], not isinstance(i, Filler)


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
