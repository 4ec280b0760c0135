"""Dynamic time warping: align generated frames to natural ones of another length.

Systems synthesised with predicted durations have other lengths than natural speech,
so their frames are first paired by the DTW path of least total distance (Euclidean
distance of the mel-cepstra without ``c0``, the usual choice of Merlin and nnmnkwii
evaluations), then scored like frame-aligned systems.
"""
from __future__ import annotations

import numpy as np


def dtw_path(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least-cost monotonic alignment of two sequences.

    Steps ``(1, 0)``, ``(0, 1)`` and ``(1, 1)``, each costing the local distance of the
    cell it enters; the path runs from ``(0, 0)`` to ``(len(x) - 1, len(y) - 1)``.
    The dynamic programme runs anti-diagonal by anti-diagonal (vectorised).

    Parameters
    ----------
    x : ndarray [shape=(N, D)]
    y : ndarray [shape=(M, D)]

    Returns
    -------
    ix, iy : ndarray [shape=(L,)] int64
        Paired frame indices, ``max(N, M) <= L <= N + M - 1``.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    N, M = len(x), len(y)
    if N == 0 or M == 0:
        raise ValueError(f"dtw_path: empty sequence ({N} and {M} frames)")
    cost = np.sqrt(np.maximum((x ** 2).sum(1)[:, None] + (y ** 2).sum(1)[None, :] - 2 * x @ y.T, 0.0))
    acc = np.full((N, M), np.inf)
    for d in range(N + M - 1):                      # cells (i, d - i) of one anti-diagonal
        i = np.arange(max(0, d - M + 1), min(N, d + 1))
        j = d - i
        if d == 0:
            acc[0, 0] = cost[0, 0]
            continue
        best = np.full(i.shape, np.inf)
        up = i > 0
        best[up] = np.minimum(best[up], acc[i[up] - 1, j[up]])
        left = j > 0
        best[left] = np.minimum(best[left], acc[i[left], j[left] - 1])
        diag = up & left
        best[diag] = np.minimum(best[diag], acc[i[diag] - 1, j[diag] - 1])
        acc[i, j] = cost[i, j] + best
    i, j, ix, iy = N - 1, M - 1, [N - 1], [M - 1]
    while i > 0 or j > 0:
        cands = []
        if i > 0 and j > 0:
            cands.append((acc[i - 1, j - 1], i - 1, j - 1))
        if i > 0:
            cands.append((acc[i - 1, j], i - 1, j))
        if j > 0:
            cands.append((acc[i, j - 1], i, j - 1))
        _, i, j = min(cands)
        ix.append(i)
        iy.append(j)
    return np.array(ix[::-1], dtype=np.int64), np.array(iy[::-1], dtype=np.int64)
