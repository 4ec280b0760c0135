"""Excitation colour: a post-filter that holds the spectral shape of an LPC vocoder's voiced
excitation to the corpus's.

The synthesis filter ``1 / A(z)`` of an LPC vocoder carries the envelope the features ask
for, so the excitation the network draws should have one steady spectral shape. In voiced
frames it does not quite: around the pulses the network's excitation tilts a little
differently from frame to frame, which is most of what it loses in mel-cepstral distortion
against the classical source-filter vocoder (docs/vocoders.md, *Where the 0.07-0.09 dB
goes*). The post-filter takes that variance out and leaves the fine structure (harmonics,
noise between them, pulse shape) alone:

1. the excitation ``e = A(z) x`` of the generated pre-emphasised waveform ``x``, with
   every frame's own LPC;
2. in a voiced frame, its whitening filter ``W_t(z)`` of order :data:`ORDER`
   (autocorrelation of a Hann window of :data:`WINDOW_S` centred on the frame,
   Levinson-Durbin), applied to the frame's samples: a flat excitation;
3. the corpus's colour ``1 / C(z)`` put back: ``C(z)`` is the whitening filter of the
   natural excitation's mean autocorrelation over the voiced frames of the training
   split (:func:`measure`), so the excitation keeps the average shape natural speech has
   and only its frame-to-frame wobble goes;
4. ``1 / A(z)`` again.

Unvoiced frames pass through. The window looks ``WINDOW_S / 2`` ahead of each frame, so a
stream lags by that much (:class:`ColourFilter` holds those samples back). Order and window
were chosen on the dev split (docs/vocoders.md).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
from scipy.signal import lfilter

from sps.features.lpc import levinson

#: order of the per-frame whitening and of the corpus colour
ORDER = 32
#: analysis window of the whitening (seconds), centred on the frame
WINDOW_S = 0.015


def frame_bounds(T: int, hop: int) -> np.ndarray:
    """First sample of each frame and the end ``(T + 1,)``: frame ``t`` holds the samples
    ``n`` with ``round(n / hop) == t`` (the last frame runs to ``T * hop``)."""
    return np.r_[0, np.arange(1, T) * hop - hop // 2, T * hop]


def autocorrelations(segments: np.ndarray, order: int) -> np.ndarray:
    """Lags ``0 .. order`` of Hann-windowed segments ``(F, W)`` -> ``(F, order + 1)`` (each
    row computed alone: a frame's value does not depend on the others)."""
    seg = segments * np.hanning(segments.shape[-1])
    W = seg.shape[-1]
    return np.stack([np.sum(seg[:, :W - k] * seg[:, k:], axis=1) for k in range(order + 1)], -1)


def whiteners(r: np.ndarray) -> np.ndarray:
    """``[1, w_1 .. w_K]`` of each autocorrelation row ``(F, K + 1)`` (``[1, 0 ..]`` for silence)."""
    w = np.zeros_like(r)
    w[:, 0] = 1.0
    live = r[:, 0] > 1e-12
    if live.any():
        floor = r[live].copy()
        floor[:, 0] *= 1.0 + 1e-4      # white-noise floor: the filter stays well conditioned
        w[live] = levinson(floor, r.shape[1] - 1)[0]
    return w


def windows(frames: np.ndarray, hop: int, W: int, pad: int) -> np.ndarray:
    """Sample indices ``(F, W)`` of the analysis window of each frame (``pad`` samples in)."""
    return pad + frames[:, None] * hop - W // 2 + np.arange(W)


def fill_residual(e: np.ndarray, x: np.ndarray, a: np.ndarray, bounds: np.ndarray, pad: int, t0: int, t1: int):
    """``e = A(z) x`` over frames ``t0 .. t1 - 1``, each with its own ``a_1 .. a_p`` (``a``
    [shape=(T, p)]; ``e`` and ``x`` carry ``pad >= p`` samples in front)."""
    p = a.shape[-1]
    for t in range(t0, t1):
        s0, s1 = bounds[t] + pad, bounds[t + 1] + pad
        e[s0:s1] = np.convolve(x[s0 - p:s1], np.r_[1.0, a[t]], "valid")


def measure(utterances: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], hop: int, sample_rate: int,
            order: int = ORDER, window_s: float = WINDOW_S) -> np.ndarray:
    """The corpus colour ``C(z)``: ``[1, c_1 .. c_K]`` from the mean normalised
    autocorrelation of the natural excitation in voiced frames.

    ``utterances`` yields ``(x [shape=(N,)], a [shape=(T, p)], voiced [shape=(T,)])``:
    the pre-emphasised natural waveform, each frame's LPC and its voicing.
    """
    W, total, count = int(round(window_s * sample_rate)), np.zeros(order + 1), 0
    for x, a, voiced in utterances:
        T, pad = len(a), max(a.shape[-1], W)
        bounds = frame_bounds(T, hop)
        xp = np.zeros(T * hop + 2 * pad)
        n = min(len(x), T * hop)
        xp[pad:pad + n] = x[:n]
        e = np.zeros_like(xp)
        fill_residual(e, xp, a, bounds, pad, 0, T)
        r = autocorrelations(e[windows(np.flatnonzero(voiced), hop, W, pad)], order)
        r = r[r[:, 0] > 1e-12]
        total += (r / r[:, :1]).sum(0)
        count += len(r)
    if not count:
        raise ValueError("excitation colour: no voiced frame with signal in the corpus")
    return whiteners((total / count)[None])[0]


