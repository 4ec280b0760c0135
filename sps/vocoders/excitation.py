"""Linear-prediction excitation for sample-level vocoders (LPCNet, Valin & Skoglund 2019).

A sample-level network has to learn the spectral envelope, the pitch pulses and the
noise of speech. The acoustic features already say most of it, so the LPC vocoders of
``sps`` let DSP do that part and the network only the rest:

* **Short-term prediction.** The all-pole envelope of every frame comes from its
  mel-cepstrum (:func:`sps.features.mgc_to_lpc`, here in torch from the conditioning):
  the pre-emphasised sample ``s[n]`` is predicted as ``p[n] = -sum_k a_k s[n - k]``
  with the coefficients of frame ``round(n / hop)``; the network models the excitation
  ``e[n] = s[n] - p[n]`` (8-bit mu-law), and a sample is ``s[n] = p[n] + e[n]``. The
  synthesis filter shapes the quantisation noise like the spectrum.
* **Long-term (pitch) prediction.** The excitation one pitch period ago,
  ``e[n - T0]`` (``T0 = sample_rate / F0`` of the frame, fractional, linearly
  interpolated; unvoiced frames use the interpolated F0), is an input too: voiced
  excitation repeats at the pitch period, so the network learns to repeat it, with the
  pulses placed by the signal itself (CELP's adaptive codebook).

* **Pitch phase** (option ``pitch_phase`` of the vocoders). ``sin`` and ``cos`` of a
  phase that is 0 at every pitch pulse: in training locked to the pulses of the natural
  excitation (:func:`pulse_positions`, :func:`pulse_phase`), in generation run from the
  F0 contour (:func:`f0_phase`). The network learns to put a pulse where the phase says,
  so the pulses of generated speech follow F0 instead of drifting (the source input of
  NSF, made usable by an autoregressive model: a phase that is not locked to the
  training waveform's own pulses would be ignored).

Inputs of the network at sample ``n`` (all known before ``e[n]`` is drawn):
``s[n-1], p[n], e[n-1], e[n-T0]``, mu-law quantised (:data:`INPUTS`), and the pitch phase.

:class:`LinearPrediction` holds the settings, the conditioning statistics (to
de-normalise the features) and the per-frame analysis; :func:`teacher_inputs` computes
the inputs of a whole waveform at once (training), :class:`ExcitationState` one sample
at a time (generation, the PyTorch reference of the C kernels).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sps.dsp import mu_law_decode, mu_law_encode
from sps.features.lpc import LPCAnalysis

#: the network inputs, in order
INPUTS = ("s_prev", "pred", "e_prev", "e_lag")


class LinearPrediction(nn.Module):
    """Per-frame LPC and pitch lag of normalised conditioning features.

    Parameters
    ----------
    cond_dim : int
        Conditioning features per frame ``C`` (static ``[mgc | lf0 | vuv | bap]``).
    features : dict
        Where things are in the conditioning and how it was analysed:
        ``sample_rate``, ``alpha``, ``mgc`` (``[first column, count]``), ``lf0`` and
        ``vuv`` (columns); the stage fills it from the stream spec.
    order : int
        LPC order (16).
    preemphasis : float
        The networks model the pre-emphasised waveform ``x[n] - c x[n-1]`` (LPCNet: 0.85).
    lag_window_hz : float
        Gaussian lag window of the autocorrelation (Hz).
    fft_size : int
        FFT size of the envelope.
    max_lag : int
        Longest pitch period in samples (longer periods are clamped).

    Buffers ``cond_mean`` / ``cond_std`` (the statistics the conditioning was normalised
    with, set by :meth:`set_conditioning`) travel in the state dict.
    """

    def __init__(self, cond_dim: int, features: dict, order: int = 16, preemphasis: float = 0.85,
                 lag_window_hz: float = 50.0, fft_size: int = 1024, max_lag: int = 400):
        super().__init__()
        try:
            self.sample_rate = int(features["sample_rate"])
            alpha = float(features["alpha"])
            self.mgc_start, self.mgc_dim = (int(v) for v in features["mgc"])
            self.lf0_col, self.vuv_col = int(features["lf0"]), int(features["vuv"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"features must give sample_rate, alpha, mgc [start, count], lf0 and vuv "
                             f"columns, got {features!r} ({err})") from None
        if not 1 <= order < fft_size // 2 or not 0.0 <= preemphasis < 1.0:
            raise ValueError(f"need 1 <= order < fft_size / 2 and 0 <= preemphasis < 1, got {order}, {preemphasis}")
        self.features = {"sample_rate": self.sample_rate, "alpha": alpha, "mgc": [self.mgc_start, self.mgc_dim],
                         "lf0": self.lf0_col, "vuv": self.vuv_col}
        self.cond_dim, self.order, self.preemphasis = cond_dim, int(order), float(preemphasis)
        self.fft_size, self.max_lag = int(fft_size), int(max_lag)
        self.register_buffer("cond_mean", torch.zeros(cond_dim))
        self.register_buffer("cond_std", torch.ones(cond_dim))
        self.analysis = LPCAnalysis(self.mgc_dim, alpha, order, fft_size, preemphasis, lag_window_hz,
                                    self.sample_rate)

    @torch.no_grad()
    def set_conditioning(self, mean, std) -> None:
        """Store the statistics the conditioning is normalised with (``(C,)`` each)."""
        self.cond_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.cond_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def natural(self, cond: Tensor) -> Tensor:
        """Normalised conditioning ``(B, T, C)`` -> features in natural units (float64)."""
        return cond.double() * self.cond_std.double() + self.cond_mean.double()

    @torch.no_grad()
    def frame_lpc(self, cond: Tensor, return_gain: bool = False):
        """LPC of every frame: ``(B, T, C)`` -> ``a_1 .. a_p`` ``(B, T, order)`` float32.

        With ``return_gain`` also the prediction-error power of each frame ``(B, T)``
        (float64): the variance of the excitation that, through ``1 / A(z)``, gives the
        (pre-emphasised) envelope's power.
        """
        a, err = self.analysis(self.natural(cond)[..., self.mgc_start:self.mgc_start + self.mgc_dim])
        return (a.float(), err) if return_gain else a.float()

    @torch.no_grad()
    def frame_lag(self, cond: Tensor) -> Tensor:
        """Pitch period of every frame in samples (from the continuous lf0): ``(B, T)`` float32."""
        lf0 = self.natural(cond)[..., self.lf0_col]
        return (self.sample_rate * torch.exp(-lf0)).clamp(2.0, float(self.max_lag)).float()

    @torch.no_grad()
    def frame_voicing(self, cond: Tensor) -> Tensor:
        """Voicing flag of every frame: ``(B, T)`` bool."""
        return self.natural(cond)[..., self.vuv_col] > 0.5


def sample_frames(num_frames: int, hop: int, device=None) -> Tensor:
    """Frame of each sample: ``round(n / hop)`` (WORLD frames are centred on ``t * hop``)."""
    n = torch.arange(num_frames * hop, device=device)
    return torch.div(n + hop // 2, hop, rounding_mode="floor").clamp_max(num_frames - 1)


def _predict(s: Tensor, a_samples: Tensor) -> Tensor:
    """``p[n] = -sum_k a_k(n) s[n-k]`` for a whole waveform ``(B, N)`` (per-sample LPC ``(B, N, p)``)."""
    p = a_samples.shape[-1]
    past = torch.nn.functional.pad(s, (p, 0)).unfold(1, p + 1, 1)[..., :p].flip(-1)   # s[n-1] .. s[n-p]
    return -(past * a_samples).sum(-1)


def noisy_history(s: Tensor, a_samples: Tensor, noise: float, generator: torch.Generator | None = None,
                  classes: int = 256) -> Tensor:
    """The waveform a generator would have built from slightly wrong excitation samples.

    The excitation of ``s`` is moved by Gaussian noise of ``noise`` mu-law classes
    (rounded to whole classes) and run back through the synthesis filters ``1 / A(z)``
    (:func:`sps.dsp.lfilter`, time-varying): LPCNet's noise injection, which teaches the
    network to correct the errors its own samples feed back.
    """
    from sps.dsp import lfilter
    e = s - _predict(s, a_samples)
    q = mu_law_encode(e.float(), classes)
    step = torch.randn(q.shape, generator=generator).to(q.device) * noise
    e_noisy = mu_law_decode((q + step.round().long()).clamp(0, classes - 1), classes).to(s.dtype)
    ones = torch.ones(a_samples.shape[:-1] + (1,), dtype=s.dtype, device=s.device)
    den = torch.cat([ones, a_samples.to(s.dtype)], -1)
    return lfilter(e_noisy[:, None], den[:, None], ones[:, None], time_varying=True, check_stability=False)[:, 0]


def teacher_inputs(s: Tensor, a: Tensor, lag: Tensor, hop: int, noise: float = 0.0,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Network inputs and targets of a whole (pre-emphasised) waveform.

    Parameters
    ----------
    s : Tensor [shape=(B, N)]
        Pre-emphasised waveform, ``N = T * hop``; samples before ``s[:, 0]`` are zero.
    a : Tensor [shape=(B, T, p)]
        Per-frame LPC (:meth:`LinearPrediction.frame_lpc`).
    lag : Tensor [shape=(B, T)]
        Per-frame pitch period in samples.
    noise : float
        With ``noise > 0`` the inputs come from :func:`noisy_history` and the target is
        what takes the noisy prediction back to the clean sample, ``s[n] - p~[n]``.

    Returns
    -------
    inputs : Tensor [shape=(B, N, 4)]
        ``s[n-1], p[n], e[n-1], e[n-T0]`` (:data:`INPUTS`), float32.
    e : Tensor [shape=(B, N)]
        The excitation ``s[n] - p[n]`` (the target).
    """
    N = s.shape[1]
    f = sample_frames(a.shape[1], hop, s.device)
    a_samples = a[:, f]
    clean = s
    if noise > 0:
        s = noisy_history(s, a_samples, noise, generator)
    pred = _predict(s, a_samples)
    e = s - pred
    e_prev = torch.nn.functional.pad(e, (1, 0))[:, :N]
    lag_s = lag[:, f]
    whole = torch.floor(lag_s)
    frac = lag_s - whole
    n = torch.arange(N, device=s.device)[None, :]
    i0 = n - whole.long()
    e_pad = torch.nn.functional.pad(e, (1, 0))            # index j + 1 holds e[j]; 0 holds e[-1] = 0

    def at(i):
        return e_pad.gather(1, (i + 1).clamp(min=0))
    e_lag = at(i0) * (1 - frac) + at(i0 - 1) * frac
    s_prev = torch.nn.functional.pad(s, (1, 0))[:, :N]
    return torch.stack([s_prev, pred, e_prev, e_lag], -1).float(), clean - pred


