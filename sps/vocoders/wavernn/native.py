"""The C WaveRNN kernels (``sps/native/wavernn.c``): fused sampling and the GRU recurrence.

One call runs the whole sample loop for ``S`` independent rows (utterances or
folded segments). Each OpenMP thread takes blocks of up to four rows and runs
every time step for them: one product ``R h_{t-1}`` (weights read once per step
for the four rows), the coarse half-step, the coarse output layers and inverse-CDF
sampling with a pre-drawn uniform number, then the fine half-step with ``c_t``,
the fine output layers and sampling. Rows never wait on each other, so there are
no barriers. Weights are float32 or bfloat16 (stored as the upper 16 bits of a
float32 and widened exactly on load); all arithmetic is float32.

The arithmetic follows :func:`sps.vocoders.wavernn.generate.step` operation by
operation (same interpolation formula, same order of additions, float64 running
sum in the softmax CDF like :func:`torch.cumsum`), so with the same uniform
numbers the two produce the same samples except where a number falls within
rounding error of a CDF boundary.
"""
from __future__ import annotations

import ctypes

import torch

from sps import native
from sps.native.structs import SpsMat, WavernnCall, WavernnLPCChunk, WavernnLPCWeights, WavernnWeights
from sps.vocoders.protocol import bf16_precision


def library(required: bool = False) -> ctypes.CDLL | None:
    """The compiled kernel, or None (no compiler or ``SPS_NO_NATIVE=1``; with ``required`` a
    RuntimeError instead)."""
    lib = native.library("wavernn")
    if lib is None and required:
        raise RuntimeError("the WaveRNN C kernel is not available (no compiler or SPS_NO_NATIVE=1)")
    return lib


def pack(m: torch.Tensor, bf16: bool, vl: int) -> torch.Tensor:
    """Lay a weight matrix ``(M, K)`` out as the kernel reads it.

    Transposed to ``(K, M)``; for bf16, each full chunk of ``2 vl`` outputs of a
    row is interleaved ``[o_0, o_vl, o_1, o_vl+1, ...]`` (16-bit words) so that a
    32-bit word holds outputs ``i`` and ``vl + i``; the remaining outputs keep their
    order. Returns float32 or the bf16 bit patterns as int16.
    """
    t = m.detach().float().t().contiguous()
    if not bf16:
        return t
    K, M = t.shape
    t = t.bfloat16().view(torch.int16)
    full = M - M % (2 * vl)
    head = t[:, :full].reshape(K, -1, 2, vl).transpose(2, 3).reshape(K, full)
    return torch.cat([head, t[:, full:]], 1).contiguous()


#: rows of one block of the block-sparse layout (16 consecutive outputs of one input)
SP_BLOCK = 16


