"""Log-mel spectrogram with NumPy (no librosa): Slaney mel scale and filter normalisation.

Mel scale (Slaney, as in the Auditory Toolbox): linear below 1 kHz, logarithmic
above,

    m(f) = 3 f / 200                               for f < 1000 Hz
    m(f) = 15 + 27 * ln(f / 1000) / ln(6.4)        for f >= 1000 Hz

The ``n_mels`` triangular filters have corners at ``n_mels + 2`` points equally
spaced in mel between ``fmin`` and ``fmax``; each triangle is scaled to unit area in
Hz (height ``2 / (f[m+2] - f[m])``), so a flat magnitude spectrum gives a flat mel
spectrum.

Frames are centred: frame ``t`` is the Hann-windowed segment centred on sample
``t * hop`` (the WORLD convention), with zeros beyond the ends of the signal.
"""
from __future__ import annotations

import numpy as np


def hz_to_mel(f):
    """Slaney mel value of frequency ``f`` (Hz); array-like in, ndarray out."""
    f = np.asarray(f, dtype=np.float64)
    log_part = 15.0 + 27.0 * np.log(np.maximum(f, 1e-10) / 1000.0) / np.log(6.4)
    return np.where(f < 1000.0, 3.0 * f / 200.0, log_part)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = 80, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters on the FFT bin grid.

    Parameters
    ----------
    sample_rate : int
        Hz.
    n_fft : int
        FFT size; the filters act on ``n_fft // 2 + 1`` bins.
    n_mels : int
        Number of bands.
    fmin, fmax : float
        Band edges in Hz (``fmax`` None: ``sample_rate / 2``).

    Returns
    -------
    fb : ndarray [shape=(n_mels, n_fft // 2 + 1)]
        Filter weights (unit area in Hz, Slaney normalisation).
    """
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    if not 0.0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(f"mel_filterbank: need 0 <= fmin < fmax <= {sample_rate / 2}, got {fmin}, {fmax}")
    if n_mels < 1:
        raise ValueError(f"mel_filterbank: n_mels must be >= 1, got {n_mels}")
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    corners = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = corners[:-2, None], corners[1:-1, None], corners[2:, None]
    rising = (freqs - lo) / (mid - lo)
    falling = (hi - freqs) / (hi - mid)
    tri = np.maximum(0.0, np.minimum(rising, falling))
    return tri * (2.0 / (hi - lo))


def stft_magnitude(x: np.ndarray, n_fft: int, hop_length: int, win_length: int | None = None) -> np.ndarray:
    """Magnitude STFT with centred frames.

    Parameters
    ----------
    x : ndarray [shape=(N,)]
        Waveform.
    n_fft : int
        FFT size (>= ``win_length``; the window is centred in it).
    hop_length : int
        Samples between frames.
    win_length : int, optional
        Periodic Hann window length (default ``n_fft``).

    Returns
    -------
    mag : ndarray [shape=(N // hop_length + 1, n_fft // 2 + 1)]
        ``|X(t, k)|``, no normalisation; frame ``t`` centred on sample ``t * hop_length``.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    win_length = n_fft if win_length is None else int(win_length)
    if not 0 < win_length <= n_fft:
        raise ValueError(f"stft_magnitude: need 0 < win_length <= n_fft, got {win_length}, {n_fft}")
    window = np.zeros(n_fft)
    offset = (n_fft - win_length) // 2
    window[offset:offset + win_length] = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    num_frames = x.size // hop_length + 1
    half = n_fft // 2
    padded = np.zeros(x.size + n_fft)   # (num_frames - 1) * hop_length <= x.size
    padded[half:half + x.size] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length][:num_frames]
    return np.abs(np.fft.rfft(frames * window, axis=-1))


def mel_spectrogram(x: np.ndarray, sample_rate: int, hop_length: int, n_fft: int = 1024,
                    win_length: int | None = None, n_mels: int = 80, fmin: float = 0.0,
                    fmax: float | None = None, floor: float = 1e-5) -> np.ndarray:
    """Log-mel spectrogram: ``ln(max(floor, fb @ |STFT|))``.

    Parameters
    ----------
    x : ndarray [shape=(N,)]
        Waveform in [-1, 1].
    sample_rate : int
        Hz.
    hop_length : int
        Samples per frame (80 for 5 ms at 16 kHz).
    n_fft, win_length, n_mels, fmin, fmax
        See :func:`stft_magnitude` and :func:`mel_filterbank`.
    floor : float
        Magnitude floor before the natural log.

    Returns
    -------
    mel : ndarray [shape=(N // hop_length + 1, n_mels)]
        Natural log of the mel-filtered magnitude spectrum.
    """
    mag = stft_magnitude(x, n_fft, hop_length, win_length)
    fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    return np.log(np.maximum(mag @ fb.T, floor))