class ExcitationState:
    """The same inputs one sample at a time, for generation (the PyTorch reference).

    Keeps the last ``max_lag + 2`` samples of ``s`` and ``e`` of ``B`` streams.
    """

    def __init__(self, B: int, order: int, max_lag: int, device=None):
        self.H = max(order, max_lag + 2)
        self.s = torch.zeros(B, self.H, device=device)   # s[n-1], s[n-2], ... (index 0 is n-1)
        self.e = torch.zeros(B, self.H, device=device)
        self.order = order

    def inputs(self, a: Tensor, lag: Tensor) -> Tensor:
        """Inputs of the next sample: ``a (B, p)``, ``lag (B,)`` -> ``(B, 4)``; keeps ``pred``."""
        self.pred = -(self.s[:, :self.order] * a).sum(-1)
        whole = torch.floor(lag)
        frac = lag - whole
        i0 = whole.long() - 1                         # e[n - L] sits at index L - 1
        e0 = self.e.gather(1, i0[:, None].clamp(0, self.H - 1))[:, 0]
        e1 = self.e.gather(1, (i0 + 1)[:, None].clamp(0, self.H - 1))[:, 0]
        e_lag = e0 * (1 - frac) + e1 * frac
        return torch.stack([self.s[:, 0], self.pred, self.e[:, 0], e_lag], -1)

    def push(self, e: Tensor) -> Tensor:
        """Append the excitation ``e (B,)`` (drawn, plus the pulse train if any); returns the
        new sample ``s = pred + e``."""
        s = self.pred + e
        self.s = torch.cat([s[:, None], self.s[:, :-1]], 1)
        self.e = torch.cat([e[:, None], self.e[:, :-1]], 1)
        return s


