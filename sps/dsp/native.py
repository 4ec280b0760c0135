"""Calls into the C kernel of :func:`sps.dsp.lfilter` (``sps/native/lfilter.c``).

The recursion over time cannot be vectorised, so it runs in C with OpenMP over the
flattened ``batch * channel`` rows.  Time-invariant filters of order <= 4 take a
fast path in which the coefficients and the signal histories stay in registers
(the order is a compile-time constant inside each ``switch`` case); everything
else (time-varying coefficients, higher orders) takes a generic path that reads the
histories from memory.  The maths is the one of :mod:`sps.dsp.lfilter`: with
``a[0] = 1`` and coefficients ``a_k(t), b_k(t)`` taken at the output time ``t``

    y[t] = sum_k b_k(t) x[t-k] - sum_{k>=1} a_k(t) y[t-k] + zi[t]   (zi[t] = 0 for t >= K)

and, going backwards in time with the incoming gradient ``gy``,

    g[t]  = gy[t] - sum_{k>=1} a_k(t+k) g[t+k]
    dx[t] = sum_k b_k(t+k) g[t+k],   db_k(t) = g[t] x[t-k],   da_k(t) = -g[t] y[t-k],
    dzi[t] = g[t].

The C source is written once against ``REAL`` and instantiated for float and double.
"""
from __future__ import annotations

import ctypes

import torch

from sps import native

KMAX = 4  # largest order with a register-resident fast path (lfilter.c)
LANES = 4  # rows filtered together (interleaved) on the fast path


def library() -> ctypes.CDLL | None:
    """The compiled kernel library, or None (no compiler / ``SPS_NO_NATIVE=1``)."""
    return native.library("lfilter")


def _threads(R: int, T: int) -> int:
    """OpenMP threads: one per group of LANES rows at most, one for small problems."""
    return native.threads(-(-R // LANES), 8.0 * R * T)


def _sfx(dtype: torch.dtype) -> str:
    return "f32" if dtype == torch.float32 else "f64"


def forward(lib, x2, xidx, b2, bidx, a2, aidx, zi2, K: int) -> torch.Tensor:
    """``y (R, T)`` from flattened operands (see :class:`sps.dsp.lfilter._Flat`)."""
    R, T = xidx.numel(), x2.shape[-1]
    M, N = b2.shape[-1], a2.shape[-1]
    y = torch.empty(R, T, dtype=x2.dtype)
    b_ts = M if b2.shape[1] > 1 else 0
    a_ts = N if a2.shape[1] > 1 else 0
    fn = f"lfilter_fwd_{_sfx(x2.dtype)}"
    native.check(getattr(lib, fn)(
        native.ptr(x2), native.ptr(xidx), native.ptr(b2), native.ptr(bidx), b2.shape[1] * M, b_ts, M,
        native.ptr(a2), native.ptr(aidx), a2.shape[1] * N, a_ts, N, native.ptr(zi2), K, native.ptr(y), R, T,
        _threads(R, T)), fn)
    return y


def backward(lib, gy, x2, xidx, y, b2, bidx, a2, aidx, K: int, need_x: bool, need_zi: bool):
    """Row-wise gradients ``(dx (R, T) | None, db (R, Tb, M), da (R, Ta, N), dzi (R, K) | None)``."""
    R, T = y.shape
    M, N = b2.shape[-1], a2.shape[-1]
    Tb, Ta = b2.shape[1], a2.shape[1]
    fast = Tb == 1 and Ta == 1 and 1 <= K <= KMAX
    g = None if fast else torch.empty(R, T, dtype=y.dtype)
    dx = torch.empty(R, T, dtype=y.dtype) if need_x else None
    db = torch.empty(R, Tb, M, dtype=y.dtype)
    da = torch.empty(R, Ta, N, dtype=y.dtype)
    dzi = torch.zeros(R, K, dtype=y.dtype) if need_zi else None
    fn = f"lfilter_bwd_{_sfx(y.dtype)}"
    native.check(getattr(lib, fn)(
        native.ptr(gy), native.ptr(x2), native.ptr(xidx), native.ptr(y), native.ptr(b2), native.ptr(bidx), Tb * M, M if Tb > 1 else 0, M,
        native.ptr(a2), native.ptr(aidx), Ta * N, N if Ta > 1 else 0, N, K,
        native.ptr(g), native.ptr(dx), native.ptr(db), native.ptr(da), native.ptr(dzi), R, T, _threads(R, T)), fn)
    return dx, db, da, dzi
