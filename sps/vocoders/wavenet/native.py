"""The C WaveNet generator (``sps/native/wavenet.c``): state and calls.

The kernel runs the whole per-sample loop over layers, the softmax and the sampler
for a chunk of samples; its ring buffers have ``D + 1`` slots (see the C source).
"""
from __future__ import annotations

import torch
from torch import Tensor

from sps.native import check, library as _library, threads as _threads
from sps.native.structs import WavenetChunk, WavenetLPC, WavenetWeights


def library():
    """The compiled kernel, or None (no compiler / ``SPS_NO_NATIVE=1``)."""
    return _library("wavenet")


def default_threads(B: int, R: int) -> int:
    """Threads for ``B`` streams: one per stream, and with fewer streams than threads the
    weight rows split between threads (faster on an idle machine), as far as the idle
    cores allow (:func:`sps.native.threads`)."""
    return _threads(B * max(1, R // 16), 1 << 40)


def stack_weights(P, **inputs) -> WavenetWeights:
    """The kernel's weight structure of the packed stack ``P`` with the input embeddings
    ``inputs`` (``Ep``/``Ec`` of the plain model, ``E``/``wph`` of the LPC one); its
    matrices are float32, or with ``P.bf16`` their (exact) bfloat16 bit patterns. The
    structure keeps the tensors it points into."""
    def mat(t: Tensor) -> Tensor:
        return t.bfloat16().view(torch.int16).contiguous() if P.bf16 else t
    return WavenetWeights(A=P.A, R=P.R, S=P.S, L=P.L, D1=P.D + 1, embed_tanh=int(P.embed_tanh), bf16=int(P.bf16),
                          dil=P.dil_t, WprevT=mat(P.WprevT), WcurT=mat(P.WcurT), WresT=mat(P.WresT), bres=P.bres,
                          WskipT=mat(P.WskipT), bskip=P.bskip, WoutT=mat(P.WoutT), WendT=mat(P.WendT), **inputs)


class NativeState:
    """State and call of the C kernel (CPU; float32 or bf16 matrices, as ``P``)."""

    def __init__(self, P, B: int, temperature: float, argmax: bool, threads: int | None):
        self.lib, self.P, self.B = library(), P, B
        self.inv_temp, self.argmax = 1.0 / float(temperature), int(argmax)
        # more threads than streams split the weight rows (faster on an idle machine)
        self.threads = threads or default_threads(B, P.R)
        start = P.A // 2
        self.yprev = torch.full((B,), start, dtype=torch.int32)
        self.ycurr = torch.full((B,), start, dtype=torch.int32)
        self.buf = torch.zeros(B, P.L, P.D + 1, P.R)
        self.weights = stack_weights(P, Ep=P.Ep, Ec=P.Ec)

    def run(self, c: Tensor, u: Tensor, t0: int) -> Tensor:
        c, u = c.contiguous(), u.contiguous().float()
        n = c.shape[1]
        out = torch.empty(self.B, n, dtype=torch.int32)
        chunk = WavenetChunk(B=self.B, n=n, nthreads=self.threads, argmax=self.argmax,
                             inv_temp=self.inv_temp, t0=t0, cond=c, u=u, buf=self.buf,
                             yprev=self.yprev, ycurr=self.ycurr, out=out)
        check(self.lib.wavenet_run(self.weights, chunk), "wavenet_run")
        return out.long()


def lpc_pieces(model, P, ups: Tensor, src, chunk: int, threads: int | None = None):
    """LPC WaveNet sampling with the C kernel, ``chunk`` samples a call (see
    :class:`~sps.vocoders.lpc.LPCVocoder`).

    Parameters
    ----------
    model : LPCWaveNet
    P : Packed
        Stack weights.
    ups : Tensor [shape=(B, U, N)]
        Upsampled conditioning.
    src : Source
        LPC, pitch lag, inverse temperatures, draws, pitch phase and pulses.
    chunk : int
        Samples per kernel call (the conditioning of a chunk is materialised).

    Yields
    ------
    s : Tensor [shape=(B, n)] pre-emphasised samples; q : Tensor [shape=(B, n)] int64 classes.
    """
    lib = library()
    B, T, p = src.a.shape
    wph = None if src.phase is None else model.phase_proj.weight.detach().float().contiguous()
    weights = stack_weights(P, E=model.embed_inputs.detach().float().contiguous(), wph=wph)
    a, lag, itemp, HL, ring_s, ring_e = src.kernel_frames(model.lp.max_lag)
    buf = torch.zeros(B, P.L, P.D + 1, P.R)
    nthreads = threads or default_threads(B, P.R)
    for t0, t1, u, ph, pd in src.kernel_pieces(chunk):
        out, out_s = torch.empty(B, t1 - t0, dtype=torch.int32), torch.empty(B, t1 - t0)
        calls = WavenetChunk(B=B, n=t1 - t0, nthreads=nthreads, t0=t0, cond=P.cond_chunk(ups, t0, t1).contiguous(),
                             u=u, buf=buf, out=out)
        frames = WavenetLPC(T=T, hop=model.hop_length, p=p, HL=HL, a=a, lag=lag, itemp=itemp, ring_s=ring_s,
                            ring_e=ring_e, out_s=out_s, ph=ph, pd=pd)
        check(lib.wavenet_lpc_run(weights, calls, frames), "wavenet_lpc_run")
        yield out_s, out.long()
