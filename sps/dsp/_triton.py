"""Triton kernel for the all-pole recursion of :func:`sps.dsp.lfilter` (CUDA).

One program filters a block of ``BLOCK_R`` rows; the recursion over time runs in
registers (up to order 4, states ``y1..y4``), vectorised across the rows of the block.
The signal is read and written in ``(BLOCK_R, CHUNK)`` tiles so that global memory
latency is paid once per chunk, not once per sample: inside a chunk, column ``j`` is
extracted from the register tile with a masked reduction.  The FIR part and the
coefficient gradients are plain tensor ops (see :mod:`sps.dsp.lfilter`), and the
backward pass reuses this kernel on the time-reversed gradient.

Triton is optional: :func:`available` is False without it, and the logic is tested
on CPU with ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import os

import torch

KMAX = 4
_kernels: dict[bool, object] = {}


def available() -> bool:
    """True when Triton is installed (checked without importing it: ``TRITON_INTERPRET``
    must be set before triton's first import to take effect)."""
    import importlib.util
    return importlib.util.find_spec("triton") is not None


def _build():
    import triton
    import triton.language as tl

    def allpole_kernel(v_ptr, a_ptr, aidx_ptr, y_ptr, R, T, a_rs, a_ts,
                       N: tl.constexpr, TV: tl.constexpr, BLOCK_R: tl.constexpr,
                       CHUNK: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        rmask = rows < R
        # integer zeros over the rows: adding it turns a scalar time index into a
        # block *before* comparing, so the mask is a block comparison (bool data
        # under TRITON_INTERPRET, where a broadcast scalar comparison is int32 and
        # triton >= 3.9 rejects it as a load mask); folded away when compiled
        rzero = tl.zeros_like(rows)
        abase = a_ptr + tl.load(aidx_ptr + rows, mask=rmask, other=0) * a_rs
        zero = tl.zeros((BLOCK_R,), dtype=y_ptr.dtype.element_ty)
        a1, a2, a3, a4 = zero, zero, zero, zero
        if not TV:
            a1 = tl.load(abase, mask=rmask, other=0.0)
            if N >= 2:
                a2 = tl.load(abase + 1, mask=rmask, other=0.0)
            if N >= 3:
                a3 = tl.load(abase + 2, mask=rmask, other=0.0)
            if N >= 4:
                a4 = tl.load(abase + 3, mask=rmask, other=0.0)
        y1, y2, y3, y4 = zero, zero, zero, zero
        cols = tl.arange(0, CHUNK)
        for t0 in range(0, T, CHUNK):
            tt = t0 + cols
            mask = rmask[:, None] & (tt < T)[None, :]
            offs = rows[:, None].to(tl.int64) * T + tt[None, :]
            vt = tl.load(v_ptr + offs, mask=mask, other=0.0)
            out = tl.zeros((BLOCK_R, CHUNK), dtype=y_ptr.dtype.element_ty)
            for j in tl.static_range(CHUNK):
                sel = cols[None, :] == j
                acc = tl.sum(tl.where(sel, vt, 0.0), axis=1)
                if TV:
                    at = abase + (t0 + j) * a_ts
                    am = rmask & (rzero + (t0 + j) < T)
                    a1 = tl.load(at, mask=am, other=0.0)
                    if N >= 2:
                        a2 = tl.load(at + 1, mask=am, other=0.0)
                    if N >= 3:
                        a3 = tl.load(at + 2, mask=am, other=0.0)
                    if N >= 4:
                        a4 = tl.load(at + 3, mask=am, other=0.0)
                if N >= 4:
                    acc -= a4 * y4
                if N >= 3:
                    acc -= a3 * y3
                if N >= 2:
                    acc -= a2 * y2
                acc -= a1 * y1
                y4, y3, y2, y1 = y3, y2, y1, acc
                out = tl.where(sel, acc[:, None], out)
            tl.store(y_ptr + offs, out, mask=mask)

    return triton.jit(allpole_kernel)


def _kernel():
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if interpret not in _kernels:
        _kernels[interpret] = _build()
    return _kernels[interpret]


def allpole(v: torch.Tensor, a2: torch.Tensor, aidx: torch.Tensor,
            block_r: int = 32, chunk: int = 16) -> torch.Tensor:
    """``y[r, t] = v[r, t] - sum_k a2[aidx[r], t|0, k-1] y[r, t-k]`` (order <= 4).

    Parameters
    ----------
    v : Tensor [shape=(R, T)]
    a2 : Tensor [shape=(Ra, Ta, N)]  normalised denominators without ``a_0``, ``Ta`` in {1, T}
    aidx : Tensor [shape=(R,)] int64 row map
    """
    R, T = v.shape
    N = a2.shape[-1]
    if not 1 <= N <= KMAX:
        raise ValueError(f"triton lfilter kernel supports orders 1..{KMAX}, got {N}")
    v = v.contiguous()
    a2 = a2.contiguous()
    y = torch.empty_like(v)
    tv = a2.shape[1] > 1
    grid = (triton_cdiv(R, block_r),)
    _kernel()[grid](v, a2, aidx.contiguous(), y, R, T, a2.shape[1] * N, N if tv else 0,
                    N=N, TV=tv, BLOCK_R=block_r, CHUNK=chunk)
    return y


def triton_cdiv(n: int, d: int) -> int:
    return -(-n // d)