def pulse_positions(e: Tensor, lag: Tensor, voiced: Tensor, search: float = 0.3) -> list[list[int]]:
    """Pitch pulses (glottal closure instants) of an excitation, one list per row.

    In each voiced run the first pulse is the largest excitation sample (in the polarity
    of the row's pulses: the sign of the third moment) within one period of the run's
    start; every next one is the largest within ``(1 +- search) T0`` after the previous.

    Parameters
    ----------
    e : Tensor [shape=(B, N)]
        Excitation (LPC residual).
    lag : Tensor [shape=(B, N)]
        Pitch period of every sample, in samples.
    voiced : Tensor [shape=(B, N)] bool
    """
    import numpy as np
    out = []
    for x, T0, v in zip(e.detach().double().cpu().numpy(), lag.detach().cpu().numpy(),
                        voiced.detach().cpu().numpy()):
        N = len(x)
        sign = 1.0 if float((x[v] ** 3).sum()) >= 0 else -1.0
        x = sign * x
        starts = np.flatnonzero(v & ~np.concatenate([[False], v[:-1]]))
        ends = np.flatnonzero(v & ~np.concatenate([v[1:], [False]])) + 1
        pulses = []
        for a, b in zip(starts, ends):
            g = a + int(np.argmax(x[a:min(b, a + max(2, int(np.ceil(T0[a]))))]))
            while True:
                pulses.append(int(g))
                lo, hi = g + int((1 - search) * T0[g]), g + int(np.ceil((1 + search) * T0[g])) + 1
                if lo >= b:
                    break
                g = lo + int(np.argmax(x[lo:min(hi, b)]))
        out.append(pulses)
    return out