class ColourFilter:
    """The post-filter over a batch, fed the generated pre-emphasised waveform piece by
    piece (:meth:`push`); it returns the samples it has finished, which lag the input by
    up to half a window plus a frame, and :meth:`push` of the last piece returns the rest.
    The output depends only on the whole input, not on how it was cut into pieces.

    Parameters
    ----------
    a : ndarray [shape=(B, T, p)]
        LPC of every frame (``A(z) = 1 + sum a_k z^-k``).
    voiced : ndarray [shape=(B, T)] bool
    colour : ndarray [shape=(K + 1,)]
        The corpus colour ``C(z)`` (:func:`measure`); ``K`` is the order of the whitening.
    hop, sample_rate : int
    window_s : float
        Analysis window of the whitening (seconds).
    """

    def __init__(self, a: np.ndarray, voiced: np.ndarray, colour: np.ndarray, hop: int, sample_rate: int,
                 window_s: float = WINDOW_S):
        self.a, self.voiced = np.asarray(a, dtype=np.float64), np.asarray(voiced, dtype=bool)
        self.colour = np.asarray(colour, dtype=np.float64)
        B, T, p = self.a.shape
        self.W, self.hop = int(round(window_s * sample_rate)), hop
        self.bounds = frame_bounds(T, hop)
        self.pad = max(p, self.W, len(self.colour))
        N = T * hop
        self.x = np.zeros((B, N + 2 * self.pad))
        self.e, self.y = np.zeros_like(self.x), np.zeros_like(self.x)
        self.zc = np.zeros((B, len(self.colour) - 1))
        self.received = self.e_frames = self.done_frames = 0

    def push(self, piece: np.ndarray) -> np.ndarray:
        """Next input samples [shape=(B, n)] -> finished output samples [shape=(B, m)]."""
        T, pad, n = len(self.bounds) - 1, self.pad, piece.shape[1]
        if self.received + n > self.bounds[-1]:
            raise ValueError(f"ColourFilter: more than {self.bounds[-1]} samples pushed")
        # a diverged draw's infinities would become NaN in the filters: clamped, as the output is
        self.x[:, pad + self.received:pad + self.received + n] = np.clip(piece, -1e6, 1e6)
        self.received += n
        start = self.bounds[self.done_frames]
        complete = int(np.searchsorted(self.bounds[1:], self.received, side="right"))   # frames fully received
        for b in range(len(self.x)):
            fill_residual(self.e[b], self.x[b], self.a[b], self.bounds, pad, self.e_frames, complete)
        self.e_frames = complete
        done = self.done_frames        # frames whose window of excitation is complete
        ready = T if self.e_frames == T else \
            min(T, max(done, (self.bounds[self.e_frames] - self.W + self.W // 2) // self.hop + 1))
        if ready > done:
            self._finish(done, ready)
        self.done_frames = ready
        return self.y[:, pad + start:pad + self.bounds[ready]].copy()

    def _finish(self, t0: int, t1: int) -> None:
        """Frames ``t0 .. t1 - 1``: whiten the voiced ones' excitation, recolour, resynthesise."""
        pad, K = self.pad, len(self.colour) - 1
        b_idx, t_idx = np.nonzero(self.voiced[:, t0:t1])
        w = whiteners(autocorrelations(self.e[b_idx[:, None], windows(t0 + t_idx, self.hop, self.W, pad)], K))
        filters = {(b, t0 + t): row for b, t, row in zip(b_idx, t_idx, w)}
        for t in range(t0, t1):
            s0, s1 = self.bounds[t] + pad, self.bounds[t + 1] + pad
            for b in range(len(self.x)):
                w = filters.get((b, t))
                ew = self.e[b, s0:s1] if w is None else np.convolve(self.e[b, s0 - K:s1], w, "valid")
                coloured, self.zc[b] = lfilter([1.0], self.colour, ew, zi=self.zc[b])
                a, p = self.a[b, t], self.a.shape[-1]
                zi = -np.convolve(a, self.y[b, s0 - p:s0])[p - 1:2 * p - 1]    # state of the last p outputs
                self.y[b, s0:s1] = lfilter([1.0], np.r_[1.0, a], coloured if w is not None else ew, zi=zi)[0]


__all__ = ["ColourFilter", "measure", "ORDER", "WINDOW_S"]
