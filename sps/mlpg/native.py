"""Calls into the C kernels (``sps/native/banded.c``, OpenMP across systems) for the
banded LDL^T solve and the fused CPU MLPG.

Layouts and algorithms are those of :func:`sps.mlpg.banded.ldl_solve_torch` and of
the PyTorch path in :mod:`sps.mlpg.core`, which are the references these kernels
are tested against. Systems are processed in chunks of up to ``CH`` neighbouring
inner indices so the innermost loops run over contiguous memory and vectorise;
OpenMP spreads the chunks over threads.

* ``ldl_solve``: factorise a row-form band (or reuse a factor) and solve.
* ``mlpg_fwd``: MLPG forward for one (utterance, chunk of dimensions) at a time:
  precisions, the band of ``W^T P W`` and the right-hand side ``W^T P mu`` are
  formed on the fly from a small ring buffer of frames, so means and variances are
  read once and only the factor and the solution are written.
* ``mlpg_bwd``: the adjoint solve ``A lam = g`` with the forward factor, then the
  gradients ``P W lam`` (means) and ``-p^2 (W lam) (mu - W x)`` (variances).
The window algebra comes from the tables of :func:`sps.mlpg.windows.taps` and
:func:`sps.mlpg.windows.band_terms`, and the per-window edge table from
:func:`sps.mlpg.windows.edge_widths`, all shared with the PyTorch path.
"""
from __future__ import annotations

import ctypes
import math
from functools import lru_cache

import torch

from sps import native

from .windows import DEFAULT_EDGE, band_terms, bandwidth, edge_widths, taps

_I = ctypes.c_int64


def library():
    """The compiled kernels, or None (no compiler / ``SPS_NO_NATIVE=1``)."""
    return native.library("banded")


def _call(name: str, dtype: torch.dtype, *args, bad=None, describe=None) -> None:
    """Call kernel ``name``; a domain/definiteness failure raises ``describe(flat index)``."""
    fn = f"{name}_{'f32' if dtype == torch.float32 else 'f64'}"
    status = getattr(library(), fn)(*args)
    if status in (native.EDOMAIN, native.ENOTPD) and describe is not None and int(bad.max()) >= 0:
        raise ValueError(describe(int(bad[0]) if int(bad[0]) >= 0 else int(bad.max())))
    native.check(status, fn)


def _strides(t: torch.Tensor):
    s = [st if n > 1 else 0 for st, n in zip(t.stride(), t.shape)]
    return (ctypes.c_int64 * len(s))(*s)


