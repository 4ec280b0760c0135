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
from sps.vocoders.excitation import ring_length


def library() -> ctypes.CDLL | None:
    """The compiled kernel, or None (no compiler or ``SPS_NO_NATIVE=1``)."""
    return native.library("wavernn")


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


class SpsMat(ctypes.Structure):
    """``sps_mat`` of ``sps/native/gemv.h``: a dense (packed) or block-sparse matrix."""
    _fields_ = [("sparse", ctypes.c_int), ("bf16", ctypes.c_int), ("w", ctypes.c_void_p),
                ("ptr", ctypes.c_void_p), ("idx", ctypes.c_void_p)]


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
            descs.append(SpsMat(1, int(bf16), native.ptr(val), native.ptr(ptr), native.ptr(idx)))
        else:
            packed = pack(w, bf16, vl)
            keep.append(packed)
            descs.append(SpsMat(0, int(bf16), native.ptr(packed), None, None))
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
    lib = library()
    if lib is None:
        raise RuntimeError("the WaveRNN C kernel is not available (no compiler or SPS_NO_NATIVE=1)")
    S, T2, G = P.shape
    N = (T2 - 2) * hop
    if u.shape != (S, N, 2):
        raise ValueError(f"uniform numbers must have shape {(S, N, 2)}, got {tuple(u.shape)}")
    P = P.detach().float().contiguous()
    u = u.detach().float().contiguous()
    out = torch.empty(S, N, 2, dtype=torch.int64)
    if not w._packed:
        w._packed = list(matrices(w.matrices(), w.bf16, w.sparse, lib.wavernn_vector_length()))
    mats = w._packed[0]
    p = native.ptr
    native.check(lib.wavernn_run(S, N, w.H, hop, T2, p(P), p(w.Ix), p(w.bias), mats, p(w.b1), p(w.b2),
                                 p(w.b3), p(w.b4), p(u), 1.0 / temperature, p(out),
                                 threads or default_threads(S)), "wavernn_run")
    return out


def run_lpc(model, P: torch.Tensor, a: torch.Tensor, lag: torch.Tensor, itemp: torch.Tensor,
            u: torch.Tensor, precision: str = "float32", threads: int | None = None,
            sparse: bool | None = None, phase: torch.Tensor | None = None,
            pulses: torch.Tensor | None = None):
    """LPC WaveRNN sampling with the C kernel.

    Parameters
    ----------
    model : LPCWaveRNN
    P : Tensor [shape=(S, T, 3H)]
        Frame projections of the conditioning.
    a : Tensor [shape=(S, T, p)]; lag, itemp : Tensor [shape=(S, T)] (itemp: inverse temperature);
    u : Tensor [shape=(S, T * hop)]
    phase : Tensor [shape=(S, T * hop, 2)], optional
        Pitch-phase inputs (models with ``pitch_phase``).
    pulses : Tensor [shape=(S, T * hop)], optional
        Pulse train added to the drawn excitation (models with ``pulses``).

    Returns
    -------
    s : Tensor [shape=(S, T * hop)] pre-emphasised samples; q : int64 classes, same shape.
    """
    lib = library()
    if lib is None:
        raise RuntimeError("the WaveRNN C kernel is not available (no compiler or SPS_NO_NATIVE=1)")
    bf16 = precision == "bfloat16"
    S, T, G = P.shape
    hop, H, p = model.hop_length, model.hidden, a.shape[-1]
    N = T * hop
    vl = lib.wavernn_vector_length()
    key = (bf16, vl, sparse)
    cache = model.__dict__.setdefault("_packed", {})
    if cache.get("key") != key or cache.get("version") != model._weights_version():
        cache.update(key=key, version=model._weights_version(),
                     mats=matrices([model.R, model.O1.weight, model.O2.weight], bf16, sparse, vl),
                     E=model.embed_inputs.detach().float().contiguous(), b1=model.O1.bias.detach().float().contiguous(),
                     b2=model.O2.bias.detach().float().contiguous())
    c = cache
    P, a, lag, u = (t.detach().float().contiguous() for t in (P, a, lag, u))
    if (phase is None) != (model.phase_proj is None):
        raise ValueError("pitch-phase inputs go with a pitch_phase model, and only with one")
    ph = None if phase is None else phase.detach().float().contiguous()
    wph = None if phase is None else model.phase_proj.weight.detach().float().contiguous()
    pd = None if pulses is None else pulses.detach().float().contiguous()
    itemp = itemp.float().contiguous()
    s = torch.empty(S, N)
    q = torch.empty(S, N, dtype=torch.int64)
    ptr = native.ptr
    native.check(lib.wavernn_lpc_run(S, T, hop, H, p, ring_length(p, model.lp.max_lag), ptr(P),
                                     ptr(c["E"]), c["mats"][0], ptr(c["b1"]), ptr(c["b2"]), ptr(a),
                                     ptr(lag), ptr(itemp), ptr(u), ptr(ph), ptr(wph), ptr(pd), ptr(s), ptr(q),
                                     threads or default_threads(S)), "wavernn_lpc_run")
    return s, q