def pulse_phase(pulses: list[list[int]], lag: Tensor) -> Tensor:
    """Pitch phase locked to given pulses: ``(B, N)`` radians in ``[0, 2 pi)``.

    Between two pulses less than ``1.5 T0`` apart the phase rises linearly from 0 to
    ``2 pi``; elsewhere (before the first pulse, after the last, across gaps) it runs at
    ``2 pi / T0`` per sample from the nearest pulse before (or, before the first pulse,
    back from it).
    """
    import numpy as np
    B, N = lag.shape
    out = np.zeros((B, N))
    n = np.arange(N)
    for i, (pl, T0) in enumerate(zip(pulses, lag.detach().double().cpu().numpy())):
        if not pl:
            continue
        P = np.asarray(pl)
        k = np.searchsorted(P, n, side="right") - 1              # last pulse <= n (-1: none)
        prev = P[np.maximum(k, 0)]
        nxt = P[np.minimum(k + 1, len(P) - 1)]
        span = (nxt - prev).astype(float)
        inside = (k >= 0) & (k + 1 < len(P)) & (span > 0) & (span < 1.5 * T0[prev])
        period = np.where(inside, np.maximum(span, 1.0), T0)
        out[i] = 2 * np.pi * np.mod((n - prev) / period, 1.0)
    return torch.from_numpy(out).to(lag.device)


def f0_phase(lag: Tensor, voiced: Tensor) -> Tensor:
    """Pitch phase from the F0 contour alone (generation): ``(B, N)`` radians.

    Rises by ``2 pi / T0[n]`` per voiced sample and restarts at 0 at every voiced onset
    (the network places its pulses where the phase is 0, as it learnt from
    :func:`pulse_phase`).
    """
    inc = torch.where(voiced, 1.0 / lag.double(), torch.zeros((), dtype=torch.float64, device=lag.device))
    c = torch.cumsum(inc, 1)
    before = torch.where(voiced, torch.full_like(c, -math.inf), c)      # c held over unvoiced samples
    base = torch.cummax(before, 1).values.clamp_min(0.0)
    return 2 * math.pi * torch.remainder(c - base - inc, 1.0)     # 0 at the onset itself


def phase_inputs(phase: Tensor, voiced: Tensor) -> Tensor:
    """``(B, N)`` phase and voicing -> ``(B, N, 2)`` inputs ``[sin, cos]`` (0 when unvoiced)."""
    v = voiced.to(torch.float64)
    return torch.stack([torch.sin(phase.double()) * v, torch.cos(phase.double()) * v], -1).float()


def pulse_marks(phase: Tensor, voiced: Tensor) -> Tensor:
    """Where a phase of :func:`f0_phase` puts its pulses: voiced onsets and the samples
    where it wraps, ``(B, N)`` bool."""
    prev_v = torch.nn.functional.pad(voiced[:, :-1], (1, 0), value=False)
    prev_ph = torch.nn.functional.pad(phase[:, :-1], (1, 0), value=math.inf)
    return voiced & (~prev_v | (phase < prev_ph))


