"""Batched, differentiable IIR filtering: :func:`lfilter`.

Maths (``a[0]`` normalised to 1, ``K = max(len(a), len(b)) - 1``)::

    y[t] = sum_{k=0}^{M-1} b_k x[t-k] - sum_{k=1}^{N} a_k y[t-k] + zi[t]     (zi[t] = 0, t >= K)

i.e. an FIR part ``v = b * x`` followed by the all-pole recursion ``y = v / A(z)``.
Injecting ``zi`` into the first ``K`` samples of ``v`` is exactly scipy's
transposed-direct-form-II initial state.  The backward pass is analytic: the
adjoint of the all-pole recursion is the same recursion run backwards in time,

    g[t] = dL/dy[t] - sum_{k=1}^{N} a_k g[t+k]                 (g = dL/dv)
    dL/dx[t] = sum_k b_k g[t+k],   dL/db_k = sum_t g[t] x[t-k],
    dL/da_k = -sum_t g[t] y[t-k],  dL/dzi[t] = g[t],

with the obvious per-time versions when the coefficients vary in time.

Backends: a C kernel (CPU, :mod:`sps.dsp.native`), a Triton kernel (CUDA,
:mod:`sps.dsp._triton`) and a pure-PyTorch path (loop over time, vectorised over
all rows), which is the fallback and the test oracle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from sps.backend import resolve_backend
from sps.dsp import native

__all__ = ["lfilter", "check_stable"]

# --------------------------------------------------------------------------- API
def lfilter(x, a, b, zi=None, *, time_varying: bool = False, return_final: bool = False,
            check_stability: bool = True, backend: str | None = None):
    """Filter ``x`` along its last axis with IIR filters ``b(z) / a(z)``, batched.

    Parameters
    ----------
    x : Tensor [shape=(..., C, T)]
        Input signals (float32 or float64; a NumPy array gives a NumPy result).
    a : Tensor [shape=(N+1,), (C, N+1), (B, C, N+1) or any shape (..., N+1) broadcasting with x's (..., C)]
        Denominator coefficients; ``a[..., 0]`` must be non-zero and is normalised away.
        With ``time_varying=True``: shape ``(..., C, T, N+1)`` (or ``T`` = 1).
    b : Tensor [shape=(M,), (C, M), (B, C, M), ...]
        Numerator coefficients, same broadcasting rules (``M`` may differ from ``N+1``).
        With ``time_varying=True``: shape ``(..., C, T or 1, M)``; a 1-D ``b`` is time-invariant.
    zi : Tensor [shape=(..., C, K)], optional
        Initial state in scipy's transposed-direct-form-II convention, ``K = max(M, N+1) - 1``
        (what ``scipy.signal.lfilter(b, a, x, zi=zi)`` takes). Default: zero state.
    time_varying : bool
        Coefficients carry a time axis: ``a_k(t)``, ``b_k(t)`` are used for output sample ``t``
        (LPC-style synthesis).
    return_final : bool
        Also return the final state ``zf [shape=(..., C, K)]`` (time-invariant filters only).
    check_stability : bool
        Raise ``ValueError`` when a filter has a pole on or outside the unit circle (step-down
        test on every filter, every frame for time-varying ones).  The check synchronises with
        the device; pass ``False`` when the filters are stable by construction.
    backend : {None, "auto", "native", "triton", "torch"}, optional
        Implementation (:mod:`sps.backend`); auto: the C kernel on CPU, Triton on CUDA for
        orders <= 4, else the PyTorch loop.

    Returns
    -------
    y : Tensor [shape=(..., C, T)]
        Filtered signals; the batch shape is the broadcast of x's and the coefficients'.
    zf : Tensor [shape=(..., C, K)]
        Final state (only with ``return_final=True``), usable as ``zi`` for the next block.

    Gradients w.r.t. ``x``, ``a``, ``b`` and ``zi`` come from the analytic backward pass.
    """
    as_numpy = isinstance(x, np.ndarray)
    x = torch.as_tensor(x)
    if not x.is_floating_point() or x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"lfilter: x must be float32 or float64, got {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"lfilter: x must have shape (..., C, T), got {tuple(x.shape)}")
    a = torch.as_tensor(a, dtype=x.dtype, device=x.device)  # lists: no float32 round trip
    b = torch.as_tensor(b, dtype=x.dtype, device=x.device)
    T = x.shape[-1]
    if time_varying:
        a, b = (c.unsqueeze(0) if c.ndim == 1 else c for c in (a, b))
        for name, c in (("a", a), ("b", b)):
            if c.shape[-2] not in (1, T):
                raise ValueError(f"lfilter: time-varying {name} must have shape (..., C, T={T} or 1, "
                                 f"order+1), got {tuple(c.shape)}")
        if return_final:
            raise ValueError("lfilter: return_final is not defined for time-varying coefficients")
    for name, c in (("a", a), ("b", b)):
        if c.ndim < 1 or c.shape[-1] < 1:
            raise ValueError(f"lfilter: {name} must have shape (..., order+1), got {tuple(c.shape)}")
        if not bool(torch.isfinite(c).all()):
            raise ValueError(f"lfilter: {name} has non-finite coefficients")
    a0 = a[..., :1]
    if bool((a0 == 0).any()):
        raise ValueError("lfilter: a[..., 0] must be non-zero")
    b, a = b / a0, a[..., 1:] / a0  # normalised; autograd carries the a0 dependence
    N, M = a.shape[-1], b.shape[-1]
    K = max(N, M - 1)
    lead = 2 if time_varying else 1  # trailing coefficient axes: (order,) or (T, order)
    shapes = {"x": x.shape[:-1], "a": a.shape[:-lead], "b": b.shape[:-lead]}
    if zi is not None:
        zi = torch.as_tensor(zi, dtype=x.dtype, device=x.device)
        if zi.ndim < 1 or zi.shape[-1] != K:
            raise ValueError(f"lfilter: zi must have shape (..., C, K={K}) for len(a)={N + 1}, "
                             f"len(b)={M}, got {tuple(zi.shape)}")
        shapes["zi"] = zi.shape[:-1]
    try:
        batch = torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        desc = ", ".join(f"{k}{tuple(v)}" for k, v in shapes.items())
        raise ValueError(f"lfilter: batch shapes do not broadcast ({desc}; x is (..., C, T), "
                         f"coefficients (..., C, order+1))") from None
    if check_stability and N > 0:
        check_stable(a.detach(), normalised=True)

    if T == 0:  # nothing to filter: the state passes through (as scipy does)
        y = x.new_zeros(*batch, 0) + 0 * b.sum() + 0 * a.sum()   # keeps the autograd graph
        zf = (zi.expand(*batch, K) + 0 if zi is not None else x.new_zeros(*batch, K))
        if not return_final:
            return y.detach().numpy() if as_numpy else y
        return (y.detach().numpy(), zf.detach().numpy()) if as_numpy else (y, zf)
    flat = _Flat.build(x, a, b, zi, batch, time_varying, K)
    backend = pick_backend(x, flat, backend)
    y = _LFilter.apply(flat.x, flat.b, flat.a, flat.zi, flat, backend).reshape(*batch, T)
    if not return_final:
        return y.numpy() if as_numpy else y
    zf = _final_state(x, y, a, b, zi, K)
    return (y.numpy(), zf.detach().numpy()) if as_numpy else (y, zf)


def check_stable(a: torch.Tensor, normalised: bool = False) -> None:
    """Raise ``ValueError`` unless every filter ``1 / a(z)`` is strictly stable.

    Uses the step-down (Schur-Cohn) recursion: ``a`` is stable iff all its reflection
    coefficients satisfy ``|k_m| < 1``.

    Parameters
    ----------
    a : Tensor [shape=(..., N+1)] or [shape=(..., N)] when ``normalised`` (``a[0] = 1`` dropped)
    """
    a = a.detach().to(torch.float64)
    if not normalised:
        a = a[..., 1:] / a[..., :1]
    shape = a.shape[:-1]
    p = a.reshape(-1, a.shape[-1])
    bad = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
    worst = torch.zeros(p.shape[0], dtype=torch.float64, device=p.device)
    for m in range(p.shape[-1], 0, -1):  # p holds a_1..a_m of the degree-m polynomial
        k = p[:, m - 1]
        worst = torch.maximum(worst, k.abs())
        bad |= k.abs() >= 1
        denom = torch.where(bad, torch.ones_like(k), 1 - k * k)
        p = (p[:, : m - 1] - k[:, None] * p[:, : m - 1].flip(-1)) / denom[:, None]
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0])
        where = tuple(int(i) for i in np.unravel_index(first, tuple(shape))) if shape else ()
        raise ValueError(
            f"lfilter: unstable filter at index {where} of the coefficients' batch shape "
            f"{tuple(shape)} (a pole on or outside the unit circle: reflection coefficient "
            f"|k| = {float(worst[first]):.4g} >= 1); pass check_stability=False to filter anyway")


# ------------------------------------------------------------------ flattening
@dataclass
class _Flat:
    """Operands flattened to rows: output row ``r`` reads ``x[xidx[r]]``, ``b[bidx[r]]``..."""

    x: torch.Tensor      # (Rx, T)
    b: torch.Tensor      # (Rb, Tb, M), Tb in {1, T}
    a: torch.Tensor      # (Ra, Ta, N), normalised
    zi: torch.Tensor | None  # (R, K)
    xidx: torch.Tensor   # (R,) int64
    bidx: torch.Tensor
    aidx: torch.Tensor
    K: int

    @staticmethod
    def build(x, a, b, zi, batch, time_varying, K):
        T = x.shape[-1]
        lead = 2 if time_varying else 1

        def rows(c):
            n = math.prod(c.shape[:-lead])
            return c.reshape(n, c.shape[-2] if time_varying else 1, c.shape[-1]).contiguous()

        def index(shape):
            n = math.prod(shape)
            return torch.arange(n, device=x.device).reshape(shape).expand(batch).reshape(-1).contiguous()

        R = math.prod(batch)
        zi2 = None if zi is None else zi.expand(*batch, K).reshape(R, K).contiguous()
        return _Flat(x.reshape(-1, T).contiguous(), rows(b), rows(a), zi2,
                     index(x.shape[:-1]), index(b.shape[:-lead]), index(a.shape[:-lead]), K)


def pick_backend(x: torch.Tensor, flat: "_Flat", backend: str | None = None) -> str:
    """Resolve ``backend`` for ``x`` (see :mod:`sps.backend`)."""
    unusable = {}
    if flat.K > native.KMAX:
        unusable["triton"] = f"filter order <= {native.KMAX} (got {flat.K})"
    return resolve_backend(backend, x.device, what="lfilter", choices=("native", "triton", "torch"),
                           native=native.library, unusable=unusable)


def _final_state(x, y, a, b, zi, K):
    """scipy's final TDF-II state ``zf[i] = sum_{k>i} b_k x[T+i-k] - a_k y[T+i-k] (+ zi[T+i])``."""
    T = x.shape[-1]
    if K == 0:
        return y.new_zeros(*y.shape[:-1], 0)
    bp = torch.nn.functional.pad(b, (0, K + 1 - b.shape[-1]))
    ap = torch.nn.functional.pad(torch.nn.functional.pad(a, (1, 0), value=1.0), (0, K - a.shape[-1]))
    xl = torch.nn.functional.pad(x[..., max(T - K, 0):], (max(K - T, 0), 0))  # x[T-K .. T-1]
    yl = torch.nn.functional.pad(y[..., max(T - K, 0):], (max(K - T, 0), 0))
    zf = [(bp[..., i + 1:] * xl[..., i:].flip(-1)).sum(-1) - (ap[..., i + 1:] * yl[..., i:].flip(-1)).sum(-1)
          for i in range(K)]
    zf = torch.stack(torch.broadcast_tensors(*zf), -1)
    if zi is not None and T < K:
        zf = zf + torch.nn.functional.pad(zi[..., T:], (0, T))
    return zf


# -------------------------------------------------------------- autograd glue
class _LFilter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2, b2, a2, zi2, flat, backend):
        if backend == "native":
            y = native.forward(native.library(), x2, flat.xidx, b2, flat.bidx, a2, flat.aidx, zi2, flat.K)
        else:
            v = _fir(x2[flat.xidx], b2[flat.bidx])
            if zi2 is not None:
                k = min(flat.K, v.shape[-1])
                v[:, :k] += zi2[:, :k]
            y = _allpole(v, a2, flat.aidx, backend)
        ctx.save_for_backward(x2, b2, a2, y)
        ctx.flat, ctx.backend = flat, backend
        return y

    @staticmethod
    def backward(ctx, gy):
        x2, b2, a2, y = ctx.saved_tensors
        flat, backend = ctx.flat, ctx.backend
        need_x, _, _, need_zi = ctx.needs_input_grad[:4]
        gy = gy.contiguous()
        if backend == "native":
            dx, db, da, dzi = native.backward(native.library(), gy, x2, flat.xidx, y, b2, flat.bidx,
                                                a2, flat.aidx, flat.K, need_x, need_zi)
        else:
            dx, db, da, dzi = _backward_rows(gy, x2[flat.xidx], y, b2[flat.bidx], a2, flat.aidx,
                                             flat.K, need_x, need_zi, backend)
        return (_gather_rows(dx, flat.xidx, x2) if need_x else None,
                _gather_rows(db, flat.bidx, b2), _gather_rows(da, flat.aidx, a2),
                dzi if need_zi else None, None, None)


