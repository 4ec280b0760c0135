"""Audio files through soundfile, with errors that name the file; resampling, silence
trimming and loudness for corpus ingestion.

soundfile and soxr are imported on first use, so modules that only write arrays (the
GPU machines have no soundfile) import ``sps.io`` freely.

Conditioning a recording (what ``sps ingest`` does, in this order):

* :func:`read_wav` with ``resample=True``: any format, rate, channel count and sample
  width soundfile reads -> float64 mono (channel mean) at the wanted rate, resampled
  with soxr (:func:`resample`, "VHQ": linear phase, pass band to 0.95 Nyquist);
* :func:`trim_bounds`: the first and last 10 ms frame whose energy lies within
  ``threshold_db`` of the loudest frame's mark the speech; ``margin`` seconds are kept
  either side;
* :func:`loudness_gain`: the gain (dB) that brings the RMS level of the active frames
  (the same gate) to ``target_db`` dBFS, lowered where the peak would exceed
  ``peak_db`` dBFS (a simplified ITU-T P.56 active speech level, without its hangover).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sps.io.atomic import atomic_path

logger = logging.getLogger(__name__)

#: peak amplitude below which audio counts as silent (one 16-bit step)
SILENCE = 1.0 / 32768
#: file extensions of the audio formats soundfile reads (lower case, with the dot)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
                    ".snd", ".caf", ".w64", ".rf64", ".sph", ".nist")
#: frame length of the energy gate of :func:`trim_bounds` and :func:`loudness_gain` (s)
GATE_FRAME = 0.010


class AudioInfo(NamedTuple):
    """An audio file's header: length in samples, rate (Hz), channels, sample format."""
    frames: int
    sample_rate: int
    channels: int
    subtype: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def read_wav(path: str | os.PathLike, sample_rate: int | None = None,
             resample: bool = False) -> tuple[np.ndarray, int]:
    """Read an audio file as float64 mono in [-1, 1].

    Parameters
    ----------
    path : path-like
        Any format soundfile reads (WAV, FLAC, ...; 8 to 32-bit integer or float).
    sample_rate : int, optional
        Wanted rate in Hz. A file at another rate is an error, or with ``resample``
        is resampled to it (:func:`resample`).
    resample : bool
        Resample instead of refusing a file at another rate.

    Returns
    -------
    x : ndarray [shape=(N,)]
        Samples; multi-channel files are averaged to mono.
    sr : int
        Sample rate in Hz (``sample_rate`` when given).

    Rules: samples outside [-1, 1] (float files, resampling overshoot) are clipped, with
    a warning that names the file; audio whose peak is below one 16-bit step
    (``SILENCE``) is rejected as silent.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing, unreadable, empty, silent, wrong-rate or non-finite audio; the message
        names the file and the problem.
    """
    import soundfile as sf
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: audio file not found")
    try:
        x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError if hasattr(sf, "LibsndfileError") else RuntimeError) as err:
        raise ValueError(f"{path}: corrupt or unreadable audio ({err})") from err
    if x.shape[0] == 0:
        raise ValueError(f"{path}: empty audio (0 samples)")
    if sample_rate is not None and sr != sample_rate and not resample:
        raise ValueError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz")
    x = x.mean(axis=1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: audio contains NaN or inf")
    peak = float(np.abs(x).max())
    if peak < SILENCE:
        raise ValueError(f"{path}: silent audio (peak {peak:.3g}, below one 16-bit step)")
    if sample_rate is not None and sr != sample_rate:
        x, sr = _resample(x, sr, sample_rate), int(sample_rate)
    peak = float(np.abs(x).max())
    if peak > 1.0:
        outside = int(np.count_nonzero(np.abs(x) > 1.0))
        logger.warning("%s: %d samples outside [-1, 1] (peak %.3g) clipped to [-1, 1]", path, outside, peak)
        x = np.clip(x, -1.0, 1.0)
    return x, sr


def resample(x, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample with soxr at its highest quality ("VHQ": linear phase, pass band to 0.95
    Nyquist of the lower rate, stop band attenuation above 170 dB).

    Parameters
    ----------
    x : array-like [shape=(N,)] or (N, C)
        Samples (float64 out).
    orig_rate, target_rate : int
        Rates in Hz.

    Returns
    -------
    y : ndarray [shape=(M,)] or (M, C), M = round(N * target_rate / orig_rate)
    """
    import soxr
    x = np.asarray(x, dtype=np.float64)
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"resample: rates must be positive, got {orig_rate} -> {target_rate} Hz")
    if orig_rate == target_rate:
        return x.copy()
    return soxr.resample(x, orig_rate, target_rate, quality="VHQ")


_resample = resample  # read_wav's ``resample`` argument hides the function's name


def frame_energy_db(x, sample_rate: int, frame: float = GATE_FRAME) -> np.ndarray:
    """Mean-square energy of consecutive ``frame``-second frames in dB (the last frame may
    be shorter).

    x : array-like [shape=(N,)] -> ndarray [shape=(ceil(N / L),)], L = round(frame * sample_rate)
    """
    x = np.asarray(x, dtype=np.float64)
    n = max(1, int(round(frame * sample_rate)))
    starts = np.arange(0, x.size, n)
    energy = np.add.reduceat(x * x, starts) / np.diff(np.append(starts, x.size))
    return 10.0 * np.log10(np.maximum(energy, 1e-20))


def active_frames(x, sample_rate: int, threshold_db: float = 40.0, frame: float = GATE_FRAME) -> np.ndarray:
    """Frames within ``threshold_db`` of the loudest one (bool [shape=(frames,)])."""
    e = frame_energy_db(x, sample_rate, frame)
    return e >= e.max() - threshold_db


def trim_bounds(x, sample_rate: int, threshold_db: float = 40.0, margin: float = 0.1,
                frame: float = GATE_FRAME) -> tuple[int, int]:
    """Sample range ``[start, end)`` of ``x`` without its leading and trailing silence.

    Speech runs from the first to the last ``frame``-second frame whose energy lies
    within ``threshold_db`` dB of the loudest frame's; ``margin`` seconds are kept
    either side (within the signal).

    Parameters
    ----------
    x : array-like [shape=(N,)]
    sample_rate : int
        Hz.
    threshold_db : float
        Gate below the loudest frame (dB).
    margin : float
        Seconds kept before the first and after the last active frame.

    Returns
    -------
    start, end : int
        Samples; ``x[start:end]`` is the trimmed signal.
    """
    x = np.asarray(x, dtype=np.float64)
    n = max(1, int(round(frame * sample_rate)))
    active = np.flatnonzero(active_frames(x, sample_rate, threshold_db, frame))
    pad = int(round(margin * sample_rate))
    start = max(0, int(active[0]) * n - pad)
    end = min(x.size, (int(active[-1]) + 1) * n + pad)
    return start, end


def loudness_gain(x, sample_rate: int, target_db: float = -26.0, peak_db: float | None = -1.0,
                  threshold_db: float = 40.0, frame: float = GATE_FRAME) -> tuple[float, bool]:
    """Gain (dB) that brings the active speech level of ``x`` to ``target_db`` dBFS.

    The level is the RMS over the frames of :func:`active_frames` (energy within
    ``threshold_db`` of the loudest frame), in dB relative to full scale (a full-scale
    square wave is 0 dBFS, a full-scale sine -3.01 dBFS). Where the gain would lift the
    peak above ``peak_db`` dBFS it is lowered to put the peak there instead.

    Returns
    -------
    gain_db : float
        Multiply ``x`` by ``10 ** (gain_db / 20)``.
    limited : bool
        True when the peak limit lowered the gain.
    """
    x = np.asarray(x, dtype=np.float64)
    n = max(1, int(round(frame * sample_rate)))
    mask = np.repeat(active_frames(x, sample_rate, threshold_db, frame), n)[:x.size]
    level = 10.0 * np.log10(max(float(np.mean(x[mask] ** 2)), 1e-20))
    gain = target_db - level
    if peak_db is not None:
        peak = 20.0 * np.log10(max(float(np.abs(x).max()), 1e-10))
        if peak + gain > peak_db:
            return float(peak_db - peak), True
    return float(gain), False


def write_wav(path: str | os.PathLike, x, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write mono audio atomically (clipped to [-1, 1]; format from the extension).

    x : array-like [shape=(N,)] or (N, 1), float in [-1, 1]
    """
    import soundfile as sf
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: refusing to write audio containing NaN or inf")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(x, -1.0, 1.0), int(sample_rate), subtype=subtype)


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """An audio file's header (:class:`AudioInfo`); ValueError naming the file if unreadable."""
    import soundfile as sf
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError if hasattr(sf, "LibsndfileError") else RuntimeError) as err:
        raise ValueError(f"{path}: corrupt or unreadable audio ({err})") from err
    return AudioInfo(int(info.frames), int(info.samplerate), int(info.channels), str(info.subtype))


def audio_length(path: str | os.PathLike) -> tuple[int, int]:
    """(samples, sample rate) of an audio file from its header (ValueError naming it)."""
    info = audio_info(path)
    return info.frames, info.sample_rate