def pitch_source(lag: Tensor, voiced: Tensor, hop: int, gain: Tensor | None = None,
                 s: Tensor | None = None, a: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Pitch-phase inputs and pulse train of the LPC vocoders (options ``pitch_phase``, ``pulses``).

    Training (``s``, the pre-emphasised waveform ``(B, N)``, and its per-frame LPC ``a``
    given): the phase is locked to the pulses of the waveform's excitation
    (:func:`pulse_positions`, :func:`pulse_phase`), so the network learns that a pulse
    comes where the phase is 0. Generation (no waveform): the phase follows the F0
    contour (:func:`f0_phase`), and the pulses sit where it wraps. ``lag``, ``voiced``
    and ``gain`` (the prediction-error power of :meth:`LinearPrediction.frame_lpc`) are
    per frame ``(B, T)``.

    Returns
    -------
    phase : Tensor [shape=(B, T * hop, 2)]
        ``sin, cos`` of the phase in voiced samples, 0 elsewhere (:func:`phase_inputs`).
    pulses : Tensor [shape=(B, T * hop)] or None
        With ``gain``: one pulse of height ``sqrt(gain T0)`` per period (unit-power
        excitation scaled to the frame's prediction-error power, as the classical
        vocoder), float64.
    """
    T = lag.shape[1]
    f = sample_frames(T, hop, lag.device)
    lag_s, voiced_s = lag[:, f], voiced[:, f]
    if s is None:
        phase = f0_phase(lag_s, voiced_s)
        marks = pulse_marks(phase, voiced_s)
    else:
        e = s - _predict(s, a[:, f].to(s.dtype))
        positions = pulse_positions(e, lag_s, voiced_s)
        phase = pulse_phase(positions, lag_s)
        marks = torch.zeros_like(voiced_s)
        for i, pos in enumerate(positions):
            marks[i, pos] = True
    pulses = None
    if gain is not None:
        pulses = marks.double() * (gain.double()[:, f] * lag_s.double()).sqrt()
    return phase_inputs(phase, voiced_s), pulses


def training_batch(lp: LinearPrediction, s: Tensor, cond: Tensor, hop: int, noise: float = 0.0,
                   phase: bool | Tensor = False, pulses: bool | Tensor = False):
    """Teacher-forced inputs and targets of the LPC vocoders for pre-emphasised ``s (B, N)``.

    ``phase`` / ``pulses``: False (the option is off), True (computed from ``s``,
    :func:`pitch_source`) or the tensor itself (e.g. what generation used). With pulses
    the target is the excitation minus the pulse train: the network models what the
    pulses leave.

    Returns
    -------
    inputs : Tensor [shape=(B, N, 4)] float (:func:`teacher_inputs`)
    target : Tensor [shape=(B, N)] int64 mu-law classes
    phase : Tensor [shape=(B, N, 2)] or None
    """
    a, gain = lp.frame_lpc(cond, return_gain=True)
    a = a.double()
    lag = lp.frame_lag(cond)
    inputs, e = teacher_inputs(s, a, lag, hop, noise=noise)
    if phase is True or pulses is True:
        ph, pd = pitch_source(lag, lp.frame_voicing(cond), hop, gain if pulses is True else None, s, a)
        phase = ph if phase is True else phase
        pulses = pd if pulses is True else pulses
    if pulses is not False:
        e = e - pulses.to(e.dtype)
    return inputs, mu_law_encode(e.float(), 256), (None if phase is False else phase)


def generation_source(lp: LinearPrediction, cond: Tensor, hop: int, phase: bool, pulses: bool):
    """The pitch-phase inputs ``(B, N, 2)`` and pulse train ``(B, N)`` generation feeds the
    network and adds to its excitation (None for an option that is off)."""
    if not (phase or pulses):
        return None, None
    gain = lp.frame_lpc(cond, return_gain=True)[1] if pulses else None
    ph, pd = pitch_source(lp.frame_lag(cond), lp.frame_voicing(cond), hop, gain)
    return (ph if phase else None), (pd.float() if pulses else None)


def ring_length(order: int, max_lag: int) -> int:
    """Length of the C kernels' excitation ring buffers: a power of two > max_lag + order + 2."""
    return 1 << (max_lag + order + 2).bit_length()