def _gather_rows(g, idx, like):
    """Sum per-output-row gradients into the rows of the (broadcast) operand ``like``."""
    if g.shape[0] == like.shape[0] and bool((idx == torch.arange(idx.numel(), device=idx.device)).all()):
        return g
    return like.new_zeros(like.shape).index_add_(0, idx, g)


# ------------------------------------------------------------ pure-torch path
def _fir(X, B):
    """``v[r, t] = sum_k B[r, t|0, k] X[r, t-k]``. X (R, T), B (R, Tb, M)."""
    T = X.shape[-1]
    v = X * B[:, :, 0]
    for k in range(1, min(B.shape[-1], T)):
        v[:, k:] += X[:, : T - k] * B[:, k:, k] if B.shape[1] > 1 else X[:, : T - k] * B[:, :, k]
    return v


def _allpole(v, a2, aidx, backend="torch"):
    """``y[r, t] = v[r, t] - sum_k A[r, t|0, k-1] y[r, t-k]`` for ``A = a2[aidx]``."""
    if a2.shape[-1] == 0:
        return v
    if backend == "triton":
        from sps.dsp import _triton
        return _triton.allpole(v, a2, aidx)
    A = a2[aidx]
    R, T = v.shape
    N = A.shape[-1]
    vT = v.t().contiguous()
    AT = A.transpose(0, 1).contiguous()  # (Ta, R, N)
    yT = torch.empty_like(vT)
    hist = v.new_zeros(R, N)  # hist[:, k-1] = y[t-k]
    for t in range(T):
        yt = vT[t] - (AT[t if AT.shape[0] > 1 else 0] * hist).sum(-1)
        yT[t] = yt
        hist = torch.cat([yt[:, None], hist[:, :-1]], 1)
    return yT.t().contiguous()


