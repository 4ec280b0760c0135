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
import torch.nn.functional as F
from torch import Tensor, nn

from sps.backend import resolve_backend
from sps.dsp import deemphasis, mu_law_decode, mu_law_encode, preemphasis
from sps.vocoders.excitation import (INPUTS, ExcitationState, LinearPrediction, generation_source, sample_frames,
                                     training_batch)
from sps.vocoders.sampling import sample_cdf

from .generate import CHUNK_FLOATS, Packed, TorchState
from .model import WaveNet

N_CLASSES = 256


class LPCWaveNet(WaveNet):
    """WaveNet vocoder of the linear-prediction excitation.

    It pre-emphasises its training waveform and de-emphasises what it generates
    itself (``target_preemphasis`` 0).

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
        self.lp = LinearPrediction(cond_dim, features, order=order, preemphasis=preemphasis,
                                   lag_window_hz=lag_window_hz)
        self.context_frames, self.preemphasis = int(context_frames), float(preemphasis)
        self.temperature, self.voiced_temperature = float(temperature), float(voiced_temperature)
        self.input_noise = float(input_noise)
        self.phase_proj = nn.Linear(2, residual_channels, bias=False) if pitch_phase else None
        self.pulses = bool(pulses)

    reads_features = True
    takes_uniforms = True
    target_preemphasis = 0.0

    def set_conditioning(self, mean, std) -> None:
        """The statistics the conditioning is normalised with (to de-normalise mgc and lf0)."""
        self.lp.set_conditioning(mean, std)

    def embed_excitation(self, q: Tensor, phase: Tensor | None = None) -> Tensor:
        """Mu-law classes of the inputs ``(..., 4)`` (and pitch-phase inputs ``(..., 2)``)
        -> layer-0 input ``(..., R)``."""
        x = sum(self.embed_inputs[i][q[..., i]] for i in range(q.shape[-1]))
        if phase is not None:
            x = x + phase @ self.phase_proj.weight.t()
        return torch.tanh(x) if self.use_embed_tanh else x

    def to_nv_wavenet(self):
        raise NotImplementedError("the LPC WaveNet has no nv-wavenet layout (its inputs are not two samples)")

    # ------------------------------------------------------------------ training
    def excitation_logits(self, s: Tensor, cond: Tensor, phase: Tensor | None = None,
                          pulses: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits ``(B, N, 256)`` and target classes ``(B, N)`` of the
        pre-emphasised waveform ``s (B, N)``; ``phase`` ``(B, N, 2)`` and ``pulses``
        ``(B, N)``: the pitch-phase inputs and pulse train (default: locked to the
        pulses of ``s``)."""
        inputs, target, ph = training_batch(
            self.lp, s, cond, self.hop_length, noise=self.input_noise if self.training else 0.0,
            phase=(phase if phase is not None else True) if self.phase_proj is not None else False,
            pulses=(pulses if pulses is not None else True) if self.pulses else False)
        x = self.embed_excitation(mu_law_encode(inputs, N_CLASSES), ph)
        return self.stack(x, self.conditioning(cond)), target

    def loss(self, wav: Tensor, cond: Tensor) -> Tensor:
        """Cross-entropy of the excitation classes (nats per sample), the first
        ``context_frames`` frames left out.

        wav : Tensor [shape=(B, N)] in [-1, 1] (not pre-emphasised); cond [shape=(B, T, C)].
        """
        if wav.shape[1] != cond.shape[1] * self.hop_length:
            raise ValueError(f"{wav.shape[1]} samples do not match {cond.shape[1]} frames x hop {self.hop_length}")
        s = preemphasis(wav.double(), self.lp.preemphasis) if self.lp.preemphasis else wav.double()
        logits, target = self.excitation_logits(s, cond)
        skip = min(self.context_frames * self.hop_length, target.shape[1] - 1)
        return F.cross_entropy(logits[:, skip:].reshape(-1, N_CLASSES), target[:, skip:].reshape(-1))

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, cond: Tensor, lengths: Tensor | None = None, temperature: float | None = None, *,
                 voiced_temperature: float | None = None, generator: torch.Generator | None = None,
                 backend: str = "auto", uniforms: Tensor | None = None, threads: int | None = None,
                 return_excitation: bool = False, progress: bool | None = None) -> Tensor:
        """Sample a waveform (de-emphasised, in [-1, 1]) of shape ``(B, T * hop)``.

        Same arguments as :meth:`sps.vocoders.wavernn.lpc.LPCWaveRNN.generate`;
        ``backend`` is ``"native"`` (C kernel) or ``"torch"`` (the eager reference).
        """
        was_training = self.training
        self.eval()
        B, T, _ = cond.shape
        hop = self.hop_length
        N = T * hop
        t_unv = self.temperature if temperature is None else float(temperature)
        t_voi = self.voiced_temperature if voiced_temperature is None else float(voiced_temperature)
        if t_unv <= 0 or t_voi <= 0:
            raise ValueError(f"temperatures must be positive, got {t_unv}, {t_voi}")
        backend = resolve_backend(backend, cond.device, what="LPC WaveNet generation", choices=("native", "torch"),
                                  native=_native_library)
        cond = cond.float()
        a = self.lp.frame_lpc(cond)
        lag = self.lp.frame_lag(cond)
        voiced = self.lp.frame_voicing(cond)
        temp = torch.where(voiced, t_voi, t_unv).float()
        u = (torch.rand(B, N, generator=generator) if uniforms is None else uniforms).to(cond.device).float()
        ph, pd = generation_source(self.lp, cond, hop, self.phase_proj is not None, self.pulses)
        P = Packed(self, cond.device)
        ups = self.upsample(cond)                                   # (B, U, N)
        if backend == "native":
            from . import native
            chunk = max(1, CHUNK_FLOATS // max(1, B * P.L * 2 * P.R))
            s, q = native.run_lpc(self, P, ups, a, lag, temp, u, chunk, threads, phase=ph, pulses=pd)
        else:
            s, q = self._run_reference(P, ups, a, lag, temp, u, ph, pd)
        wav = deemphasis(s.double(), self.lp.preemphasis).float() if self.lp.preemphasis else s
        wav = wav.clamp(-1.0, 1.0)
        if lengths is not None:
            for i, n in enumerate(torch.as_tensor(lengths).tolist()):
                wav[i, int(n) * hop:] = 0.0
        if was_training:
            self.train()
        return (wav, q) if return_excitation else wav

    def _run_reference(self, P: Packed, ups: Tensor, a: Tensor, lag: Tensor, temp: Tensor, u: Tensor,
                       phase: Tensor | None = None, pulses: Tensor | None = None):
        B, T = a.shape[:2]
        hop = self.hop_length
        N = T * hop
        layers = TorchState(P, B, ups.device, 1.0, False)
        state = ExcitationState(B, self.lp.order, self.lp.max_lag, ups.device)
        f = sample_frames(T, hop, ups.device)
        s_out = ups.new_zeros(B, N)
        q_out = torch.zeros(B, N, dtype=torch.long, device=ups.device)
        embed = self.embed_inputs.float()
        itemp = (1.0 / temp).float()
        chunk = max(1, CHUNK_FLOATS // max(1, B * P.L * 2 * P.R))
        for t0 in range(0, N, chunk):
            t1 = min(N, t0 + chunk)
            c = P.cond_chunk(ups, t0, t1).permute(1, 2, 0, 3)          # (n, L, B, 2R)
            for i in range(t1 - t0):
                n = t0 + i
                q = mu_law_encode(state.inputs(a[:, f[n]], lag[:, f[n]]), N_CLASSES)
                x = sum(embed[j][q[:, j]] for j in range(q.shape[-1]))
                if phase is not None:
                    x = x + phase[:, n] @ self.phase_proj.weight.float().t()
                x = torch.tanh(x) if P.embed_tanh else x
                logits = layers.layers(x, c[i], n % P.D)
                cls = sample_cdf(logits * itemp[:, f[n], None], u[:, n])
                e = mu_law_decode(cls, N_CLASSES)
                s_out[:, n] = state.push(e if pulses is None else e + pulses[:, n])
                q_out[:, n] = cls
        return s_out, q_out


def _native_library():
    from . import native
    return native.library()
