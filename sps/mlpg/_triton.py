"""Triton kernel for the banded LDL^T solve: one GPU thread per system.

Same layouts and algorithm as :func:`sps.mlpg.banded.ldl_solve_torch`. Each
program owns ``BLOCK`` neighbouring systems (neighbouring inner indices, so every
load and store is coalesced) and runs the recursion over time with the last ``P``
factor rows and partial solutions held in registers (tuples indexed at compile
time). Loads are issued ``CHUNK`` time steps ahead of the recursion so their
latency overlaps. The bandwidth is a compile-time constant, so one kernel is built
per bandwidth. Under ``TRITON_INTERPRET=1`` (set before Triton is imported) the same
kernel runs on CPU tensors, which is how the tests check it without a GPU.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _load_row(ptr, s, ok, K: tl.constexpr, diag_other):
    """Entries k = 0..K-1 (stride s) of one row as a tuple; masked entries read 0
    (the diagonal reads ``diag_other``)."""
    row = (tl.load(ptr, mask=ok, other=diag_other),)
    for k in tl.static_range(1, K):
        row = row + (tl.load(ptr + k * s, mask=ok, other=0.0),)
    return row


@triton.jit
def _ldl_kernel(band_ptr, sb0, sb1, sb2, sb3, rhs_ptr, sr0, sr1, sr2,
                fac_ptr, sf0, sf1, sf2, sf3, x_ptr, sx0, sx1, sx2, T, NI,
                K: tl.constexpr, FACTORIZE: tl.constexpr, BLOCK: tl.constexpr,
                CHUNK: tl.constexpr):
    P: tl.constexpr = K - 1
    o = tl.program_id(0)
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = i < NI
    # integer zeros over the systems: time indices are made blocks before they are
    # compared, so masks are block comparisons (bool under TRITON_INTERPRET, where a
    # broadcast scalar comparison is int32 and triton >= 3.9 rejects it as a mask)
    izero = tl.zeros_like(i)
    band = band_ptr + o * sb0 + i * sb3
    fac = fac_ptr + o * sf0 + i * sf3
    rhs = rhs_ptr + o * sr0 + i * sr2
    x = x_ptr + o * sx0 + i * sx2
    zero = tl.zeros([BLOCK], dtype=x_ptr.dtype.element_ty)
    # rows[q][k] = factor row t-1-q; zs[q] = z[t-1-q]; zero rows stand for t < 0
    rows = ((zero,) * K,) * P
    zs = (zero,) * P
    for t0 in range(0, T, CHUNK):
        # issue the loads of CHUNK time steps before the recursion needs them
        Ab = ()
        Rb = ()
        for u in tl.static_range(CHUNK):
            ok = live & (izero + (t0 + u) < T)
            if FACTORIZE:
                Ab = Ab + (_load_row(band + (t0 + u) * sb1, sb2, ok, K, 1.0),)
            else:
                Ab = Ab + (_load_row(fac + (t0 + u) * sf1, sf2, ok, K, 0.0),)
            Rb = Rb + (tl.load(rhs + (t0 + u) * sr1, mask=ok, other=0.0),)
        for u in tl.static_range(CHUNK):
            t = t0 + u
            ok = live & (izero + t < T)
            if FACTORIZE:
                us = (zero,) * K  # us[k] = L[t][t-k] * D[t-k]
                row = (zero,) * K
                for k in tl.static_range(P, 0, -1):  # j = t - k for k = P .. 1
                    v = tl.where(t >= k, Ab[u][k], zero)
                    for m in tl.static_range(k + 1, P + 1):
                        v -= us[m] * rows[k - 1][m - k]
                    us = us[:k] + (v,) + us[k + 1:]
                    row = row[:k] + (v * rows[k - 1][0],) + row[k + 1:]
                d = Ab[u][0]
                for k in tl.static_range(1, P + 1):
                    d -= us[k] * row[k]
                row = (1.0 / d,) + row[1:]
                for k in tl.static_range(K):
                    tl.store(fac + t * sf1 + k * sf2, row[k], mask=ok)
            else:
                row = Ab[u]
            z = Rb[u]
            for k in tl.static_range(1, P + 1):
                z -= row[k] * zs[k - 1]
            tl.store(x + t * sx1, z, mask=ok)
            if P > 0:
                rows = (row,) + rows[:P - 1]
                zs = (z,) + zs[:P - 1]
    # back substitution; nxt[q] = factor row t+1+q, xs[q] = x[t+1+q]
    nxt = ((zero,) * K,) * P
    xs = (zero,) * P
    for s0 in range(0, T, CHUNK):
        Fb = ()
        Zb = ()
        for u in tl.static_range(CHUNK):
            t = T - 1 - s0 - u
            ok = live & (izero + t >= 0)
            Fb = Fb + (_load_row(fac + t * sf1, sf2, ok, K, 0.0),)
            Zb = Zb + (tl.load(x + t * sx1, mask=ok, other=0.0),)
        for u in tl.static_range(CHUNK):
            t = T - 1 - s0 - u
            row = Fb[u]
            v = Zb[u] * row[0]
            for k in tl.static_range(1, P + 1):
                v -= nxt[k - 1][k] * xs[k - 1]
            tl.store(x + t * sx1, v, mask=live & (izero + t >= 0))
            if P > 0:
                nxt = (row,) + nxt[:P - 1]
                xs = (v,) + xs[:P - 1]


def _strides(t: torch.Tensor):
    return [st if n > 1 else 0 for st, n in zip(t.stride(), t.shape)]


def ldl_solve(band, rhs, factor, block: int = 32, chunk: int = 8):
    """See :func:`sps.mlpg.banded.ldl_solve`; CUDA tensors (or CPU under TRITON_INTERPRET=1)."""
    NO, T, NI = rhs.shape
    x = torch.empty(NO, T, NI, dtype=rhs.dtype, device=rhs.device)
    factorize = factor is None
    if factorize:
        K = band.shape[2]
        factor = torch.empty(NO, T, K, NI, dtype=rhs.dtype, device=rhs.device)
        src = band
    else:
        K = factor.shape[2]
        src = factor  # not read
    grid = (NO, triton.cdiv(NI, block))
    _ldl_kernel[grid](src, *_strides(src), rhs, *_strides(rhs), factor, *_strides(factor),
                      x, *_strides(x), T, NI, K=K, FACTORIZE=factorize, BLOCK=block,
                      CHUNK=chunk, num_warps=max(1, block // 32))
    return factor, x
