"""Audio files through soundfile, with errors that name the file.

soundfile is imported on first use, so modules that only write arrays (the GPU
machines have no soundfile) import ``sps.io`` freely.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from sps.io.atomic import atomic_path

logger = logging.getLogger(__name__)

#: peak amplitude below which audio counts as silent (one 16-bit step)
SILENCE = 1.0 / 32768


def read_wav(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read a mono audio file as float64 in [-1, 1].

    Parameters
    ----------
    path : path-like
        Any format soundfile reads (WAV, FLAC, ...).
    sample_rate : int, optional
        Expected rate in Hz; a different rate is an error (resample the corpus first).

    Returns
    -------
    x : ndarray [shape=(N,)]
        Samples; multi-channel files are averaged to mono.
    sr : int
        Sample rate in Hz.

    Rules: samples outside [-1, 1] (float files) are clipped, with a warning that
    names the file; audio whose peak is below one 16-bit step (``SILENCE``) is
    rejected as silent.

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
    if sample_rate is not None and sr != sample_rate:
        raise ValueError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz")
    x = x.mean(axis=1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: audio contains NaN or inf")
    peak = float(np.abs(x).max())
    if peak < SILENCE:
        raise ValueError(f"{path}: silent audio (peak {peak:.3g}, below one 16-bit step)")
    if peak > 1.0:
        outside = int(np.count_nonzero(np.abs(x) > 1.0))
        logger.warning("%s: %d samples outside [-1, 1] (peak %.3g) clipped to [-1, 1]", path, outside, peak)
        x = np.clip(x, -1.0, 1.0)
    return x, sr


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


def audio_length(path: str | os.PathLike) -> tuple[int, int]:
    """(samples, sample rate) of an audio file from its header (ValueError naming it)."""
    import soundfile as sf
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError if hasattr(sf, "LibsndfileError") else RuntimeError) as err:
        raise ValueError(f"{path}: corrupt or unreadable audio ({err})") from err
    return int(info.frames), int(info.samplerate)
