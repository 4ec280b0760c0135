"""Autoregressive WaveNet generation with per-layer state caches: backends and dispatch.

Every layer keeps a ring buffer of its past inputs, so one sample costs the same
whatever the receptive field: ``x_l[t - d_l]`` is read from slot ``(t - d_l) mod D``
and ``x_l[t]`` written to slot ``t mod D`` (``D`` the largest dilation). The
conditioning of all layers is computed in chunks of samples with one matrix product
(upsampling once per utterance), never per sample.

Three backends (:mod:`sps.backend`) share that state layout and the sampler of
:mod:`sps.vocoders.sampling` (the first class ``a`` with ``u < sum_{k<=a} p_k``, ``u``
uniform, as in nv-wavenet):

* ``"native"``: the C kernel ``sps/native/wavenet.c`` through :mod:`.native` (float32;
  the whole per-sample loop over layers in C; utterances split over OpenMP threads, or
  weight rows when there are more threads than utterances; its ring buffers have
  ``D + 1`` slots);
* ``"torch"``: an eager PyTorch step (one batched product for all layers' ``x[t-d]``
  terms, two small products per layer, one product for all skips); the reference and
  fallback;
* ``"cuda_graph"``: the same torch step captured in a CUDA graph of ``G`` consecutive
  steps (``G`` a multiple of ``D``, so ring-buffer slots are constants inside the graph)
  and replayed.

``u = torch.rand((B, N), generator=generator)`` is drawn on the CPU up front, so all
backends see the same draws and results are reproducible.
"""
from __future__ import annotations

import logging
import os
import sys

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from sps.backend import resolve_backend
from sps.dsp import mu_law_decode
from sps.vocoders.protocol import bf16_precision, evaluating, frame_lengths
from sps.vocoders.sampling import capture_cuda_graph, sample_cdf

from . import native

logger = logging.getLogger(__name__)

#: conditioning floats held per chunk (sets the chunk length)
CHUNK_FLOATS = 1 << 24


