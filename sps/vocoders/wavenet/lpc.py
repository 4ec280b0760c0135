"""LPC WaveNet: the gated residual stack modelling the linear-prediction excitation.

The dilated layers, skip and output layers are :class:`~.model.GatedStack`'s; the
layer-0 input embeds the four mu-law quantised excitation inputs of
:mod:`sps.vocoders.excitation` (``s[n-1], p[n], e[n-1], e[n-T0]``, one table of shape
``(256, R)`` each, summed, then tanh) instead of the two previous samples, and the
output softmax is over the 8-bit mu-law excitation ``e[n]``; the sample is
``s[n] = p[n] + e[n]``, de-emphasised into the waveform. Training runs the whole
teacher-forced sequence through the stack at once (no recurrence), which is what makes
this variant cheap to train on a CPU.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from sps.vocoders.excitation import INPUTS

from ..lpc import N_CLASSES, LPCVocoder, Source
from .generate import Packed, TorchState
from .model import GatedStack


class LPCWaveNet(LPCVocoder, GatedStack):
    """WaveNet vocoder of the linear-prediction excitation (the gated residual stack as
    the network of :class:`~sps.vocoders.lpc.LPCVocoder`).

    Parameters
    ----------
    cond_dim, features
        As :meth:`~sps.vocoders.lpc.LPCVocoder.init_lpc`.
    hop_length, residual_channels, skip_channels, layers, max_dilation, cond_channels,
    upsample_scales, use_embed_tanh
        As :class:`~.model.WaveNet` (the output has 256 mu-law classes).
    order, preemphasis, lag_window_hz, context_frames, temperature, voiced_temperature,
    input_noise, pulses
        The LPC core's options (:meth:`~sps.vocoders.lpc.LPCVocoder.init_lpc`).
    pitch_phase : bool
        A pitch-phase input through ``phase_proj (R, 2)``, added to the layer-0 input
        before its tanh.

    Generation options: ``precision`` (``"float32"`` or ``"bfloat16"``: the stack's
    matrices rounded to bfloat16, which the C kernel stores so, halving the bytes it
    streams per sample; arithmetic stays float32) and ``threads`` of the C kernel (None:
    the thread policy's).
    """

    native_kernel = "wavenet"
    generation_name = "LPC WaveNet generation"

    def __init__(self, cond_dim: int, features: dict, *, hop_length: int = 80, residual_channels: int = 64,
                 skip_channels: int = 128, layers: int = 10, max_dilation: int = 256, cond_channels: int = 64,
                 upsample_scales=(4, 4, 5), use_embed_tanh: bool = True, order: int = 16,
                 preemphasis: float = 0.85, lag_window_hz: float = 50.0, context_frames: int = 4,
                 temperature: float = 1.0, voiced_temperature: float = 0.7, input_noise: float = 0.0,
                 pitch_phase: bool = False, pulses: bool = False):
        super().__init__(cond_dim, hop_length=hop_length, out_channels=N_CLASSES,
                         residual_channels=residual_channels, skip_channels=skip_channels, layers=layers,
                         max_dilation=max_dilation, cond_channels=cond_channels, upsample_scales=upsample_scales,
                         use_embed_tanh=use_embed_tanh)
        self.embed_inputs = nn.Parameter(torch.randn(len(INPUTS), N_CLASSES, residual_channels) * 0.3)
        self.init_lpc(cond_dim, features, order=order, preemphasis=preemphasis, lag_window_hz=lag_window_hz,
                      context_frames=context_frames, temperature=temperature,
                      voiced_temperature=voiced_temperature, input_noise=input_noise, pulses=pulses)
        self.phase_proj = nn.Linear(2, residual_channels, bias=False) if pitch_phase else None

    def init_inputs(self) -> None:
        # the draws of the plain WaveNet's two sample tables, which this model does not have:
        # a seed initialises the stack as it did when the LPC WaveNet derived from WaveNet
        torch.randn(self.A, self.R), torch.randn(self.A, self.R)

    def embed_excitation(self, q: Tensor, phase: Tensor | None = None) -> Tensor:
        """Mu-law classes of the inputs ``(..., 4)`` (and pitch-phase inputs ``(..., 2)``)
        -> layer-0 input ``(..., R)``."""
        x = sum(self.embed_inputs[i][q[..., i]] for i in range(q.shape[-1]))
        if phase is not None:
            x = x + phase @ self.phase_proj.weight.t()
        return torch.tanh(x) if self.use_embed_tanh else x

    # ------------------------------------------------------------------ the network
    def network_logits(self, q: Tensor, phase: Tensor | None, cond: Tensor) -> Tensor:
        """The whole teacher-forced sequence through the stack at once (no recurrence)."""
        return self.stack(self.embed_excitation(q, phase), self.conditioning(cond))

    def reference_start(self, src: Source, threads: int | None = None, precision: str = "float32") -> dict:
        """(``threads`` is an option of the C kernel only.)"""
        P = Packed(self, src.cond.device, precision)
        B = src.u.shape[0]
        return {"P": P, "ups": self.upsample(src.cond), "layers": TorchState(P, B, src.cond.device, 1.0, False),
                "chunk": P.chunk(B), "c": None, "t0": 0}

    def reference_step(self, st: dict, q: Tensor, phase: Tensor | None, n: int) -> Tensor:
        P, chunk = st["P"], st["chunk"]
        if n % chunk == 0:                                      # the next chunk's conditioning
            t1 = min(st["ups"].shape[-1], n + chunk)
            st["c"], st["t0"] = P.cond_chunk(st["ups"], n, t1).permute(1, 2, 0, 3), n     # (n, L, B, 2R)
        return st["layers"].layers(self.embed_excitation(q, phase), st["c"][n - st["t0"]], n % P.D)

    def native_pieces(self, src: Source, chunk: int | None, threads: int | None = None,
                      precision: str = "float32"):
        from . import native
        P = Packed(self, src.cond.device, precision)
        step = P.chunk(src.u.shape[0])
        yield from native.lpc_pieces(self, P, self.upsample(src.cond), src, min(step, chunk or step), threads)

    def generate(self, cond: Tensor, lengths=None, temperature: float | None = None, *,
                 voiced_temperature: float | None = None, generator: torch.Generator | None = None,
                 backend: str = "auto", uniforms: Tensor | None = None, return_excitation: bool = False,
                 colour: bool | None = None, threads: int | None = None, precision: str = "float32"):
        """:meth:`LPCVocoder.generate <sps.vocoders.lpc.LPCVocoder.generate>` with this network's
        options (see the class)."""
        return super().generate(cond, lengths, temperature, voiced_temperature=voiced_temperature,
                                generator=generator, backend=backend, uniforms=uniforms,
                                return_excitation=return_excitation, colour=colour, threads=threads,
                                precision=precision)
