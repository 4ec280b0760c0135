"""Normalisation: streaming statistics and mean-variance / min-max scaling.

:class:`RunningStats` accumulates count, mean, sum of squared deviations, min and max
one block at a time in float64 and merges blocks with Chan et al.'s pairwise update,
so statistics of a whole corpus never need the corpus in memory and are exact up to
float64 rounding.

The scaling functions accept NumPy arrays or torch tensors (the statistics are
converted to the input's type, dtype and device) and broadcast over leading axes.

Constant dimensions: an input dimension that never varies in the training data (a
question that never fires, ``max - min < eps``) has no span to scale by. It is left
unscaled (span 1: its training value maps to the bottom of the range and any other
value moves by its raw difference), never divided by ``eps``: a question that fires at
synthesis time but never in training would otherwise reach the network as ``1e8``.
The statistics stage marks these dimensions (``constant`` in ``stats/<kind>.npz``).
"""
from __future__ import annotations

import numpy as np

from sps.features.deltas import _is_tensor

#: Merlin's target range for min-max scaled inputs
MINMAX_RANGE = (0.01, 0.99)


class RunningStats:
    """Per-dimension count, mean, variance, min and max over a stream of ``(N, D)`` blocks."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None

    @property
    def dim(self) -> int | None:
        return None if self.mean is None else self.mean.shape[0]

    def update(self, x, name: str = "block") -> "RunningStats":
        """Add the rows of ``x`` [shape=(N, D)] (``name`` is used in error messages)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"{name}: expected (frames, dim) array, got shape {x.shape}")
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"{name}: dimension {x.shape[1]}, previous blocks have {self.dim}")
        if x.shape[0] == 0:
            return self
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}: contains NaN or inf")
        block = RunningStats()
        block.count = x.shape[0]
        block.mean = x.mean(axis=0)
        block.m2 = ((x - block.mean) ** 2).sum(axis=0)
        block.min, block.max = x.min(axis=0), x.max(axis=0)
        return self.merge(block)

    def merge(self, other: "RunningStats") -> "RunningStats":
        """Combine with another accumulator (Chan et al. 1979), in place."""
        if other.count == 0:
            return self
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean.copy(), other.m2.copy()
            self.min, self.max = other.min.copy(), other.max.copy()
            return self
        if other.dim != self.dim:
            raise ValueError(f"RunningStats.merge: dimension {other.dim} vs {self.dim}")
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / n)
        self.m2 = self.m2 + other.m2 + delta ** 2 * (self.count * other.count / n)
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        self.count = n
        return self

    def constant(self, eps: float = 1e-8) -> np.ndarray:
        """Dimensions that never varied (``max - min < eps``): left unscaled by :func:`minmax_scale`."""
        if self.count == 0:
            raise ValueError("RunningStats: no data")
        return (self.max - self.min) < eps

    def std(self, floor: float = 0.0) -> np.ndarray:
        """Population standard deviation, floored at ``floor`` (constant dimensions)."""
        if self.count == 0:
            raise ValueError("RunningStats: no data")
        return np.maximum(np.sqrt(self.m2 / self.count), floor)


def _like(stat, x):
    if _is_tensor(x):
        import torch
        return torch.as_tensor(stat, dtype=x.dtype, device=x.device)
    return np.asarray(stat, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)


def normalize(x, mean, std):
    """``(x - mean) / std``; x [shape=(..., D)], mean and std [shape=(D,)]."""
    return (x - _like(mean, x)) / _like(std, x)


def denormalize(x, mean, std):
    """Inverse of :func:`normalize`: ``x * std + mean``."""
    return x * _like(std, x) + _like(mean, x)


def _span(x, min, max, eps):  # noqa: A002
    """``max - min``, with 1 (no scaling) for constant dimensions (``max - min < eps``)."""
    span = _like(max, x) - _like(min, x)
    if _is_tensor(span):
        return span.masked_fill(span < eps, 1.0)
    return np.where(span < eps, 1.0, span)


def minmax_scale(x, min, max, range=MINMAX_RANGE, eps: float = 1e-8):  # noqa: A002
    """Map ``[min, max]`` per dimension linearly onto ``range`` (0.01..0.99, as Merlin).

    x [shape=(..., D)], min and max [shape=(D,)]. A dimension that was constant in
    the training data (``max - min < eps``) is left unscaled (span 1): its training
    value maps to ``range[0]`` and other values stay within their raw distance of it.
    """
    lo, hi = range
    return (x - _like(min, x)) / _span(x, min, max, eps) * (hi - lo) + lo


def minmax_unscale(y, min, max, range=MINMAX_RANGE, eps: float = 1e-8):  # noqa: A002
    """Inverse of :func:`minmax_scale`."""
    lo, hi = range
    return (y - lo) / (hi - lo) * _span(y, min, max, eps) + _like(min, y)


class Normalizer:
    """Input min-max scaling and output standardisation of one model.

    Parameters
    ----------
    in_stats : dict with ``min``, ``max`` [shape=(D_in,)]
    out_stats : dict with ``mean``, ``std`` [shape=(D_out,)]
        Statistics (``stats/<kind>.npz`` of the stats stage).
    """

    def __init__(self, in_stats: dict, out_stats: dict):
        self.in_min = np.asarray(in_stats["min"], dtype=np.float64)
        self.in_max = np.asarray(in_stats["max"], dtype=np.float64)
        self.out_mean = np.asarray(out_stats["mean"], dtype=np.float64)
        self.out_std = np.asarray(out_stats["std"], dtype=np.float64)
        #: range of the raw outputs in the training data (None when the statistics lack it)
        self.out_min = None if "min" not in out_stats else np.asarray(out_stats["min"], dtype=np.float64)
        self.out_max = None if "max" not in out_stats else np.asarray(out_stats["max"], dtype=np.float64)
        for name in ("in_min", "in_max", "out_mean", "out_std", "out_min", "out_max"):
            value = getattr(self, name)
            if value is not None and not np.all(np.isfinite(value)):
                raise ValueError(f"Normalizer: non-finite {name.replace('_', ' ')} statistics "
                                 f"(dimension {int(np.argmin(np.isfinite(value)))})")
        if not np.all(self.out_std > 0):
            raise ValueError(f"Normalizer: output std must be positive (dimension {int(np.argmin(self.out_std > 0))})")

    @property
    def constant(self) -> np.ndarray:
        """Input dimensions that were constant in training (left unscaled) [shape=(D_in,)]."""
        return (self.in_max - self.in_min) < 1e-8

    @property
    def in_dim(self) -> int:
        return len(self.in_min)

    @property
    def out_dim(self) -> int:
        return len(self.out_mean)

    def inputs(self, x):
        """Raw inputs [shape=(..., D_in)] -> scaled (NumPy or torch)."""
        return minmax_scale(x, self.in_min, self.in_max)

    def outputs(self, y):
        """Raw outputs [shape=(..., D_out)] -> standardised."""
        return normalize(y, self.out_mean, self.out_std)

    def unscale_outputs(self, y):
        """Standardised outputs -> raw units (inverse of :meth:`outputs`)."""
        return denormalize(y, self.out_mean, self.out_std)