class Packed:
    """Generation weights of a :class:`~sps.vocoders.wavenet.model.GatedStack` (float32,
    transposed for ``x @ W^T``), with its :meth:`~.model.GatedStack.input_embeddings`.

    With ``precision="bfloat16"`` the six matrices of the stack (dilated, residual, skip and
    output layers) are rounded to bfloat16: the PyTorch paths compute with the rounded
    values in float32, which is exactly what the C kernel does with its bf16 storage.
    Embeddings, biases and the conditioning projection stay float32."""

    def __init__(self, model, device: torch.device, precision: str = "float32"):
        self.bf16 = bf16_precision(precision)

        def f(t: Tensor) -> Tensor:
            return t.detach().to(device=device, dtype=torch.float32).contiguous()

        def m(t: Tensor) -> Tensor:                                 # a stack matrix, rounded for bf16
            return f(t.detach().bfloat16() if self.bf16 else t)
        L, R, S, A = model.L, model.R, model.S, model.A
        self.A, self.R, self.S, self.L = A, R, S, L
        self.dil = list(model.dilations)
        self.D = max(self.dil)
        self.embed_tanh = model.use_embed_tanh
        w = torch.stack([c.weight for c in model.dilate])           # (L, 2R, R, 2)
        for name, table in model.input_embeddings().items():        # Ep, Ec of the plain model
            setattr(self, name, f(table))
        self.WprevT = m(w[..., 0].transpose(1, 2))                   # (L, R, 2R)
        self.WcurT = m(w[..., 1].transpose(1, 2))                    # (L, R, 2R)
        if L > 1:
            self.WresT = m(torch.stack([c.weight[..., 0].t() for c in model.res]))  # (L-1, R, R)
            self.bres = f(torch.stack([c.bias for c in model.res]))                 # (L-1, R)
        else:
            self.WresT, self.bres = torch.zeros(1, R, R, device=device), torch.zeros(1, R, device=device)
        self.WskipT = m(torch.stack([c.weight[..., 0].t() for c in model.skip]))    # (L, R, S)
        self.bskip = f(torch.stack([c.bias for c in model.skip]).sum(0))            # (S,)
        self.WoutT = m(model.conv_out.weight[..., 0].t())           # (S, A)
        self.WendT = m(model.conv_end.weight[..., 0].t())           # (A, A)
        # conditioning projection with every gate bias folded in
        self.Wc = f(model.cond_proj.weight[..., 0].t())             # (U, L*2R)
        self.bc = f(model.cond_proj.bias + torch.stack([c.bias for c in model.dilate]).reshape(-1))
        self.dil_t = torch.tensor(self.dil, dtype=torch.int32)
        idx = torch.arange(self.D)[:, None] - torch.tensor(self.dil)[None, :]
        self.read_slot = (idx % self.D).to(device)                  # (D, L) slot of x_l[t - d_l]
        self.layer_idx = torch.arange(L, device=device)

    def chunk(self, B: int) -> int:
        """Samples per conditioning chunk of ``B`` streams (a chunk's conditioning is materialised)."""
        return max(1, CHUNK_FLOATS // max(1, B * self.L * 2 * self.R))

    def cond_chunk(self, ups: Tensor, t0: int, t1: int) -> Tensor:
        """ups (B, U, N) -> gate pre-activation offsets [shape=(B, t1 - t0, L, 2R)]."""
        c = torch.addmm(self.bc, ups[:, :, t0:t1].transpose(1, 2).reshape(-1, ups.shape[1]), self.Wc)
        return c.view(ups.shape[0], t1 - t0, self.L, 2 * self.R)


class TorchState:
    """Eager PyTorch incremental generator (the reference; graph-capturable step)."""

    def __init__(self, P: Packed, B: int, device: torch.device, temperature: float, argmax: bool):
        self.P, self.B, self.temperature, self.argmax = P, B, float(temperature), argmax
        start = P.A // 2
        self.yprev = torch.full((B,), start, dtype=torch.long, device=device)
        self.ycurr = torch.full((B,), start, dtype=torch.long, device=device)
        self.buf = torch.zeros(P.L, P.D, B, P.R, device=device)    # ring buffers of x_l
        self.record: list[Tensor] | None = None                     # logits per step, when a list

    def step(self, c: Tensor, u: Tensor, slot: int) -> Tensor:
        """One sample. c (L, B, 2R) gate offsets, u (B,), slot = t mod D -> classes (B,)."""
        P = self.P
        x = P.Ep[self.yprev] + P.Ec[self.ycurr]
        if P.embed_tanh:
            x = torch.tanh(x)
        logits = self.layers(x, c, slot)
        y = sample_cdf(logits, u, self.temperature, self.argmax)
        self.yprev.copy_(self.ycurr)
        self.ycurr.copy_(y)
        return y

    def layers(self, x: Tensor, c: Tensor, slot: int) -> Tensor:
        """Layer-0 input ``x (B, R)`` through the stack at ring slot ``slot`` -> logits (B, A)."""
        P, R = self.P, self.P.R
        prev = self.buf[P.layer_idx, P.read_slot[slot]]            # (L, B, R): x_l[t - d_l]
        pre = torch.baddbmm(c, prev, P.WprevT)                       # (L, B, 2R)
        xs, zs = [], []
        for l in range(P.L):
            xs.append(x)
            h = torch.addmm(pre[l], x, P.WcurT[l])
            z = torch.tanh(h[:, :R]) * torch.sigmoid(h[:, R:])
            zs.append(z)
            if l < P.L - 1:
                x = torch.addmm(x + P.bres[l], z, P.WresT[l])
        self.buf[:, slot].copy_(torch.stack(xs))
        skip = torch.addmm(P.bskip, torch.cat(zs, 1), P.WskipT.reshape(P.L * R, P.S))
        logits = F.relu(F.relu(skip) @ P.WoutT) @ P.WendT
        if self.record is not None:
            self.record.append(logits)
        return logits

    def run(self, c: Tensor, u: Tensor, t0: int) -> Tensor:
        """c (B, n, L, 2R), u (B, n) -> classes (B, n) for samples t0 .. t0 + n - 1."""
        c = c.permute(1, 2, 0, 3)                                   # (n, L, B, 2R)
        return torch.stack([self.step(c[i], u[:, i], (t0 + i) % self.P.D) for i in range(c.shape[0])], 1)


class CudaGraphState(TorchState):
    """:class:`TorchState` whose steps are replayed from a CUDA graph of ``G`` steps."""

    def __init__(self, P: Packed, B: int, device: torch.device, temperature: float, argmax: bool):
        super().__init__(P, B, device, temperature, argmax)
        self.G = P.D * max(1, 256 // P.D)
        self.c_in = torch.zeros(self.G, P.L, B, 2 * P.R, device=device)
        self.u_in = torch.zeros(B, self.G, device=device)
        self.y_out = torch.zeros(B, self.G, dtype=torch.long, device=device)
        self.graph = None

    def _capture(self) -> None:
        def steps():
            for i in range(self.G):
                self.y_out[:, i] = self.step(self.c_in[i], self.u_in[:, i], i % self.P.D)
        self.graph = capture_cuda_graph(steps, (self.yprev, self.ycurr, self.buf))

    def run(self, c: Tensor, u: Tensor, t0: int) -> Tensor:
        n = c.shape[1]
        if n != self.G or t0 % self.P.D:
            return super().run(c, u, t0)                            # ragged tail: eager steps
        if self.graph is None:
            self._capture()
        self.c_in.copy_(c.permute(1, 2, 0, 3))
        self.u_in.copy_(u)
        self.graph.replay()
        return self.y_out.clone()


@torch.no_grad()
def generate(model, cond: Tensor, lengths: Tensor | None = None, temperature: float | None = None, *,
             argmax: bool = False, generator: torch.Generator | None = None, backend: str = "auto",
             progress: bool | None = None, threads: int | None = None, precision: str = "float32",
             uniforms: Tensor | None = None, return_classes: bool = False) -> Tensor:
    """Sample waveforms from ``model`` given conditioning features.

    Parameters
    ----------
    model : WaveNet
    cond : Tensor [shape=(B, T, C)]
        Normalised frame features (on the device generation runs on).
    lengths : Tensor [shape=(B,)], optional
        Frames of each utterance (default ``T``); output samples past
        ``lengths[b] * hop_length`` are zero.
    temperature : float, optional
        Softmax temperature (> 0; None: 1).
    argmax : bool
        Greedy decoding (no sampling).
    generator : torch.Generator, optional
        CPU generator for the uniform draws ``u = torch.rand((B, N), generator=generator)``.
    backend : {"auto", "native", "torch", "cuda_graph"}
        ``auto``: ``cuda_graph`` for CUDA tensors, else ``native`` when the C kernel
        builds, else ``torch`` (:mod:`sps.backend`).
    progress : bool, optional
        Show a tqdm bar (None: only on a terminal).
    threads : int, optional
        OpenMP threads of the native kernel. Threads take separate utterances and never
        wait for each other; with fewer utterances than threads they split each weight
        matrix between cores instead, which is faster single-stream generation on an
        idle machine but slow on a busy one (they meet at every layer). The default
        (:func:`sps.vocoders.wavenet.native.default_threads`) is torch's thread count,
        and for split rows no more than the idle cores (:func:`sps.native.idle_cores`).
    precision : {"float32", "bfloat16"}
        ``bfloat16`` rounds the stack's matrices to bfloat16 (:class:`Packed`); the C
        kernel then streams half the bytes per sample. Arithmetic stays float32.
    uniforms : Tensor [shape=(B, N)], optional
        The uniform draws themselves (instead of drawing them from ``generator``).
    return_classes : bool
        Return the mu-law classes (long) instead of the waveform.

    Returns
    -------
    Tensor [shape=(B, T * hop_length)]
        Waveform in [-1, 1] (or classes).
    """
    model.check_cond(cond)
    lengths = frame_lengths(lengths, cond)
    temperature = 1.0 if temperature is None else temperature
    if not argmax and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    device = cond.device
    B, T, _ = cond.shape
    N = T * model.hop_length
    backend = resolve_backend(backend, device, what="WaveNet generation",
                              choices=("cuda_graph", "native", "torch"), native=native.library)
    logger.debug("wavenet generation: backend=%s, %d utterances, %d samples", backend, B, N)
    P = Packed(model, device, precision)
    if backend == "native":
        state = native.NativeState(P, B, temperature, argmax, threads)
    elif backend == "cuda_graph":
        state = CudaGraphState(P, B, device, temperature, argmax)
    else:
        state = TorchState(P, B, device, temperature, argmax)

    if uniforms is None:
        uniforms = torch.rand((B, N), generator=generator)
    elif tuple(uniforms.shape) != (B, N):
        raise ValueError(f"uniforms must have shape ({B}, {N}), got {tuple(uniforms.shape)}")
    u = uniforms.to(device=device, dtype=torch.float32)
    ups = model.upsample(cond.float())                               # (B, U, N), once per utterance
    chunk = state.G if backend == "cuda_graph" else P.chunk(B)
    out = torch.empty(B, N, dtype=torch.long, device=device)
    show = (sys.stderr.isatty() and not os.environ.get("SPS_NO_PROGRESS")) if progress is None else progress
    with evaluating(model), tqdm(total=N, desc=f"wavenet[{backend}]", unit="sample", unit_scale=True,
                                 disable=not show, file=sys.stderr, leave=False) as bar:
        for t0 in range(0, N, chunk):
            t1 = min(N, t0 + chunk)
            out[:, t0:t1] = state.run(P.cond_chunk(ups, t0, t1), u[:, t0:t1], t0)
            bar.update(t1 - t0)
    if return_classes:
        return out
    ends = torch.tensor(lengths, device=device)[:, None] * model.hop_length
    return mu_law_decode(out, model.A) * (torch.arange(N, device=device)[None, :] < ends)