def block_csr(m: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Block-CSR of a matrix ``(M, K)`` for 16 x 1 blocks: a block is kept when any of its
    16 weights is non-zero.

    Returns ``ptr (M / 16 + 1,)`` and ``idx (nnz,)`` int32, and the values ``(nnz, 16)``
    in output order (float32, or the bf16 bit patterns as int16).
    """
    w = m.detach().float()
    M, K = w.shape
    if M % SP_BLOCK:
        raise ValueError(f"block-sparse layout needs a multiple of {SP_BLOCK} rows, got {M}")
    blocks = w.reshape(M // SP_BLOCK, SP_BLOCK, K).transpose(1, 2)          # (M/16, K, 16)
    keep = blocks.ne(0).any(-1)                                             # (M/16, K)
    ptr = torch.cat([torch.zeros(1, dtype=torch.int64), keep.sum(1).cumsum(0)]).to(torch.int32)
    idx = keep.nonzero()[:, 1].to(torch.int32).contiguous()
    val = blocks[keep]                                                      # (nnz, 16), row-major order
    if bf16:
        val = val.bfloat16().view(torch.int16)
    return ptr.contiguous(), idx, val.contiguous()


def block_density(m: torch.Tensor) -> float:
    """Fraction of the 16 x 1 blocks of ``m`` with a non-zero weight (1.0 when the rows do
    not split into blocks)."""
    M, K = m.shape
    if M % SP_BLOCK:
        return 1.0
    return float(m.detach().reshape(M // SP_BLOCK, SP_BLOCK, K).ne(0).any(1).float().mean())


def matrices(weights: list[torch.Tensor], bf16: bool, sparse: bool | None, vl: int):
    """Kernel descriptors of ``weights`` (each ``(M, K)``): ``(array of SpsMat, buffers)``.

    ``sparse`` None decides per matrix: block-sparse when under 60 % of its blocks are
    non-zero. The buffers must outlive the kernel call.
    """
    descs, keep = [], []
    for w in weights:
        use_sparse = (block_density(w) < 0.6 and w.shape[0] % SP_BLOCK == 0) if sparse is None else sparse
        if use_sparse:
            ptr, idx, val = block_csr(w, bf16)
            keep += [ptr, idx, val]
            descs.append(SpsMat(sparse=1, bf16=int(bf16), w=val, ptr=ptr, idx=idx))
        else:
            packed = pack(w, bf16, vl)
            keep.append(packed)
            descs.append(SpsMat(sparse=0, bf16=int(bf16), w=packed))
    return (SpsMat * len(descs))(*descs), keep


def default_threads(rows: int) -> int:
    """OpenMP threads for ``rows`` independent rows (blocks of four per thread)."""
    return native.threads(-(-rows // 4), 1 << 40)


def run(w, P: torch.Tensor, u: torch.Tensor, hop: int, temperature: float = 1.0,
        threads: int | None = None) -> torch.Tensor:
    """Sample bytes with the C kernel.

    Parameters
    ----------
    w : GenWeights
        Generation weights (:func:`sps.vocoders.wavernn.generate.gen_weights`);
        ``w.bf16`` selects bfloat16 storage of the matrices.
    P : Tensor [shape=(S, T + 2, 3H)]
        Edge-padded per-frame conditioning projections (float32, CPU).
    u : Tensor [shape=(S, T * hop, 2)]
        Uniform numbers in [0, 1) for the coarse and the fine draw of each sample.

    Returns
    -------
    Tensor [shape=(S, T * hop, 2)], int64
        Coarse and fine bytes.
    """
    lib = library(required=True)
    S, T2, G = P.shape
    N = (T2 - 2) * hop
    if u.shape != (S, N, 2):
        raise ValueError(f"uniform numbers must have shape {(S, N, 2)}, got {tuple(u.shape)}")
    P = P.detach().float().contiguous()
    u = u.detach().float().contiguous()
    out = torch.empty(S, N, 2, dtype=torch.int64)
    if not w._packed:
        w._packed = list(matrices(w.matrices(), w.bf16, w.sparse, lib.wavernn_vector_length()))
    weights = WavernnWeights(H=w.H, mats=w._packed[0], Ix=w.Ix, bias=w.bias, b1=w.b1, b2=w.b2, b3=w.b3, b4=w.b4)
    call = WavernnCall(S=S, hop=hop, T2=T2, nthreads=threads or default_threads(S), N=N,
                       inv_temp=1.0 / temperature, P=P, u=u, out=out)
    native.check(lib.wavernn_run(weights, call), "wavernn_run")
    return out


def lpc_pieces(model, P: torch.Tensor, src, chunk: int | None, precision: str = "float32",
               threads: int | None = None, sparse: bool | None = None):
    """LPC WaveRNN sampling with the C kernel, ``chunk`` samples a call (None: all at once;
    the GRU state and excitation rings are kept between calls).

    Parameters
    ----------
    model : LPCWaveRNN
    P : Tensor [shape=(S, T, 3H)]
        Frame projections of the conditioning.
    src : Source
        LPC, pitch lag, inverse temperatures, draws, pitch phase and pulses
        (:class:`sps.vocoders.lpc.Source`).

    Yields
    ------
    s : Tensor [shape=(S, n)] pre-emphasised samples; q : int64 classes, same shape.
    """
    lib, bf16 = library(required=True), bf16_precision(precision)
    S, T, G = P.shape
    H, p = model.hidden, src.a.shape[-1]
    key = (bf16, lib.wavernn_vector_length(), sparse)
    cache = model.__dict__.setdefault("_packed", {})
    if cache.get("key") != key or cache.get("version") != model._weights_version():
        cache.update(key=key, version=model._weights_version(),
                     mats=matrices([model.R, model.O1.weight, model.O2.weight], bf16, sparse, key[1]),
                     E=model.embed_inputs.detach().float().contiguous(),
                     b1=model.O1.bias.detach().float().contiguous(), b2=model.O2.bias.detach().float().contiguous())
    wph = None if src.phase is None else model.phase_proj.weight.detach().float().contiguous()
    weights = WavernnLPCWeights(H=H, mats=cache["mats"][0], E=cache["E"], b1=cache["b1"], b2=cache["b2"], wph=wph)
    a, lag, itemp, HL, ring_s, ring_e = src.kernel_frames(model.lp.max_lag)
    P, h = P.detach().float().contiguous(), torch.zeros(S, H)
    nthreads = threads or default_threads(S)
    for n0, n1, u, ph, pd in src.kernel_pieces(chunk or T * model.hop_length):
        s, q = torch.empty(S, n1 - n0), torch.empty(S, n1 - n0, dtype=torch.int64)
        call = WavernnLPCChunk(S=S, T=T, hop=model.hop_length, p=p, HL=HL, nthreads=nthreads, n0=n0, n=n1 - n0,
                               P=P, a=a, lag=lag, itemp=itemp, u=u, ph=ph, pd=pd, h=h, ring_s=ring_s,
                               ring_e=ring_e, out_s=s, out_q=q)
        native.check(lib.wavernn_lpc_run(weights, call), "wavernn_lpc_run")
        yield s, q