def _shift_coeffs(A):
    """``S[r, t, k-1] = A[r, t+k, k-1]`` (0 past the end): the coefficients the adjoint uses at t."""
    T, N = A.shape[1], A.shape[-1]
    S = torch.zeros_like(A)
    for k in range(1, N + 1):
        S[:, : T - k, k - 1] = A[:, k:, k - 1]
    return S


def _backward_rows(gy, X, y, B, a2, aidx, K, need_x, need_zi, backend):
    """Per-row gradients (same contract as :func:`sps.dsp.native.backward`)."""
    R, T = gy.shape
    Tb, Ta, M, N = B.shape[1], a2.shape[1], B.shape[-1], a2.shape[-1]
    if Ta > 1:  # time-varying: the adjoint reads a_k(t+k), shifted, reversed in time
        A = a2[aidx]
        g = _allpole(gy.flip(-1), _shift_coeffs(A).flip(1), torch.arange(R, device=gy.device), backend)
    else:
        g = _allpole(gy.flip(-1), a2, aidx, backend)
    g = g.flip(-1)
    dx = None
    if need_x:
        dx = g * B[:, :, 0]
        for k in range(1, min(M, T)):
            gb = g[:, k:] * (B[:, k:, k] if Tb > 1 else B[:, :, k])
            dx[:, : T - k] += gb
    db = torch.zeros(R, T, M, dtype=gy.dtype, device=gy.device)
    da = torch.zeros(R, T, N, dtype=gy.dtype, device=gy.device)
    for k in range(min(M, T)):
        db[:, k:, k] = g[:, k:] * X[:, : T - k]
    for k in range(1, min(N, T - 1) + 1):
        da[:, k:, k - 1] = -g[:, k:] * y[:, : T - k]
    db = db if Tb > 1 else db.sum(1, keepdim=True)
    da = da if Ta > 1 else da.sum(1, keepdim=True)
    dzi = None
    if need_zi:
        dzi = gy.new_zeros(R, K)
        dzi[:, : min(K, T)] = g[:, : min(K, T)]
    return dx, db, da, dzi
