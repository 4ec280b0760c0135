"""LPC WaveRNN: a GRU that models the linear-prediction excitation (LPCNet-style).

The recurrent cell is WaveRNN's (one GRU of size ``H``, the recurrence in the fused C
kernel of :mod:`.rnn`), but it predicts the 8-bit mu-law excitation of
:mod:`sps.vocoders.excitation` instead of a 16-bit sample: its inputs are the four
mu-law quantised signals ``s[n-1], p[n], e[n-1], e[n-T0]`` (each through its own
embedding of the input projection, ``E_i`` of shape ``(256, 3H)``), plus the
conditioning; its output is one 256-way softmax over ``e[n]``::

    xi_n = sum_i E_i[q_i(n)] + I_cond c(n) + b
    h_n  = GRU(xi_n, h_{n-1})
    P(e_n) = softmax(O2 relu(O1 h_n))

and ``s[n] = p[n] + e[n]`` is de-emphasised into the waveform. Conditioning: two
convolutions over the normalised frame features (as WaveRNN), projected to ``3H`` and
linearly interpolated to the samples with frame ``k`` on sample ``k * hop`` (the WORLD
frame centres, as the LPC).

Sampling: inverse-CDF with pre-drawn uniforms (:mod:`sps.vocoders.sampling`) at
``temperature``, and at ``voiced_temperature`` in voiced frames (LPCNet lowers the
sampling temperature of voiced speech, which removes noise between the harmonics).
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

from ..protocol import Vocoder
from .rnn import gru_projected

N_CLASSES = 256


class LPCWaveRNN(Vocoder):
    """GRU vocoder of the linear-prediction excitation.

    Parameters
    ----------
    cond_dim : int
        Conditioning features per frame ``C``.
    features : dict
        Conditioning layout and analysis (see :class:`~sps.vocoders.excitation.LinearPrediction`);
        the stage fills it from the stream spec.
    hidden : int
        GRU size ``H``.
    cond_channels : int
        Width ``D`` of the conditioning network.
    cond_kernel : int
        Kernel size (frames, odd) of its two convolutions.
    hop_length : int
        Samples per frame.
    order, preemphasis, lag_window_hz : int, float, float
        Linear prediction settings.
    context_frames : int
        Frames at the start of every training segment that only warm up the state and
        the pitch history (not in the loss).
    temperature, voiced_temperature : float
        Default sampling temperatures of unvoiced and voiced frames.
    input_noise : float
        Training only: the inputs come from a history whose excitation was moved by
        Gaussian noise of this many mu-law classes (LPCNet's noise injection; 0: off).
    pitch_phase : bool
        A pitch-phase input (``sin, cos`` of :func:`~sps.vocoders.excitation.pitch_source`,
        through ``I_phase (3H, 2)``): locked to the pulses of the natural waveform in
        training, following F0 in generation, so the pulses fall where the F0 contour
        puts them.
    pulses : bool
        A pulse train (one pulse per period, at the pitch phase's zeros, height
        ``sqrt(gain T0)``) is part of the excitation: the network models the excitation
        minus the pulses, and generation adds them back, so voiced speech stays exactly
        periodic (the classical vocoder's source, refined by the network).
    """

    def __init__(self, cond_dim: int, features: dict, hidden: int = 384, cond_channels: int = 128,
                 cond_kernel: int = 3, hop_length: int = 80, order: int = 16, preemphasis: float = 0.85,
                 lag_window_hz: float = 50.0, context_frames: int = 4, temperature: float = 1.0,
                 voiced_temperature: float = 0.7, input_noise: float = 0.0, pitch_phase: bool = False,
                 pulses: bool = False):
        super().__init__()
        if cond_kernel % 2 == 0 or hidden < 2:
            raise ValueError(f"cond_kernel must be odd and hidden >= 2, got {cond_kernel}, {hidden}")
        self.cond_dim, self.hidden, self.hop_length = cond_dim, hidden, hop_length
        self.context_frames, self.preemphasis = int(context_frames), float(preemphasis)
        self.temperature, self.voiced_temperature = float(temperature), float(voiced_temperature)
        self.input_noise = float(input_noise)
        self.lp = LinearPrediction(cond_dim, features, order=order, preemphasis=preemphasis,
                                   lag_window_hz=lag_window_hz)
        H, D = hidden, cond_channels
        pad = cond_kernel // 2
        self.cond_net = nn.Sequential(
            nn.Conv1d(cond_dim, D, cond_kernel, padding=pad), nn.Tanh(),
            nn.Conv1d(D, D, cond_kernel, padding=pad), nn.Tanh())
        self.I_cond = nn.Linear(D, 3 * H)
        bound = H ** -0.5
        self.embed = nn.Parameter(torch.empty(len(INPUTS), N_CLASSES, 3 * H).uniform_(-bound, bound))
        self.R = nn.Parameter(torch.empty(3 * H, H).uniform_(-bound, bound))
        self.O1 = nn.Linear(H, N_CLASSES)
        self.O2 = nn.Linear(N_CLASSES, N_CLASSES)
        self.I_phase = nn.Linear(2, 3 * H, bias=False) if pitch_phase else None
        self.pulses = bool(pulses)

    reads_features = True
    takes_uniforms = True
    target_preemphasis = 0.0     # pre- and de-emphasis happen inside

    def set_conditioning(self, mean, std) -> None:
        """The statistics the conditioning is normalised with (to de-normalise mgc and lf0)."""
        self.lp.set_conditioning(mean, std)

    # ------------------------------------------------------------------ shared pieces
    def frame_projection(self, cond: Tensor) -> Tensor:
        """Conditioning network and input projection per frame: ``(B, T, C)`` -> ``(B, T, 3H)``."""
        if cond.dim() != 3 or cond.shape[-1] != self.cond_dim:
            raise ValueError(f"cond must have shape (B, T, {self.cond_dim}), got {tuple(cond.shape)}")
        return self.I_cond(self.cond_net(cond.transpose(1, 2)).transpose(1, 2))

    def sample_projection(self, P: Tensor) -> Tensor:
        """Frame projections ``(B, T, G)`` -> per sample ``(B, T * hop, G)``, frame ``k`` on
        sample ``k * hop``, linear in between (held after the last frame)."""
        B, T, G = P.shape
        hop = self.hop_length
        n = torch.arange(T * hop, device=P.device)
        k0 = torch.div(n, hop, rounding_mode="floor")
        a = ((n - k0 * hop).float() / hop)[None, :, None]
        k1 = (k0 + 1).clamp_max(T - 1)
        return P[:, k0] + a * (P[:, k1] - P[:, k0])

    def head(self, h: Tensor) -> Tensor:
        """Hidden states ``(..., H)`` -> logits of the excitation class ``(..., 256)``."""
        return self.O2(F.relu(self.O1(h)))

    # ------------------------------------------------------------------ training
    def logits(self, wav: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits and target classes.

        Parameters
        ----------
        wav : Tensor [shape=(B, N)]
            Waveform in [-1, 1] (not pre-emphasised), ``N = T * hop``.
        cond : Tensor [shape=(B, T, C)]

        Returns
        -------
        logits : Tensor [shape=(B, N, 256)]
        target : Tensor [shape=(B, N)] int64, mu-law classes of the excitation
        """
        B, N = wav.shape
        if N != cond.shape[1] * self.hop_length:
            raise ValueError(f"wav {tuple(wav.shape)} and cond {tuple(cond.shape)} do not match: "
                             f"need N == T * hop_length ({self.hop_length})")
        s = preemphasis(wav.double(), self.lp.preemphasis) if self.lp.preemphasis else wav.double()
        return self.excitation_logits(s, cond)

    def excitation_logits(self, s: Tensor, cond: Tensor, phase: Tensor | None = None,
                          pulses: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`logits` of the pre-emphasised waveform ``s (B, N)`` itself; ``phase``
        ``(B, N, 2)`` and ``pulses`` ``(B, N)``: the pitch-phase inputs and pulse train
        (default: locked to the pulses of ``s``)."""
        inputs, target, ph = training_batch(
            self.lp, s, cond, self.hop_length, noise=self.input_noise if self.training else 0.0,
            phase=(phase if phase is not None else True) if self.I_phase is not None else False,
            pulses=(pulses if pulses is not None else True) if self.pulses else False)
        q = mu_law_encode(inputs, N_CLASSES)                           # (B, N, 4)
        xi = self.sample_projection(self.frame_projection(cond))
        if ph is not None:
            xi = xi + self.I_phase(ph)
        for i in range(q.shape[-1]):
            xi = xi + F.embedding(q[..., i], self.embed[i])
        return self.head(gru_projected(xi, self.R, self.training)), target

    def loss(self, wav: Tensor, cond: Tensor) -> Tensor:
        """Cross-entropy of the excitation classes (nats per sample), the first
        ``context_frames`` frames left out."""
        logits, target = self.logits(wav, cond)
        skip = min(self.context_frames * self.hop_length, target.shape[1] - 1)
        return F.cross_entropy(logits[:, skip:].reshape(-1, N_CLASSES), target[:, skip:].reshape(-1))

    # ------------------------------------------------------------------ generation
    def prunable(self) -> dict[str, nn.Parameter]:
        """The matrices gradual pruning may sparsify (:mod:`sps.vocoders.pruning`): the
        recurrent matrix and the two output layers (LPCNet prunes its GRU to 10 %)."""
        return {"R": self.R, "O1": self.O1.weight, "O2": self.O2.weight}

    @torch.no_grad()
    def generate(self, cond: Tensor, lengths: Tensor | list | None = None, temperature: float | None = None,
                 *, voiced_temperature: float | None = None, generator: torch.Generator | None = None,
                 backend: str = "auto", precision: str = "float32", uniforms: Tensor | None = None,
                 sparse: bool | None = None, return_excitation: bool = False) -> Tensor:
        """Sample a waveform.

        Parameters
        ----------
        cond : Tensor [shape=(B, T, C)]
            Normalised conditioning features.
        lengths : sequence of int, optional
            Valid frames per utterance; later samples are zero.
        temperature, voiced_temperature : float, optional
            Sampling temperatures of unvoiced and voiced frames (default: the model's).
        generator : torch.Generator, optional
            CPU generator of the uniform draws (one per sample, drawn up front).
        backend : {"auto", "native", "torch"}
            ``native``: the C kernel; ``torch``: the eager reference.
        precision : {"float32", "bfloat16"}
            Recurrent and output matrices rounded to bfloat16 (the C kernel stores them
            so, halving its memory traffic); arithmetic stays float32.
        sparse : bool, optional
            Block-sparse layout in the C kernel (None: for pruned matrices).
        uniforms : Tensor [shape=(B, T * hop)], optional
            The draws themselves.
        return_excitation : bool
            Also return the drawn excitation classes ``(B, T * hop)``.

        Returns
        -------
        Tensor [shape=(B, T * hop)]
            Waveform in [-1, 1] (de-emphasised).
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
        lengths = [T] * B if lengths is None else [int(n) for n in lengths]
        if len(lengths) != B or min(lengths) < 1 or max(lengths) > T:
            raise ValueError(f"lengths {lengths} do not fit cond of shape {tuple(cond.shape)}")
        backend = resolve_backend(backend, cond.device, what="LPC WaveRNN generation", choices=("native", "torch"),
                                  native=_native_library)
        cond = cond.float()
        P = self.frame_projection(cond).float()                    # (B, T, 3H)
        a = self.lp.frame_lpc(cond)                                # (B, T, p)
        lag = self.lp.frame_lag(cond)                              # (B, T)
        voiced = self.lp.frame_voicing(cond)
        temp = torch.where(voiced, t_voi, t_unv).float()           # (B, T)
        if uniforms is None:
            uniforms = torch.rand(B, N, generator=generator)
        u = uniforms.to(cond.device).float()
        ph, pd = generation_source(self.lp, cond, hop, self.I_phase is not None, self.pulses)
        if backend == "native":
            from . import native
            s, q = native.run_lpc(self, P, a, lag, temp, u, precision=precision, sparse=sparse, phase=ph, pulses=pd)
        else:
            s, q = self._run_reference(P, a, lag, temp, u, precision, ph, pd)
        wav = deemphasis(s.double(), self.lp.preemphasis).float() if self.lp.preemphasis else s
        wav = wav.clamp(-1.0, 1.0)
        for i, n in enumerate(lengths):
            wav[i, n * hop:] = 0.0
        if was_training:
            self.train()
        return (wav, q) if return_excitation else wav

    def _weights_version(self) -> tuple:
        """Identifies the current weights (the C kernel's packed copy is rebuilt when they change)."""
        return tuple((p.data_ptr(), p._version) for p in (self.R, self.O1.weight, self.O2.weight, self.embed,
                                                          self.O1.bias, self.O2.bias))

    def _run_reference(self, P: Tensor, a: Tensor, lag: Tensor, temp: Tensor, u: Tensor,
                       precision: str = "float32", phase: Tensor | None = None,
                       pulses: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Eager per-sample loop: ``(s (B, N), classes (B, N))``."""
        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")

        def mat(w):
            w = w.detach().float()
            return w.bfloat16().float() if precision == "bfloat16" else w
        B, T, G = P.shape
        H, hop = self.hidden, self.hop_length
        N = T * hop
        state = ExcitationState(B, self.lp.order, self.lp.max_lag, P.device)
        h = P.new_zeros(B, H)
        f = sample_frames(T, hop, P.device)
        s_out = P.new_zeros(B, N)
        q_out = torch.zeros(B, N, dtype=torch.long, device=P.device)
        Rt = mat(self.R).t()
        O1, O2 = mat(self.O1.weight), mat(self.O2.weight)
        itemp = (1.0 / temp).float()
        for n in range(N):
            k0 = n // hop
            frac = (n - k0 * hop) / hop
            k1 = min(k0 + 1, T - 1)
            x = P[:, k0] + frac * (P[:, k1] - P[:, k0])
            q = mu_law_encode(state.inputs(a[:, f[n]], lag[:, f[n]]), N_CLASSES)
            for i in range(q.shape[-1]):
                x = x + self.embed[i][q[:, i]]
            if phase is not None:
                x = x + phase[:, n] @ self.I_phase.weight.t()
            gh = h @ Rt
            r = torch.sigmoid(gh[:, :H] + x[:, :H])
            z = torch.sigmoid(gh[:, H:2 * H] + x[:, H:2 * H])
            c = torch.tanh(r * gh[:, 2 * H:] + x[:, 2 * H:])
            h = z * h + (1 - z) * c
            logits = F.linear(F.relu(F.linear(h, O1, self.O1.bias)), O2, self.O2.bias)
            cls = sample_cdf(logits * itemp[:, f[n], None], u[:, n])
            e = mu_law_decode(cls, N_CLASSES)
            s_out[:, n] = state.push(e if pulses is None else e + pulses[:, n])
            q_out[:, n] = cls
        return s_out, q_out


def _native_library():
    from . import native
    return native.library()
