"""The C WaveNet generator (``sps/native/wavenet.c``): state and calls.

The kernel runs the whole per-sample loop over layers, the softmax and the sampler
for a chunk of samples; its ring buffers have ``D + 1`` slots (see the C source).
"""
from __future__ import annotations

import torch
from torch import Tensor

from sps.native import check, library as _library, ptr, threads as _threads


def library():
    """The compiled kernel, or None (no compiler / ``SPS_NO_NATIVE=1``)."""
    return _library("wavenet")


class NativeState:
    """State and call of the C kernel (CPU, float32)."""

    def __init__(self, P, B: int, temperature: float, argmax: bool, threads: int | None):
        self.lib, self.P, self.B = library(), P, B
        self.inv_temp, self.argmax = 1.0 / float(temperature), int(argmax)
        # more threads than streams split the weight rows (faster on an idle machine)
        self.threads = threads or _threads(B * max(1, P.R // 16), 1 << 40)
        start = P.A // 2
        self.yprev = torch.full((B,), start, dtype=torch.int32)
        self.ycurr = torch.full((B,), start, dtype=torch.int32)
        self.buf = torch.zeros(B, P.L, P.D + 1, P.R)

    def run(self, c: Tensor, u: Tensor, t0: int) -> Tensor:
        P, p = self.P, ptr
        c, u = c.contiguous(), u.contiguous().float()
        n = c.shape[1]
        out = torch.empty(self.B, n, dtype=torch.int32)
        check(self.lib.wavenet_run(
            self.B, n, P.A, P.R, P.S, P.L, P.D + 1, p(P.dil_t), p(P.Ep), p(P.Ec), int(P.embed_tanh),
            p(P.WprevT), p(P.WcurT), p(P.WresT), p(P.bres), p(P.WskipT), p(P.bskip), p(P.WoutT),
            p(P.WendT), p(c), p(u), self.inv_temp, self.argmax, p(self.buf), p(self.yprev),
            p(self.ycurr), t0, p(out), self.threads), "wavenet_run")
        return out.long()
