"""WORLD vocoder: waveform from static acoustic features, and copy synthesis.

The inverse of :mod:`sps.features.acoustic`:

* ``mgc`` -> power spectral envelope, ``pysptk.mc2sp(mgc, alpha, fft_size)`` (as one
  matrix product over all frames, :func:`sps.features.acoustic.mc2sp`);
* ``bap`` -> aperiodicity with ``pyworld.decode_aperiodicity(bap, fs, fft_size)``;
* continuous ``lf0`` and ``vuv`` -> F0 (``exp(lf0)`` where ``vuv > 0.5``, else 0);
* ``pyworld.synthesize(f0, sp, ap, fs, frame_shift_ms)``.

The analysis settings (alpha, FFT size, frame shift, sample rate) come from the
stream spec ``dump/out_acoustic.json``. pyworld and pysptk are imported inside the
functions, so this module imports without them.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from sps.features import FeatureConfig, acoustic_spec, lf0_to_f0, mc2sp, world_features
from sps.features.acoustic import check_fft_size, pyworld
from sps.io import read_json
from sps.spec import split_streams


def _as_spec(spec) -> dict:
    """Stream spec from a dict, a JSON path or a :class:`sps.features.FeatureConfig`."""
    if isinstance(spec, dict):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return read_json(Path(spec))
    if isinstance(spec, FeatureConfig):
        return acoustic_spec(spec)
    raise ValueError(f"expected a stream spec dict, a JSON path or a FeatureConfig, got {type(spec).__name__}")


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def synthesize(features, spec, sample_rate: int | None = None, vuv_threshold: float = 0.5) -> np.ndarray:
    """WORLD waveform from acoustic features.

    Parameters
    ----------
    features : ndarray or Tensor [shape=(T, C)]
        Either the full ``out_acoustic`` layout (``C = spec["dim"]``; the static
        columns are used) or its static columns ``[mgc | lf0 | vuv | bap]``
        (de-normalised; lf0 continuous, log Hz).
    spec : dict, path or FeatureConfig
        Stream spec (``dump/out_acoustic.json``) giving alpha, FFT size, frame shift.
    sample_rate : int, optional
        Hz; default ``spec["sample_rate"]``.
    vuv_threshold : float
        Frames with ``vuv > vuv_threshold`` are voiced.

    Returns
    -------
    y : ndarray [shape=(T * hop,)] float64
        Waveform (not clipped); ``hop = sample_rate * frame_shift_ms / 1000``.
    """
    spec = _as_spec(spec)
    x = _as_numpy(features)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"synthesize: expected features of shape (T, C) with T > 0, got {x.shape}")
    streams = split_streams(x, spec, static_only=True)
    analysis = spec.get("analysis", {})
    try:
        alpha, fft_size = float(analysis["alpha"]), int(analysis["fft_size"])
    except KeyError as err:
        raise ValueError(f"synthesize: stream spec lacks analysis setting {err}") from None
    fs = int(sample_rate or spec["sample_rate"])
    shift = float(spec["frame_shift_ms"])
    check_fft_size(fft_size, streams["mgc"].shape[1] - 1, "synthesize: the spec's fft_size")
    if not np.all(np.isfinite(x)):
        t, d = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"synthesize: non-finite feature at frame {t}, column {d}")
    f0 = lf0_to_f0(streams["lf0"][:, 0], streams["vuv"][:, 0], vuv_threshold)
    sp = mc2sp(streams["mgc"], alpha, fft_size)
    ap = pyworld().decode_aperiodicity(np.ascontiguousarray(streams["bap"]), fs, fft_size)
    y = pyworld().synthesize(np.ascontiguousarray(f0), sp, ap, fs, frame_period=shift)
    hop = int(round(fs * shift / 1000.0))
    n = x.shape[0] * hop
    return y[:n] if y.size >= n else np.pad(y, (0, n - y.size))


def analyze(x: np.ndarray, sample_rate: int, config=None) -> tuple[np.ndarray, dict]:
    """Static acoustic features of a waveform (the vocoder's own analysis).

    Parameters
    ----------
    x : ndarray [shape=(N,)]
        Waveform in [-1, 1].
    sample_rate : int
        Hz.
    config : FeatureConfig or dict, optional
        Feature settings; ``sample_rate`` is taken from the argument.

    Returns
    -------
    static : ndarray [shape=(N // hop + 1, M + 1 + 1 + 1 + B)]
        ``[mgc | lf0 (continuous) | vuv | bap]``.
    spec : dict
        Stream spec of the full ``out_acoustic`` layout these features belong to.
    """
    if config is None or isinstance(config, dict):
        config = FeatureConfig.from_dict({**(config or {}), "sample_rate": sample_rate})
    elif config.sample_rate != sample_rate:
        config = dataclasses.replace(config, sample_rate=int(sample_rate))
    streams = world_features(np.asarray(x, dtype=np.float64).reshape(-1), config)
    static = np.concatenate([streams[k] for k in ("mgc", "lf0", "vuv", "bap")], axis=1)
    return static, acoustic_spec(config)


def copy_synthesis(x: np.ndarray, sample_rate: int, config=None) -> np.ndarray:
    """Analyse ``x`` [shape=(N,)] and resynthesise it with WORLD -> [shape=((N // hop + 1) * hop,)]."""
    static, spec = analyze(x, sample_rate, config)
    return synthesize(static, spec, sample_rate)
