"""Learnable banks of RBJ-cookbook biquads (:class:`BiquadBank`).

Each filter is parameterised by unconstrained reals mapped through sigmoids:
``f0 = f_nyq * (eps + (1 - 2 eps) sigmoid(w))``, ``Q = q_min (q_max / q_min)^sigmoid(q)``
(log-scale) and, for ``peaking``, ``gain_db = max_gain_db * tanh(g)``.  Every RBJ design
then has ``a = [1 + alpha', -2 cos w0, 1 - alpha']`` with ``alpha' > 0``, so its poles lie
strictly inside the unit circle whatever the optimiser does.  The bounds (f0 at least
``eps`` of Nyquist from 0 and Nyquist, ``0.1 <= Q <= 50``, ``|gain| <= 24 dB``) keep the
pole radius ``~ 1 - alpha'`` representable in float32 (an unbounded Q or f0 -> Nyquist
rounds ``1 - alpha'`` to 1: a pole on the circle).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from sps.dsp.lfilter import lfilter
from sps.io import atomic_path

__all__ = ["BiquadBank", "biquad_coefficients", "freqz"]

KINDS = ("bandpass", "lowpass", "highpass", "peaking")


def biquad_coefficients(kind: str, freq, q, sample_rate: float, gain_db=0.0):
    """RBJ Audio-EQ-Cookbook biquad coefficients, differentiable in ``freq``, ``q``, ``gain_db``.

    Parameters
    ----------
    kind : {"bandpass", "lowpass", "highpass", "peaking"}
        ``bandpass`` is the constant 0 dB peak-gain band-pass.
    freq : Tensor [shape=(F,)]
        Centre / cut-off frequencies in Hz, in (0, sample_rate / 2).
    q : Tensor [shape=(F,)]
        Quality factors (> 0).
    sample_rate : float
        Hz.
    gain_db : Tensor [shape=(F,)] or float
        Peak gain in dB (``peaking`` only).

    Returns
    -------
    b, a : Tensor [shape=(F, 3)]
        Numerator and denominator, normalised so that ``a[:, 0] = 1``.
    """
    if kind not in KINDS:
        raise ValueError(f"biquad kind must be one of {KINDS}, got {kind!r}")
    freq, q = torch.as_tensor(freq), torch.as_tensor(q)
    w0 = 2 * math.pi * freq / sample_rate
    cos, alpha = torch.cos(w0), torch.sin(w0) / (2 * q)
    one = torch.ones_like(cos)
    if kind == "peaking":
        amp = 10.0 ** (torch.as_tensor(gain_db, dtype=cos.dtype) / 40)
        b = torch.stack([1 + alpha * amp, -2 * cos, 1 - alpha * amp], -1)
        a = torch.stack([1 + alpha / amp, -2 * cos, 1 - alpha / amp], -1)
    else:
        if kind == "bandpass":
            b = torch.stack([alpha, 0 * alpha, -alpha], -1)
        elif kind == "lowpass":
            b = torch.stack([(1 - cos) / 2, 1 - cos, (1 - cos) / 2], -1)
        else:
            b = torch.stack([(1 + cos) / 2, -(1 + cos), (1 + cos) / 2], -1)
        a = torch.stack([one + alpha, -2 * cos, one - alpha], -1)
    return b / a[:, :1], a / a[:, :1]


def freqz(b: torch.Tensor, a: torch.Tensor, n_freq: int = 512) -> torch.Tensor:
    """Complex responses ``H(e^{jw})`` at ``w = pi k / n_freq``, ``k = 0..n_freq-1`` (scipy's grid).

    b : Tensor [shape=(F, M)], a : Tensor [shape=(F, N+1)] -> Tensor [shape=(F, n_freq)] complex.
    """
    w = torch.arange(n_freq, dtype=b.dtype, device=b.device) * (math.pi / n_freq)

    def poly(c):
        k = torch.arange(c.shape[-1], dtype=c.dtype, device=c.device)
        e = torch.polar(torch.ones_like(w)[:, None] * torch.ones_like(k), -w[:, None] * k)  # (n_freq, L)
        return c.to(e.dtype) @ e.T

    return poly(b) / poly(a)


def _logit(u):
    u = torch.as_tensor(u, dtype=torch.float32).clamp(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


class BiquadBank(nn.Module):
    """A bank of ``n_filters`` learnable RBJ biquads applied in parallel.

    Parameters
    ----------
    n_filters : int
    sample_rate : float
        Hz.
    kind : {"bandpass", "lowpass", "highpass", "peaking"}
    f_min, f_max : float
        Initial centre frequencies are log-spaced over [f_min, f_max] Hz
        (default f_max: 0.9 * Nyquist).
    q : float
        Initial Q of every filter, in [q_min, q_max] = [0.1, 50].
    gain_db : float
        Initial peak gain in dB (``peaking``; learnable there), ``|gain_db| < max_gain_db`` = 24.

    Shapes: ``forward(x [shape=(B, T)] or (B, 1, T)) -> [shape=(B, n_filters, T)]``.
    """

    eps = 1e-3
    q_min, q_max = 0.1, 50.0
    max_gain_db = 24.0

    def __init__(self, n_filters: int, sample_rate: float, kind: str = "bandpass",
                 f_min: float = 50.0, f_max: float | None = None, q: float = 4.0,
                 gain_db: float = 0.0):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"BiquadBank kind must be one of {KINDS}, got {kind!r}")
        nyq = sample_rate / 2
        f_max = 0.9 * nyq if f_max is None else f_max
        if not 0 < f_min <= f_max < nyq:
            raise ValueError(f"BiquadBank needs 0 < f_min <= f_max < {nyq} Hz, got {f_min}, {f_max}")
        self.n_filters, self.sample_rate, self.kind = n_filters, float(sample_rate), kind
        f0 = torch.as_tensor(np.geomspace(f_min, f_max, n_filters), dtype=torch.float32)
        self.freq_logit = nn.Parameter(_logit((f0 / nyq - self.eps) / (1 - 2 * self.eps)))
        if not self.q_min < q < self.q_max or not abs(gain_db) < self.max_gain_db:
            raise ValueError(f"BiquadBank needs {self.q_min} < q < {self.q_max} and |gain_db| < "
                             f"{self.max_gain_db}, got q={q}, gain_db={gain_db}")
        self.q_raw = nn.Parameter(torch.full((n_filters,), _logit(
            math.log(q / self.q_min) / math.log(self.q_max / self.q_min))))
        self.gain_raw = nn.Parameter(torch.full((n_filters,), math.atanh(gain_db / self.max_gain_db)),
                                     requires_grad=kind == "peaking")

    @property
    def freq(self) -> torch.Tensor:
        """Centre / cut-off frequencies in Hz, shape (n_filters,)."""
        s = torch.sigmoid(self.freq_logit)
        return self.sample_rate / 2 * (self.eps + (1 - 2 * self.eps) * s)

    @property
    def q(self) -> torch.Tensor:
        """Quality factors, shape (n_filters,)."""
        return self.q_min * (self.q_max / self.q_min) ** torch.sigmoid(self.q_raw)

    @property
    def gain_db(self) -> torch.Tensor:
        """Peak gains in dB (``peaking``), shape (n_filters,)."""
        return self.max_gain_db * torch.tanh(self.gain_raw)

    def coefficients(self):
        """``(b, a)``, each ``[shape=(n_filters, 3)]``, ``a[:, 0] = 1``."""
        return biquad_coefficients(self.kind, self.freq, self.q, self.sample_rate, self.gain_db)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.unsqueeze(1)
        if x.ndim != 3 or x.shape[1] != 1:
            raise ValueError(f"BiquadBank expects x of shape (B, T) or (B, 1, T), got {tuple(x.shape)}")
        b, a = self.coefficients()
        return lfilter(x, a.to(x.dtype), b.to(x.dtype), check_stability=False)

    def response(self, n_freq: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """Magnitude responses on scipy's ``freqz`` grid (differentiable).

        Returns
        -------
        freqs : Tensor [shape=(n_freq,)]  Hz, ``k * sample_rate / (2 n_freq)``
        magnitude : Tensor [shape=(n_filters, n_freq)]  linear |H|
        """
        b, a = self.coefficients()
        freqs = torch.arange(n_freq, dtype=b.dtype) * (self.sample_rate / (2 * n_freq))
        return freqs, freqz(b, a, n_freq).abs()

    @torch.no_grad()
    def plot(self, path, n_freq: int = 512) -> None:
        """Save the magnitude responses (dB over Hz) as a PNG at ``path``."""
        from matplotlib.figure import Figure   # no pyplot: no global backend state

        freqs, mag = self.response(n_freq)
        fig = Figure(figsize=(8, 4))
        ax = fig.subplots()
        ax.plot(freqs.numpy(), 20 * torch.log10(mag.clamp_min(1e-6)).T.numpy(), lw=0.8)
        ax.set(xlabel="frequency [Hz]", ylabel="magnitude [dB]", ylim=(-60, None),
               title=f"{self.n_filters} {self.kind} biquads")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
