"""LPC WaveNet: the gated residual stack modelling the linear-prediction excitation.

The dilated layers, skip and output layers are those of :class:`~.model.WaveNet`; the
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
from .generate import CHUNK_FLOATS, Packed, TorchState
from .model import WaveNet


class LPCWaveNet(LPCVocoder, WaveNet):
    """WaveNet vocoder of the linear-prediction excitation (the gated residual stack as
    the network of :class:`~sps.vocoders.lpc.LPCVocoder`).

    Parameters
    ----------
    cond_dim : int
        Conditioning features per frame.
    features : dict
        Conditioning layout and analysis (:class:`~sps.vocoders.excitation.LinearPrediction`);
        the stage fills it from the stream spec.
    hop_length, residual_channels, skip_channels, layers, max_dilation, cond_channels,
    upsample_scales, use_embed_tanh
        As :class:`~.model.WaveNet` (the output has 256 mu-law classes).
    order, preemphasis, lag_window_hz : int, float, float
        Linear prediction settings.
    context_frames : int
        Frames at the start of every training segment left out of the loss.
    temperature, voiced_temperature : float
        Default sampling temperatures of unvoiced and voiced frames.
    input_noise : float
        Training only: the inputs come from a history whose excitation was moved by
        Gaussian noise of this many mu-law classes (LPCNet's noise injection; 0: off).
    pitch_phase : bool
        A pitch-phase input (``sin, cos`` of :func:`~sps.vocoders.excitation.pitch_source`,
        through ``phase_proj (R, 2)``, added to the layer-0 input before its tanh).
    pulses : bool
        A pulse train is part of the excitation (see
        :class:`~sps.vocoders.wavernn.lpc.LPCWaveRNN`): the network models the rest.
    """

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
        del self.embed_prev, self.embed_curr
        self.embed_inputs = nn.Parameter(torch.randn(len(INPUTS), N_CLASSES, residual_channels) * 0.3)
        self.init_lpc(cond_dim, features, order=order, preemphasis=preemphasis, lag_window_hz=lag_window_hz,
                      context_frames=context_frames, temperature=temperature,
                      voiced_temperature=voiced_temperature, input_noise=input_noise, pulses=pulses)
        self.phase_proj = nn.Linear(2, residual_channels, bias=False) if pitch_phase else None

    def embed_excitation(self, q: Tensor, phase: Tensor | None = None) -> Tensor:
        """Mu-law classes of the inputs ``(..., 4)`` (and pitch-phase inputs ``(..., 2)``)
        -> layer-0 input ``(..., R)``."""
        x = sum(self.embed_inputs[i][q[..., i]] for i in range(q.shape[-1]))
        if phase is not None:
            x = x + phase @ self.phase_proj.weight.t()
        return torch.tanh(x) if self.use_embed_tanh else x

    def to_nv_wavenet(self):
        raise NotImplementedError("the LPC WaveNet has no nv-wavenet layout (its inputs are not two samples)")

    # ------------------------------------------------------------------ the network
    def network_logits(self, q: Tensor, phase: Tensor | None, cond: Tensor) -> Tensor:
        """The whole teacher-forced sequence through the stack at once (no recurrence)."""
        return self.stack(self.embed_excitation(q, phase), self.conditioning(cond))

    def _chunk(self, B: int, P: Packed) -> int:
        """Samples per conditioning chunk (the conditioning of a chunk is materialised)."""
        return max(1, CHUNK_FLOATS // max(1, B * P.L * 2 * P.R))

    def reference_start(self, src: Source, threads: int | None = None) -> dict:
        """(``threads`` is an option of the C kernel only.)"""
        P = Packed(self, src.cond.device)
        B = src.u.shape[0]
        return {"P": P, "ups": self.upsample(src.cond), "layers": TorchState(P, B, src.cond.device, 1.0, False),
                "embed": self.embed_inputs.float(), "chunk": self._chunk(B, P), "c": None, "t0": 0}

    def reference_step(self, st: dict, q: Tensor, phase: Tensor | None, n: int) -> Tensor:
        P, chunk = st["P"], st["chunk"]
        if n % chunk == 0:                                      # the next chunk's conditioning
            t1 = min(st["ups"].shape[-1], n + chunk)
            st["c"], st["t0"] = P.cond_chunk(st["ups"], n, t1).permute(1, 2, 0, 3), n     # (n, L, B, 2R)
        embed = st["embed"]
        x = sum(embed[j][q[:, j]] for j in range(q.shape[-1]))
        if phase is not None:
            x = x + phase @ self.phase_proj.weight.float().t()
        x = torch.tanh(x) if P.embed_tanh else x
        return st["layers"].layers(x, st["c"][n - st["t0"]], n % P.D)

    def native_pieces(self, src: Source, chunk: int | None, threads: int | None = None):
        from . import native
        P = Packed(self, src.cond.device)
        step = self._chunk(src.u.shape[0], P)
        yield from native.lpc_pieces(self, P, self.upsample(src.cond), src, min(step, chunk or step), threads)

    @staticmethod
    def native_library():
        from . import native
        return native.library()

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, cond: Tensor, lengths: Tensor | None = None, temperature: float | None = None, *,
                 voiced_temperature: float | None = None, generator: torch.Generator | None = None,
                 backend: str = "auto", uniforms: Tensor | None = None, threads: int | None = None,
                 return_excitation: bool = False) -> Tensor:
        """Sample a waveform (de-emphasised, in [-1, 1]) of shape ``(B, T * hop)``.

        Same arguments as :meth:`sps.vocoders.wavernn.lpc.LPCWaveRNN.generate`;
        ``backend`` is ``"native"`` (C kernel) or ``"torch"`` (the eager reference);
        ``threads`` of the C kernel (None: the thread policy's).
        """
        opts = {"threads": threads} if threads is not None else {}
        return self.sample(cond, lengths, temperature, voiced_temperature=voiced_temperature,
                           generator=generator, backend=backend, uniforms=uniforms,
                           return_excitation=return_excitation, **opts)
