"""The aligner's acoustic features: MFCCs with deltas and delta-deltas, mean-normalised.

Per frame (5 ms shift by default): the log-mel spectrum of
:func:`sps.features.mel_spectrogram` (Hann window of ``window_ms``, natural log), a DCT-II (orthonormal) to ``num_ceps`` coefficients including c0, the
per-utterance mean subtracted (cepstral mean normalisation), then deltas and
delta-deltas by HTK's regression formula over +-``delta_window`` frames:

    d_t = sum_{k=1..K} k (c_{t+k} - c_{t-k}) / (2 sum_{k=1..K} k^2)

(edges padded by repeating the end frames). Audio at another rate than
``sample_rate`` is resampled first (polyphase, scipy).

Frame ``t`` of the aligner stands for the interval ``[t, t + 1)`` frame shifts of the
labels it writes (a boundary after frame ``t - 1`` is written at ``t`` shifts), so its
analysis window is centred on the middle of that interval, ``(t + 1/2)`` shifts.
Centring it on ``t`` shifts instead (the WORLD convention of the feature stage) would
write every boundary half a frame late.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from sps.features import delta_features, mel_spectrogram


@dataclass(frozen=True)
class FeatureSettings:
    """Analysis settings of the aligner (stored with a trained model)."""
    sample_rate: int = 16000        # Hz; other rates are resampled to this one
    frame_shift_ms: float = 5.0     # frame shift (the labels' grid)
    window_ms: float = 25.0         # analysis window
    num_mels: int = 26              # mel bands
    num_ceps: int = 13              # cepstral coefficients, c0 included
    delta_window: int = 2           # K of the regression formula (frames each side)

    def __post_init__(self):
        hop = self.sample_rate * self.frame_shift_ms / 1000.0
        if abs(hop - round(hop)) > 1e-9 or hop < 1:
            raise ValueError(f"frame_shift_ms {self.frame_shift_ms} is not a whole number of samples at "
                             f"{self.sample_rate} Hz")
        if not 1 <= self.num_ceps <= self.num_mels:
            raise ValueError(f"num_ceps must be in 1..num_mels ({self.num_mels}), got {self.num_ceps}")
        if self.delta_window < 1:
            raise ValueError(f"delta_window must be >= 1, got {self.delta_window}")

    @property
    def hop(self) -> int:
        """Samples per frame."""
        return int(round(self.sample_rate * self.frame_shift_ms / 1000.0))

    @property
    def frame_shift_100ns(self) -> int:
        """The frame shift in HTK units of 100 ns."""
        return int(round(self.frame_shift_ms * 1e4))

    @property
    def dim(self) -> int:
        return 3 * self.num_ceps

    def to_dict(self) -> dict:
        return asdict(self)


def delta_window(k: int) -> tuple:
    """HTK's regression window over +-k frames as an sps window ``(left, right, coefficients)``."""
    norm = 2.0 * sum(i * i for i in range(1, k + 1))
    return (k, k, [i / norm for i in range(-k, k + 1)])


@lru_cache(maxsize=8)
def _dct(num_mels: int, num_ceps: int) -> np.ndarray:
    n = np.arange(num_mels)
    basis = np.cos(np.pi / num_mels * (n[None, :] + 0.5) * np.arange(num_ceps)[:, None])
    basis *= math.sqrt(2.0 / num_mels)
    basis[0] /= math.sqrt(2.0)
    return basis.T                                            # (num_mels, num_ceps)


def num_frames(num_samples: int, sample_rate: int, settings: FeatureSettings = FeatureSettings()) -> int:
    """Frames of an utterance: its duration rounded to the frame grid (at least 1)."""
    return max(1, int(round(num_samples / sample_rate * 1000.0 / settings.frame_shift_ms)))


def align_features(x: np.ndarray, sample_rate: int, settings: FeatureSettings = FeatureSettings()) -> np.ndarray:
    """MFCC + deltas + delta-deltas of a waveform.

    Parameters
    ----------
    x : ndarray [shape=(N,)]
        Mono waveform in [-1, 1].
    sample_rate : int
        Hz.
    settings : FeatureSettings

    Returns
    -------
    ndarray [shape=(T, 3 * num_ceps), float32]
        ``T = round(duration / frame shift)`` frames (the length of the labels the aligner
        writes), frame ``t`` centred on ``(t + 1/2) * frame shift``.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("align_features: empty waveform")
    T = num_frames(x.size, sample_rate, settings)
    if sample_rate != settings.sample_rate:
        from scipy.signal import resample_poly
        g = math.gcd(int(sample_rate), settings.sample_rate)
        x = resample_poly(x, settings.sample_rate // g, int(sample_rate) // g)
    sr = settings.sample_rate
    x = x[settings.hop // 2:]          # frame t centred at (t + 1/2) shifts (module docstring)
    win = int(round(sr * settings.window_ms / 1000.0))
    n_fft = 1 << max(0, (win - 1).bit_length())
    logmel = mel_spectrogram(x, sr, settings.hop, n_fft=n_fft, win_length=win, n_mels=settings.num_mels,
                             floor=1e-8)
    if logmel.shape[0] < T:
        logmel = np.concatenate([logmel, np.repeat(logmel[-1:], T - logmel.shape[0], 0)])
    ceps = logmel[:T] @ _dct(settings.num_mels, settings.num_ceps)
    ceps -= ceps.mean(axis=0, keepdims=True)
    return _with_deltas(ceps, settings.delta_window).astype(np.float32)


def _with_deltas(c: np.ndarray, k: int) -> np.ndarray:
    """``[c | delta c | delta delta c]`` (delta-deltas are deltas of the deltas, as in HTK)."""
    d1 = delta_features(c, [delta_window(k)], padding="edge")
    d2 = delta_features(d1, [delta_window(k)], padding="edge")
    return np.concatenate([c, d1, d2], axis=1)
