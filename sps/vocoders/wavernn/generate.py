"""WaveRNN sampling: the eager PyTorch reference, folding, and backend dispatch.

Every backend runs the same per-sample step (:func:`step`): ``R h_{t-1}`` once,
the coarse half-step, sample ``c_t``, the fine half-step with ``c_t``, sample
``f_t``. Sampling is inverse-CDF with uniform numbers drawn from torch before the
loop (two per sample), so all backends are reproducible and comparable draw by
draw:

* ``torch``: :func:`run_reference`, one eager step per sample (the test oracle
  and the baseline of ``benchmarks/wavernn.py``);
* ``native``: :func:`sps.vocoders.wavernn.native.run`, the fused C kernel;
* ``cuda_graph``: :func:`run_cuda_graph`, :func:`step` captured for one frame of
  samples in a CUDA graph and replayed.

Folding (:func:`fold` / :func:`unfold`) turns one long utterance into a batch of
segments. Segment ``k`` covers frames ``[k L - W, (k + 1) L + O)``: ``W`` warm-up
frames whose samples are thrown away (the state starts at zero), ``L`` core
frames and ``O`` frames cross-faded with the start of segment ``k + 1``'s core.
Segments are cut from the conditioning projections *after* the conditioning
network has seen the whole utterance, with one frame of context on each side, so
every segment sees exactly the conditioning the unfolded utterance would.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from sps.backend import resolve_backend
from sps.vocoders.protocol import bf16_precision, frame_lengths
from sps.vocoders.sampling import capture_cuda_graph, sample_cdf

from . import native
from .ops import merge_16bit, pad_frames, upsample_index

logger = logging.getLogger(__name__)


@dataclass
class GenWeights:
    """Float32 generation weights (matrices optionally rounded to bfloat16).

    ``Ix`` is the masked input matrix ``(3H, 3)``; ``R`` ``(3H, H)``; ``O1``/``O3``
    ``(H/2, H/2)``, ``O2``/``O4`` ``(256, H/2)`` with biases ``b1..b4``.
    """
    H: int
    Ix: Tensor
    bias: Tensor
    R: Tensor
    O1: Tensor
    b1: Tensor
    O2: Tensor
    b2: Tensor
    O3: Tensor
    b3: Tensor
    O4: Tensor
    b4: Tensor
    bf16: bool = False
    sparse: bool | None = None   # None: block-sparse layout for matrices under 60 % dense
    _packed: list = field(default_factory=list, repr=False)  # C layout, see native.matrices

    def matrices(self) -> list[Tensor]:
        return [self.R, self.O1, self.O2, self.O3, self.O4]


def gen_weights(model, precision: str = "float32", device=None, sparse: bool | None = None) -> GenWeights:
    """Collect a model's weights for generation.

    Parameters
    ----------
    precision : {"float32", "bfloat16"}
        With ``bfloat16`` the matrices ``R, O1..O4`` are rounded to bfloat16 (the
        PyTorch paths then compute with the rounded values in float32, which is
        exactly what the C kernel does with its bf16 storage).
    """
    bf16 = bf16_precision(precision)

    def get(t, round_=False):
        t = t.detach().to(device=device, dtype=torch.float32)
        return (t.bfloat16().float() if round_ and bf16 else t).contiguous()

    m = model
    return GenWeights(
        H=m.hidden, Ix=get(m.I * m.mask), bias=get(m.bias), R=get(m.R, True),
        O1=get(m.O1.weight, True), b1=get(m.O1.bias), O2=get(m.O2.weight, True),
        b2=get(m.O2.bias), O3=get(m.O3.weight, True), b3=get(m.O3.bias),
        O4=get(m.O4.weight, True), b4=get(m.O4.bias), bf16=bf16, sparse=sparse)


# ----------------------------------------------------------------------- the step
def _half(rh: Tensor, x: Tensor, h: Tensor) -> Tensor:
    """GRU half-step; ``rh``, ``x`` of shape (S, 3, H/2), ``h`` (S, H/2)."""
    r = torch.sigmoid(rh[:, 0] + x[:, 0])
    u = torch.sigmoid(rh[:, 1] + x[:, 1])
    e = torch.tanh(r * rh[:, 2] + x[:, 2])
    return u * h + (1.0 - u) * e


def step(w: GenWeights, h: Tensor, prev: Tensor, p: Tensor, u: Tensor, temperature: float):
    """One sample for ``S`` rows.

    Parameters
    ----------
    h : Tensor [shape=(S, H)]
        Previous state.
    prev : Tensor [shape=(S, 2)]
        Scaled previous bytes ``[c_{t-1}, f_{t-1}]``.
    p : Tensor [shape=(S, 3H)]
        Conditioning projection at this sample.
    u : Tensor [shape=(S, 2)]
        Uniform numbers for the coarse and the fine draw.

    Returns
    -------
    h, prev, bytes, coarse_logits, fine_logits
        New state ``(S, H)``, new scaled bytes ``(S, 2)``, drawn bytes ``(S, 2)``
        int64, and the two ``(S, 256)`` logit vectors that were sampled.
    """
    S, H = h.shape
    H2 = H // 2
    x = p + w.bias
    x = x + w.Ix[:, 0] * prev[:, :1]
    x = (x + w.Ix[:, 1] * prev[:, 1:]).view(S, 3, H)
    rh = (h @ w.R.t()).view(S, 3, H)
    hc = _half(rh[..., :H2], x[..., :H2], h[:, :H2])
    lc = F.linear(F.relu(F.linear(hc, w.O1, w.b1)), w.O2, w.b2)
    c = sample_cdf(lc, u[:, 0], temperature)
    cur = c.float() / 127.5 - 1.0
    xf = x[..., H2:] + w.Ix[:, 2].view(3, H)[:, H2:] * cur[:, None, None]
    hf = _half(rh[..., H2:], xf, h[:, H2:])
    lf = F.linear(F.relu(F.linear(hf, w.O3, w.b3)), w.O4, w.b4)
    f = sample_cdf(lf, u[:, 1], temperature)
    prev = torch.stack([cur, f.float() / 127.5 - 1.0], 1)
    return torch.cat([hc, hf], 1), prev, torch.stack([c, f], 1), lc, lf


def _initial(S: int, H: int, device) -> tuple[Tensor, Tensor]:
    h = torch.zeros(S, H, device=device)
    prev = torch.tensor([128.0 / 127.5 - 1.0, -1.0], device=device).expand(S, 2).contiguous()
    return h, prev


def _interp(P: Tensor, k0: Tensor, a: Tensor) -> Tensor:
    """Conditioning projections at samples with positions ``k0, a`` (see
    :func:`~sps.vocoders.wavernn.model.upsample_index`): ``(S, len(k0), 3H)``."""
    p0, p1 = P[:, k0], P[:, k0 + 1]
    return p0 + a[:, None] * (p1 - p0)


def run_reference(w: GenWeights, P: Tensor, u: Tensor, hop: int, temperature: float = 1.0,
                  return_logits: bool = False):
    """Eager per-sample loop (reference backend).

    Parameters
    ----------
    P : Tensor [shape=(S, T + 2, 3H)]
        Edge-padded per-frame conditioning projections.
    u : Tensor [shape=(S, T * hop, 2)]
        Uniform numbers.

    Returns
    -------
    Tensor [shape=(S, N, 2)] int64 bytes; with ``return_logits`` also the coarse
    and fine logits ``(S, N, 256)`` each.
    """
    S, T2, _ = P.shape
    N = (T2 - 2) * hop
    h, prev = _initial(S, w.H, P.device)
    out = torch.empty(S, N, 2, dtype=torch.int64, device=P.device)
    coarse, fine = [], []
    k0, a = upsample_index(T2 - 2, hop, P.device)
    for t in range(N):
        p = _interp(P, k0[t:t + 1], a[t:t + 1])[:, 0]
        h, prev, out[:, t], lc, lf = step(w, h, prev, p, u[:, t], temperature)
        if return_logits:
            coarse.append(lc)
            fine.append(lf)
    return (out, torch.stack(coarse, 1), torch.stack(fine, 1)) if return_logits else out


def run_cuda_graph(w: GenWeights, P: Tensor, u: Tensor, hop: int, temperature: float = 1.0,
                   capture: bool = True):
    """:func:`step` for ``hop`` samples captured once in a CUDA graph, replayed per frame.

    Each frame copies its conditioning and uniform numbers into static buffers and
    replays the graph, which advances the static state. ``capture=False`` runs the
    same frame function eagerly (any device): the CPU tests use it to check the
    buffer plumbing against :func:`run_reference`.
    """
    S, T2, G = P.shape
    T, dev = T2 - 2, P.device
    N = T * hop
    h, prev = _initial(S, w.H, dev)
    p_in = torch.zeros(S, hop, G, device=dev)
    u_in = torch.zeros(S, hop, 2, device=dev)
    out = torch.zeros(S, hop, 2, dtype=torch.int64, device=dev)

    def frame():
        hh, pp = h, prev
        for j in range(hop):
            hh, pp, b, _, _ = step(w, hh, pp, p_in[:, j], u_in[:, j], temperature)
            out[:, j] = b
        h.copy_(hh)
        prev.copy_(pp)

    run = capture_cuda_graph(frame, (h, prev)).replay if capture else frame
    result = torch.empty(S, N, 2, dtype=torch.int64, device=dev)
    k0, a = upsample_index(T, hop, dev)
    for k in range(T):
        sl = slice(k * hop, (k + 1) * hop)
        p_in.copy_(_interp(P, k0[sl], a[sl]))
        u_in.copy_(u[:, sl])
        run()
        result[:, k * hop:(k + 1) * hop] = out
    return result


# -------------------------------------------------------------------------- folding
def fold(x: Tensor, segment: int, warmup: int, overlap: int, context: int = 0) -> Tensor:
    """Cut one sequence into overlapping segments (edge-replicated at both ends).

    Parameters
    ----------
    x : Tensor [shape=(N, ...)]
        Frames or samples of one utterance.
    segment, warmup, overlap : int
        Core length ``L``, discarded warm-up ``W`` and cross-fade length ``O``.
    context : int
        Extra items on both sides of each segment (1 for conditioning frames).

    Returns
    -------
    Tensor [shape=(ceil(N / L), W + L + O + 2 * context, ...)]
        Segment ``k`` holds ``x[k L - W - context : (k + 1) L + O + context]``.
    """
    if segment <= 0 or warmup < 0 or overlap < 0 or overlap > segment:
        raise ValueError(f"bad fold sizes: segment={segment}, warmup={warmup}, overlap={overlap}"
                         " (need segment > 0, warmup >= 0, 0 <= overlap <= segment)")
    n = x.shape[0]
    count = max(1, math.ceil(n / segment))
    left = warmup + context
    right = count * segment + overlap + context - n
    idx = (torch.arange(-left, n + right, device=x.device)).clamp(0, n - 1)
    padded = x[idx]
    size = warmup + segment + overlap + 2 * context
    return padded.unfold(0, size, segment).movedim(-1, 1)


def unfold(y: Tensor, length: int, segment: int, warmup: int, overlap: int) -> Tensor:
    """Join segments made by :func:`fold` (``context=0``) back into one sequence.

    The warm-up of every segment is dropped; over the ``overlap`` items where
    segment ``k`` ends and ``k + 1`` begins, the output moves from the first to the
    second with a raised-cosine ramp (``a + w (b - a)``, exact when ``a == b``).

    Parameters
    ----------
    y : Tensor [shape=(S, W + L + O, ...)]
    length : int
        Length ``N`` of the original sequence.

    Returns
    -------
    Tensor [shape=(N, ...)]
    """
    S = y.shape[0]
    core = y[:, warmup:]
    out = y.new_zeros((S * segment + overlap,) + tuple(y.shape[2:]))
    i = torch.arange(overlap, device=y.device, dtype=torch.float64)
    ramp = (0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / max(overlap, 1))).to(y.dtype)
    ramp = ramp.view((-1,) + (1,) * (y.dim() - 2))
    for k in range(S):
        s = k * segment
        if k and overlap:
            a = out[s:s + overlap]
            out[s:s + overlap] = a + ramp * (core[k, :overlap] - a)
            out[s + overlap:s + segment + overlap] = core[k, overlap:]
        else:
            out[s:s + segment + overlap] = core[k]
    return out[:length]


_fold, _unfold = fold, unfold  # generate() has a `fold` flag


# ------------------------------------------------------------------------ dispatch
def run_bytes(w: GenWeights, P: Tensor, u: Tensor, hop: int, temperature: float,
              backend: str) -> Tensor:
    """Dispatch ``(P, u) -> bytes (S, N, 2)`` to a backend (see module doc)."""
    backend = resolve_backend(backend, P.device, what="WaveRNN generation",
                              choices=("cuda_graph", "native", "torch"), native=native.library)
    if backend == "native":
        return native.run(w, P, u, hop, temperature)
    if backend == "cuda_graph":
        return run_cuda_graph(w, P, u, hop, temperature)
    return run_reference(w, P, u, hop, temperature)


@torch.no_grad()
def generate(model, cond: Tensor, lengths=None, temperature: float | None = None, *, fold: bool = False,
             fold_frames: int = 100, overlap_frames: int = 4, warmup_frames: int = 8,
             backend: str = "auto", precision: str = "float32",
             generator: torch.Generator | None = None, sparse: bool | None = None) -> Tensor:
    """Sample a waveform (also the method ``WaveRNN.generate``).

    Parameters
    ----------
    model : WaveRNN
    cond : Tensor [shape=(B, T, C)]
        Normalised conditioning features.
    lengths : sequence of int, optional
        Valid frames per utterance (default all ``T``); samples past
        ``lengths[b] * hop_length`` are zero.
    temperature : float, optional
        Softmax temperature (None or 1.0 samples the model distribution).
    fold : bool
        Split each utterance into segments of ``fold_frames`` frames generated
        as one batch (each with ``warmup_frames`` of discarded context and
        ``overlap_frames`` cross-faded into the next segment).
    backend : {"auto", "native", "torch", "cuda_graph"}
        ``native``: the fused C kernel (CPU); ``torch``: the eager reference;
        ``cuda_graph``: the eager step captured in CUDA graphs; ``auto`` picks
        ``cuda_graph`` on CUDA, else ``native`` when it compiles, else ``torch``.
    precision : {"float32", "bfloat16"}
        Recurrent/output weights rounded to bfloat16 (stored as bf16 by the C
        kernel, halving its memory traffic); activations stay float32.
    generator : torch.Generator, optional
        CPU generator of the pre-drawn uniform numbers (two per sample, drawn
        on CPU and moved to the device, so a seed gives the same draws on
        every device and backend).
    sparse : bool, optional
        The C kernel reads the matrices in a block-sparse layout (16 x 1 blocks,
        zero blocks skipped); None: for matrices with under 60 % of their blocks
        non-zero (a pruned model), else dense.

    Returns
    -------
    Tensor [shape=(B, T * hop_length)]
        Waveform in [-1, 1].
    """
    B, T, _ = cond.shape
    hop = model.hop_length
    temperature = 1.0 if temperature is None else temperature
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    lengths = frame_lengths(lengths, cond)
    w = gen_weights(model, precision, cond.device, sparse)
    proj = model.cond_projection(cond).float()                     # (B, T, 3H)
    wav = torch.zeros(B, T * hop, device=cond.device)
    if not fold:
        P = pad_frames(proj)
        u = torch.rand(B, T * hop, 2, generator=generator).to(cond.device)
        b = run_bytes(w, P, u, hop, temperature, backend)
        wav = merge_16bit(b[..., 0], b[..., 1])
    else:
        sizes = (fold_frames, warmup_frames, overlap_frames)
        segs = [_fold(proj[i, :lengths[i]], *sizes, context=1) for i in range(B)]
        P = torch.cat(segs).contiguous()
        n_seg = (fold_frames + warmup_frames + overlap_frames) * hop
        u = torch.rand(P.shape[0], n_seg, 2, generator=generator).to(cond.device)
        logger.debug("folded %d utterance(s) into %d segments of %d samples", B, P.shape[0], n_seg)
        b = run_bytes(w, P, u, hop, temperature, backend)
        y = merge_16bit(b[..., 0], b[..., 1])
        start = 0
        for i, s in enumerate(segs):
            n = lengths[i] * hop
            wav[i, :n] = _unfold(y[start:start + s.shape[0]], n, fold_frames * hop,
                                warmup_frames * hop, overlap_frames * hop)
            start += s.shape[0]
    for i, n in enumerate(lengths):
        wav[i, n * hop:] = 0.0
    return wav
