"""Batched solver for symmetric positive definite banded systems (banded LDL^T).

Three interchangeable backends compute the same factorisation and solve:

* ``"torch"``: the pure-PyTorch reference (any device; a Python loop over time,
  vectorised over systems). It is the oracle the other backends are tested against.
* ``"native"``: a C kernel with OpenMP across systems (CPU, float32/float64).
* ``"triton"``: a Triton kernel with one thread per system (CUDA).

``backend=None`` picks Triton on CUDA, the C kernel on CPU, and falls back to the
reference when neither is available.

Internal layout ("row form"): ``band [shape=(NO, T, K, NI)]`` with
``band[o, t, k, i] = A[t, t-k]`` of system ``(o, i)``; ``K - 1`` is the bandwidth.
Entries with ``t - k < 0`` are ignored. The factor has the same layout:
``factor[..., t, 0, :] = 1 / D_t`` and ``factor[..., t, k, :] = L[t, t-k]`` of
``A = L D L^T`` with unit lower-triangular ``L``.
"""
from __future__ import annotations

import numpy as np
import torch

from sps.backend import resolve_backend

from . import native

def ldl_solve_torch(band: torch.Tensor | None, rhs: torch.Tensor,
                    factor: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference banded LDL^T factorisation and solve (pure PyTorch).

    Parameters
    ----------
    band : Tensor [shape=(NO, T, K, NI)] or None
        Row-form band; ignored when ``factor`` is given.
    rhs : Tensor [shape=(NO, T, NI)]
    factor : Tensor [shape=(NO or 1, T, K, NI or 1)], optional
        A factor from an earlier call (broadcast over size-1 system axes).

    Returns
    -------
    factor : Tensor [shape=(NO, T, K, NI)] (or the given one)
    x : Tensor [shape=(NO, T, NI)]
    """
    T = rhs.shape[1]
    if T == 0:
        return (band if factor is None else factor), rhs.clone()
    if factor is None:
        K = band.shape[2]
        P = K - 1
        rows = []  # rows[t][k], k = 0..K-1
        for t in range(T):
            p = min(t, P)
            u = [None] * K
            row = [torch.zeros_like(band[:, t, 0])] * K
            for k in range(p, 0, -1):
                v = band[:, t, k]
                for m in range(k + 1, p + 1):
                    v = v - u[m] * rows[t - k][m - k]
                u[k] = v
                row[k] = v * rows[t - k][0]
            d = band[:, t, 0]
            for k in range(1, p + 1):
                d = d - u[k] * row[k]
            row[0] = 1 / d
            rows.append(row)
        factor = torch.stack([torch.stack(r, 1) for r in rows], 1)
    K = factor.shape[2]
    z = []
    for t in range(T):
        v = rhs[:, t]
        for k in range(1, min(t, K - 1) + 1):
            v = v - factor[:, t, k] * z[t - k]
        z.append(v)
    x = [None] * T
    for t in range(T - 1, -1, -1):
        v = z[t] * factor[:, t, 0]
        for k in range(1, min(K - 1, T - 1 - t) + 1):
            v = v - factor[:, t + k, k] * x[t + k]
        x[t] = v
    return factor, torch.stack(x, 1)


def pick_backend(device: torch.device, dtype: torch.dtype, backend: str | None = None) -> str:
    """Resolve ``backend`` (None or ``"auto"``: Triton on CUDA, the C kernel on CPU, else
    the PyTorch reference) for tensors on ``device`` (see :mod:`sps.backend`)."""
    unusable = {}
    if dtype not in (torch.float32, torch.float64):
        unusable["native"] = unusable["triton"] = f"float32 or float64 tensors (got {dtype})"
    return resolve_backend(backend, device, what="banded solver", choices=("triton", "native", "torch"),
                           native=native.library, unusable=unusable)


def ldl_solve(band: torch.Tensor | None, rhs: torch.Tensor, factor: torch.Tensor | None = None,
              backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Factorise (unless ``factor`` is given) and solve, on the chosen backend.

    Same contract as :func:`ldl_solve_torch`. Inputs may be strided views; the
    outputs are new contiguous tensors.
    """
    name = pick_backend(rhs.device, rhs.dtype, backend)
    if rhs.numel() == 0:  # nothing to launch a kernel for
        name = "torch"
    if name == "native":
        return native.ldl_solve(band, rhs, factor)
    if name == "triton":
        from . import _triton
        return _triton.ldl_solve(band, rhs, factor)
    return ldl_solve_torch(band, rhs, factor)


def _lower_to_rows(ab: torch.Tensor) -> torch.Tensor:
    """LAPACK lower band ``ab[..., k, j] = A[j+k, j]`` -> row form ``(1, T, K, N)``."""
    K, T = ab.shape[-2:]
    flat = ab.reshape(-1, K, T)
    rows = flat.new_zeros(T, K, flat.shape[0])
    for k in range(min(K, T)):
        rows[k:, k] = flat[:, k, :T - k].T
    return rows.unsqueeze(0)


class _BandedSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ab, b, backend):
        K, T = ab.shape[-2:]
        rows = _lower_to_rows(ab)
        factor, x = ldl_solve(rows, b.reshape(-1, T).T.unsqueeze(0), backend=backend)
        x = x[0].T
        ctx.save_for_backward(factor, x)
        ctx.backend = backend
        return x.reshape(b.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        factor, x = ctx.saved_tensors
        _, T, K, N = factor.shape
        # adjoint: A lam = grad (A is symmetric, so the same factor serves)
        _, lam = ldl_solve(None, grad.reshape(N, T).T.unsqueeze(0), factor, backend=ctx.backend)
        lam = lam[0].T
        gab = lam.new_zeros(N, K, T)
        gab[:, 0] = -lam * x
        for k in range(1, min(K, T)):
            gab[:, k, :T - k] = -(lam[:, k:] * x[:, :T - k] + lam[:, :T - k] * x[:, k:])
        shape = grad.shape[:-1] + (K, T)
        return gab.reshape(shape), lam.reshape(grad.shape), None


def solve_banded(ab, b, *, backend: str | None = None):
    """Solve many symmetric positive definite banded systems ``A x = b`` at once.

    The band is given in LAPACK/SciPy lower form, so for a single system this is
    ``scipy.linalg.solveh_banded(ab, b, lower=True)``. The factorisation is a banded
    LDL^T (no square roots), O(T K^2) per system. Differentiable with respect to
    ``ab`` and ``b`` (the backward pass is one more solve with the same factor).

    Parameters
    ----------
    ab : Tensor or ndarray [shape=(..., K, T)]
        Lower band: ``ab[..., k, j] = A[j + k, j]`` for ``k = 0 .. K - 1`` (``K - 1``
        sub-diagonals); entries past the end of a diagonal are ignored. ``A`` must be
        positive definite; this is not checked.
    b : Tensor or ndarray [shape=(..., T)]
        Right-hand sides; batch shape equal to that of ``ab``.
    backend : {None, "auto", "torch", "native", "triton"}
        None/auto chooses Triton on CUDA, the C kernel on CPU, else the PyTorch reference.

    Returns
    -------
    Tensor or ndarray [shape=(..., T)]
        The solution, in ``b``'s type and dtype (half and bfloat16 are solved in
        float32).
    """
    as_numpy = isinstance(b, np.ndarray)
    ab_t = torch.as_tensor(ab)
    b_t = torch.as_tensor(b, device=ab_t.device)
    if ab_t.dim() < 2 or b_t.shape != ab_t.shape[:-2] + ab_t.shape[-1:]:
        raise ValueError(f"solve_banded: ab must be (..., K, T) and b (..., T) with the same batch "
                         f"shape, got ab {tuple(ab_t.shape)} and b {tuple(b_t.shape)}")
    out_dtype = torch.promote_types(ab_t.dtype, b_t.dtype)
    work = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    x = _BandedSolve.apply(ab_t.to(work), b_t.to(work), backend).to(out_dtype)
    return x.detach().numpy() if as_numpy else x