def _threads(outer: int, inner: int, per_system: int) -> int:
    """Threads for ``outer * inner`` systems (blocks of :func:`_chunk` lanes)."""
    blocks = outer * -(-inner // _chunk(inner))
    return native.threads(blocks, 4.0 * outer * inner * per_system)


def _chunk(n: int) -> int:
    """Lanes per block: at most 64, balanced over the blocks a row splits into."""
    nch = max(1, -(-n // 64))
    return max(1, -(-n // nch))


def ldl_solve(band, rhs, factor):
    """See :func:`sps.mlpg.banded.ldl_solve`; CPU tensors, float32 or float64."""
    NO, T, NI = rhs.shape
    x = torch.empty(NO, T, NI, dtype=rhs.dtype)
    factorize = factor is None
    if factorize:
        factor = torch.empty(NO, T, band.shape[2], NI, dtype=rhs.dtype)
    src = band if factorize else factor  # band is not read when the factor is given
    K, ch = factor.shape[2], _chunk(NI)
    bad = torch.full((1,), -1, dtype=torch.int64)

    def describe(i: int) -> str:
        o, rest = divmod(i, T * NI)
        t, j = divmod(rest, NI)
        return (f"banded solve: the matrix of system ({o}, {j}) is not positive definite "
                f"(pivot of row {t} <= 0 or NaN)")
    _call("ldl_solve", rhs.dtype,
          native.ptr(src), _strides(src), native.ptr(rhs), _strides(rhs), native.ptr(factor),
          _strides(factor), native.ptr(x), _strides(x), NO, T, K, NI, ch, int(factorize),
          native.ptr(bad), _threads(NO, NI, T * K), bad=bad, describe=describe)
    return factor, x


@lru_cache(maxsize=64)
def _tables(windows, edge_rule: str = DEFAULT_EDGE):
    def arr(ctype, values):
        return (ctype * max(1, len(values)))(*values)
    bt, tp = band_terms(windows), taps(windows)
    edge = arr(_I, list(edge_widths(windows, edge_rule)))
    shifts = [s for _, s, _ in tp]
    return (edge, len(bt), arr(_I, [e[0] for e in bt]), arr(_I, [e[1] for e in bt]),
            arr(_I, [e[2] for e in bt]), arr(ctypes.c_double, [e[3] for e in bt]),
            len(tp), arr(_I, [e[0] for e in tp]), arr(_I, [e[1] for e in tp]),
            arr(ctypes.c_double, [e[2] for e in tp]), min(shifts), max(shifts))


def _bt_strides(t: torch.Tensor, B: int, T: int):
    """(b, t) strides of a (..., T, F) tensor broadcast to (B, T, F); 0 where broadcast."""
    t = t.expand(B, T, t.shape[-1])
    return (ctypes.c_int64 * 2)(*_strides(t)[:2])


def _prep(means, variances, lengths):
    B, T, F = means.shape
    var = None
    if variances is not None:
        var = variances if variances.stride(-1) == 1 else variances.contiguous()
    ln = None if lengths is None else lengths.to(torch.int64).contiguous()
    return (native.ptr(means), _bt_strides(means, B, T),
            None if var is None else native.ptr(var),
            None if var is None else _bt_strides(var, B, T),
            None if ln is None else native.ptr(ln)), (var, ln)


def mlpg_forward(means, variances, windows, lengths, factor=None, edge: str = DEFAULT_EDGE):
    """Fused MLPG forward on CPU.

    Parameters
    ----------
    means : Tensor [shape=(B, T, W*D)], last axis contiguous
    variances : Tensor broadcasting to ``means`` with the same last axis, or None
        (unit variances; then ``factor`` must be given).
    lengths : Tensor [shape=(B,)] or None
    factor : Tensor [shape=(B or 1, T, K, D or 1)], optional
        Reuse this factor instead of factorising.
    edge : str
        Edge rule (:func:`sps.mlpg.windows.edge_widths`).

    Returns
    -------
    factor : Tensor [shape=(B, T, K, D)] (or the given one)
    x : Tensor [shape=(B, T, D)]
    """
    B, T, F = means.shape
    W = len(windows)
    D = F // W
    K = bandwidth(windows) + 1
    if means.stride(-1) != 1:
        means = means.contiguous()
    args, keep = _prep(means, variances, lengths)  # keep: buffers behind the pointers
    factorize = factor is None
    if factorize:
        factor = torch.empty(B, T, K, D, dtype=means.dtype)
    x = torch.empty(B, T, D, dtype=means.dtype)
    bad = torch.full((2,), -1, dtype=torch.int64)   # [input entry, pivot]
    _call("mlpg_fwd", means.dtype, *args, native.ptr(factor), _strides(factor), int(factorize),
          native.ptr(x), B, T, W, D, K, _chunk(D), *_tables(windows, edge), native.ptr(bad),
          _threads(B, D, T * K * W), bad=bad, describe=lambda i: describe_bad(i, means, variances, W, D))
    return factor, x


def describe_bad(i: int, means: torch.Tensor, variances: torch.Tensor | None, W: int, D: int) -> str:
    """Message for the first bad entry ``i`` (flat index into ``(B, T, W * D)``)."""
    B, T, F = means.shape
    b, rest = divmod(i, T * F)
    t, col = divmod(rest, F)
    w, d = divmod(col, D)
    where = f"(batch {b}, frame {t}, dim {col}: window {w} of static dim {d})"
    m = float(means[b, t, col])
    if variances is not None:
        v = float(variances.expand(B, T, F)[b, t, col])
        if not (v > 0 and math.isfinite(v)):
            return f"mlpg: variance {v} at {where}; variances must be positive and finite"
    if not math.isfinite(m):
        return f"mlpg: mean {m} at {where}; means must be finite"
    return f"mlpg: the system of {where} is not positive definite"


def mlpg_backward(grad, factor, x, means, variances, windows, lengths, edge: str = DEFAULT_EDGE):
    """Fused MLPG backward on CPU: the adjoint solve with ``factor`` and the gradients.

    Returns ``(grad_means, grad_var)``, both of shape (B, T, W*D); ``grad_var`` is
    None for unit variances (``variances`` None).
    """
    B, T, F = means.shape
    W = len(windows)
    D = F // W
    if means.stride(-1) != 1:
        means = means.contiguous()
    grad, x = grad.contiguous(), x.contiguous()
    args, keep = _prep(means, variances, lengths)  # keep: buffers behind the pointers
    lam = torch.empty(B, T, D, dtype=means.dtype)
    gmu = torch.empty(B, T, F, dtype=means.dtype)
    gvar = torch.empty(B, T, F, dtype=means.dtype) if variances is not None else None
    tables = _tables(windows, edge)
    _call("mlpg_bwd", means.dtype,
          native.ptr(grad), native.ptr(factor), _strides(factor), native.ptr(x), *args,
          native.ptr(lam), native.ptr(gmu), None if gvar is None else native.ptr(gvar),
          B, T, W, D, factor.shape[2], _chunk(D), tables[0], *tables[6:10], _threads(B, D, T * factor.shape[2] * W))
    return gmu, gvar
