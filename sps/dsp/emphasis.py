"""Mu-law companding and first-order pre-/de-emphasis (used by the vocoders)."""
from __future__ import annotations

import math

import torch

from sps.dsp.lfilter import lfilter

__all__ = ["mu_law_encode", "mu_law_decode", "preemphasis", "deemphasis"]


def mu_law_encode(x: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """Mu-law compress and quantise a waveform.

    ``f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu)`` with ``mu = Q - 1``, then
    ``q = floor((f + 1) / 2 * mu + 0.5)``.

    Parameters
    ----------
    x : Tensor [shape=(...)]
        Waveform in [-1, 1] (values outside are clipped).
    quantization_channels : int
        Number of levels ``Q``.

    Returns
    -------
    Tensor [shape=(...)] int64 in [0, Q - 1]
    """
    mu = quantization_channels - 1
    x = x.clamp(-1.0, 1.0)
    f = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return ((f + 1) / 2 * mu + 0.5).floor().long().clamp(0, mu)


def mu_law_decode(q: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """Inverse of :func:`mu_law_encode`: levels ``q [shape=(...)]`` -> waveform in [-1, 1] (float32)."""
    mu = quantization_channels - 1
    f = 2 * q.to(torch.float32) / mu - 1
    return torch.sign(f) * torch.expm1(f.abs() * math.log1p(mu)) / mu


def preemphasis(x: torch.Tensor, coef: float = 0.97) -> torch.Tensor:
    """``y[t] = x[t] - coef * x[t-1]`` along the last axis; ``x [shape=(..., T)]`` -> same shape."""
    return lfilter(x, [1.0], [1.0, -coef], check_stability=False)


def deemphasis(x: torch.Tensor, coef: float = 0.97) -> torch.Tensor:
    """Inverse of :func:`preemphasis`: ``y[t] = x[t] + coef * y[t-1]`` (needs ``|coef| < 1``)."""
    return lfilter(x, [1.0, -coef], [1.0])
