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

Inputs of the network at sample ``n`` (all known before ``e[n]`` is drawn):
``s[n-1], p[n], e[n-1], e[n-T0]``, mu-law quantised (:data:`INPUTS`).

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

#: the network inputs, in order
INPUTS = ("s_prev", "pred", "e_prev", "e_lag")


def warped_cos_basis(order: int, alpha: float, fft_size: int) -> Tensor:
    """``cos(m w~(w))`` at the FFT bins, the basis of :func:`sps.features.mgc_to_log_power`
    (float64, shape (order + 1, fft_size // 2 + 1))."""
    w = torch.linspace(0.0, math.pi, fft_size // 2 + 1, dtype=torch.float64)
    warped = torch.atan2((1 - alpha ** 2) * torch.sin(w), (1 + alpha ** 2) * torch.cos(w) - 2 * alpha)
    return torch.cos(torch.arange(order + 1, dtype=torch.float64)[:, None] * warped[None, :])


def levinson(r: Tensor, order: int) -> Tensor:
    """Levinson-Durbin over the last axis: ``r (..., order + 1)`` -> ``a (..., order)``
    (``a_1 .. a_p`` of ``A(z) = 1 + sum a_k z^-k``; the same recursion as
    :func:`sps.features.levinson`)."""
    a = r.new_zeros(r.shape[:-1] + (order,))
    err = r[..., 0]
    for i in range(1, order + 1):
        acc = r[..., i] + (a[..., :i - 1] * r[..., 1:i].flip(-1)).sum(-1)
        k = -acc / err
        a = torch.cat([a[..., :i - 1] + k[..., None] * a[..., :i - 1].flip(-1), k[..., None],
                       a[..., i:]], -1)
        err = err * (1 - k * k)
    return a


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
        self.register_buffer("basis", (2.0 * warped_cos_basis(self.mgc_dim - 1, alpha, fft_size)), persistent=False)
        w = torch.linspace(0.0, math.pi, fft_size // 2 + 1, dtype=torch.float64)
        emph = 1.0 + preemphasis ** 2 - 2.0 * preemphasis * torch.cos(w)
        self.register_buffer("emphasis", emph, persistent=False)
        lag = torch.arange(order + 1, dtype=torch.float64)
        self.register_buffer("lag_window", torch.exp(-0.5 * (2 * math.pi * lag_window_hz * lag / self.sample_rate) ** 2),
                             persistent=False)

    @torch.no_grad()
    def set_conditioning(self, mean, std) -> None:
        """Store the statistics the conditioning is normalised with (``(C,)`` each)."""
        self.cond_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.cond_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def natural(self, cond: Tensor) -> Tensor:
        """Normalised conditioning ``(B, T, C)`` -> features in natural units (float64)."""
        return cond.double() * self.cond_std.double() + self.cond_mean.double()

    @torch.no_grad()
    def frame_lpc(self, cond: Tensor) -> Tensor:
        """LPC of every frame: ``(B, T, C)`` -> ``a_1 .. a_p`` ``(B, T, order)`` float32."""
        mgc = self.natural(cond)[..., self.mgc_start:self.mgc_start + self.mgc_dim]
        lp = mgc @ self.basis
        power = torch.exp(lp - lp.amax(-1, keepdim=True)) * self.emphasis
        r = torch.fft.irfft(power, n=self.fft_size, dim=-1)[..., :self.order + 1] * self.lag_window
        r = torch.cat([r[..., :1] * (1.0 + 1e-4), r[..., 1:]], -1)
        return levinson(r, self.order).float()

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
    B, N = s.shape
    T = a.shape[1]
    f = sample_frames(T, hop, s.device)
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
        """Append the drawn excitation ``e (B,)``; returns the new sample ``s = pred + e``."""
        s = self.pred + e
        self.s = torch.cat([s[:, None], self.s[:, :-1]], 1)
        self.e = torch.cat([e[:, None], self.e[:, :-1]], 1)
        return s


def source_signal(f0: Tensor, voiced: Tensor, sample_rate: int, hop: int, noise_std: float = 0.3,
                  generator: torch.Generator | None = None) -> Tensor:
    """A sine at the instantaneous F0 in voiced frames, Gaussian noise elsewhere (NSF).

    Parameters
    ----------
    f0 : Tensor [shape=(B, T)]
        F0 in Hz per frame (any positive value in unvoiced frames; the continuous contour).
    voiced : Tensor [shape=(B, T)] bool
    sample_rate, hop : int
    noise_std : float
        Standard deviation of the noise of unvoiced samples.

    Returns
    -------
    Tensor [shape=(B, T * hop)]
        ``sin(phi[n])`` with ``phi[n] = 2 pi sum_{m <= n} f0[m] / sample_rate`` (F0
        linearly interpolated between frame centres ``k * hop``) where the frame of ``n``
        is voiced, zero-mean noise where it is unvoiced.
    """
    B, T = f0.shape
    N = T * hop
    n = torch.arange(N, device=f0.device, dtype=torch.float64)
    pos = (n / hop).clamp(max=T - 1)
    k0 = pos.floor().long()
    k1 = (k0 + 1).clamp(max=T - 1)
    w = (pos - k0)[None, :]
    f = f0.double()[:, k0] * (1 - w) + f0.double()[:, k1] * w          # Hz per sample
    phase = 2 * math.pi * torch.cumsum(f / sample_rate, dim=1)
    v = voiced[:, sample_frames(T, hop, f0.device)]
    noise = torch.randn(B, N, generator=generator, dtype=torch.float64).to(f0.device) * noise_std
    return torch.where(v, torch.sin(phase), noise).float()


def ring_length(order: int, max_lag: int) -> int:
    """Length of the C kernels' excitation ring buffers: a power of two > max_lag + order + 2."""
    n = 1
    while n <= max_lag + order + 2:
        n *= 2
    return n


def quantize(values: Tensor, classes: int = 256) -> Tensor:
    """Mu-law class of every input value (clipped to [-1, 1])."""
    return mu_law_encode(values, classes)


def dequantize(q: Tensor, classes: int = 256) -> Tensor:
    return mu_law_decode(q, classes)
