"""The teacher-forced GRU recurrence used for training, with a CPU fast path.

``h_t = GRU(xi_t, h_{t-1})`` where ``xi`` (the input projections ``I x_t + b`` of
the whole sequence) is computed up front by one matrix product; only ``R h`` and
the gates remain sequential. Three implementations of the same function:

* :func:`gru_aten` -- :func:`torch.gru` (cuDNN on CUDA; used there);
* :class:`GRUSequence` with the C kernels of :mod:`.native` (CPU default): the
  forward saves the gates, the backward runs BPTT row block by row block and
  leaves ``dL/dR = sum_t dgh_t^T h_{t-1}`` to one large matrix product;
* the same :class:`GRUSequence` with PyTorch loops (no compiler), which also
  serves as the readable statement of the backward pass.

ATen's CPU GRU records every step in the autograd graph and is several times
slower than either (see ``docs/wavernn.md``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from sps.native import check
from sps.native.structs import GruSeq

from . import native


def gru_aten(inp: Tensor, w_ih: Tensor, b_ih: Tensor, R: Tensor, train: bool = True) -> Tensor:
    """``torch.gru`` with input weights ``w_ih (3H, I)``; ``inp (B, N, I)`` -> ``(B, N, H)``."""
    H = R.shape[1]
    h0 = inp.new_zeros(1, inp.shape[0], H)
    out, _ = torch.gru(inp.contiguous(), h0, [w_ih, R, b_ih, torch.zeros_like(b_ih)],
                       True, 1, 0.0, train, False, True)
    return out


def _forward_torch(xi: Tensor, R: Tensor):
    B, N, G = xi.shape
    H = G // 3
    hs = xi.new_zeros(B, N + 1, H)
    gates = xi.new_empty(B, N, G)
    ghe = xi.new_empty(B, N, H)
    Rt = R.t()
    h = hs[:, 0]
    for t in range(N):
        gh = h @ Rt
        x = xi[:, t]
        ru = torch.sigmoid(gh[:, :2 * H] + x[:, :2 * H])
        e = torch.tanh(ru[:, :H] * gh[:, 2 * H:] + x[:, 2 * H:])
        u = ru[:, H:]
        h = u * h + (1.0 - u) * e
        hs[:, t + 1] = h
        gates[:, t, :2 * H] = ru
        gates[:, t, 2 * H:] = e
        ghe[:, t] = gh[:, 2 * H:]
    return hs, gates, ghe


def _backward_torch(dout: Tensor, R: Tensor, hs: Tensor, gates: Tensor, ghe: Tensor):
    B, N, H = dout.shape
    dxi = dout.new_empty(B, N, 3 * H)
    dgh = dout.new_empty(B, N, 3 * H)
    dh = dout.new_zeros(B, H)
    for t in range(N - 1, -1, -1):
        dh = dh + dout[:, t]
        r, u, e = gates[:, t].split(H, 1)
        de = dh * (1.0 - u) * (1.0 - e * e)
        du = dh * (hs[:, t] - e) * u * (1.0 - u)
        dr = de * ghe[:, t] * r * (1.0 - r)
        dxi[:, t] = torch.cat([dr, du, de], 1)
        dgh[:, t] = torch.cat([dr, du, de * r], 1)
        dh = dh * u + dgh[:, t] @ R
    return dxi, dgh


class GRUSequence(torch.autograd.Function):
    """``(xi [shape=(B, N, 3H)], R [shape=(3H, H)]) -> h [shape=(B, N, H)]`` from ``h_0 = 0``."""

    @staticmethod
    def forward(ctx, xi: Tensor, R: Tensor, use_native: bool = True):
        xi, R = xi.contiguous(), R.contiguous()
        lib = native.library() if use_native else None
        if lib is None:
            hs, gates, ghe = _forward_torch(xi, R)
        else:
            B, N, G = xi.shape
            H = G // 3
            hs = xi.new_zeros(B, N + 1, H)
            gates, ghe = xi.new_empty(B, N, G), xi.new_empty(B, N, H)
            RT = R.t().contiguous()
            check(lib.gru_forward(GruSeq(B=B, N=N, H=H, nthreads=native.default_threads(B), xi=xi, RT=RT, hs=hs,
                                         gates=gates, ghe=ghe)), "gru_forward")
        ctx.save_for_backward(R, hs, gates, ghe)
        ctx.use_native = lib is not None
        return hs[:, 1:]

    @staticmethod
    def backward(ctx, dout: Tensor):
        R, hs, gates, ghe = ctx.saved_tensors
        dout = dout.contiguous()
        B, N, H = dout.shape
        if ctx.use_native:
            lib = native.library()
            dxi, dgh = dout.new_empty(B, N, 3 * H), dout.new_empty(B, N, 3 * H)
            dh0 = dout.new_empty(B, H)
            check(lib.gru_backward(GruSeq(B=B, N=N, H=H, nthreads=native.default_threads(B), dout=dout, R=R,
                                          hs=hs, gates=gates, ghe=ghe, dxi=dxi, dgh=dgh, dh0=dh0)), "gru_backward")
        else:
            dxi, dgh = _backward_torch(dout, R, hs, gates, ghe)
        dR = dgh.reshape(-1, 3 * H).t() @ hs[:, :-1].reshape(-1, H)
        return dxi, dR, None


def gru_sequence(xi: Tensor, R: Tensor, use_native: bool = True) -> Tensor:
    """Run the recurrence on CPU (C kernel when available) with autograd support.

    Parameters
    ----------
    xi : Tensor [shape=(B, N, 3H)]
        Input projections ``I x_t + b`` in gate order ``[r | u | e]``.
    R : Tensor [shape=(3H, H)]
        Recurrent matrix.

    Returns
    -------
    Tensor [shape=(B, N, H)]
        States ``h_1 .. h_N`` (``h_0 = 0``).
    """
    return GRUSequence.apply(xi.float(), R.float(), use_native)


def gru_projected(xi: Tensor, R: Tensor, train: bool = True) -> Tensor:
    """The recurrence of precomputed input projections ``xi (B, N, 3H)``, on any device:
    cuDNN on CUDA (identity input weights), the C kernel (or loops) on CPU."""
    if xi.is_cuda:
        G = xi.shape[-1]
        eye = torch.eye(G, device=xi.device, dtype=xi.dtype)
        return gru_aten(xi, eye, torch.zeros(G, device=xi.device, dtype=xi.dtype), R, train)
    return gru_sequence(xi, R)
