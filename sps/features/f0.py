"""Log-F0 helpers: voicing flags, continuous (interpolated) log-F0, back to F0."""
from __future__ import annotations

import numpy as np


def f0_to_lf0(f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split an F0 contour into raw log-F0 and a voicing flag.

    Parameters
    ----------
    f0 : ndarray [shape=(T,)]
        F0 in Hz, 0 for unvoiced frames.

    Returns
    -------
    lf0 : ndarray [shape=(T,)]
        Natural log of F0 (log Hz) on voiced frames, 0 on unvoiced frames.
    vuv : ndarray [shape=(T,)]
        1.0 for voiced (``f0 > 0``), 0.0 for unvoiced.
    """
    f0 = np.asarray(f0, dtype=np.float64).reshape(-1)
    voiced = f0 > 0
    lf0 = np.zeros_like(f0)
    lf0[voiced] = np.log(f0[voiced])
    return lf0, voiced.astype(np.float64)


def interp_lf0(lf0: np.ndarray, vuv: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Continuous log-F0: interpolate over unvoiced frames.

    Between two voiced regions the value goes linearly (in log Hz, i.e. frame index
    as the abscissa) from the last voiced frame to the next one; before the first and
    after the last voiced frame it is held at that frame's value.

    Parameters
    ----------
    lf0 : ndarray [shape=(T,)]
        Log-F0; only voiced frames are read.
    vuv : ndarray [shape=(T,)]
        Voicing flag (> 0.5 voiced).
    fill : float
        Value of every frame when no frame is voiced (log Hz).

    Returns
    -------
    clf0 : ndarray [shape=(T,)]
        Continuous log-F0, equal to ``lf0`` on voiced frames.
    """
    lf0 = np.asarray(lf0, dtype=np.float64).reshape(-1)
    vuv = np.asarray(vuv).reshape(-1)
    if lf0.shape != vuv.shape:
        raise ValueError(f"interp_lf0: lf0 has {lf0.shape[0]} frames but vuv has {vuv.shape[0]}")
    voiced = np.flatnonzero(vuv > 0.5)
    if voiced.size == 0:
        return np.full_like(lf0, fill)
    # np.interp holds the end values constant outside [voiced[0], voiced[-1]]
    return np.interp(np.arange(lf0.size), voiced, lf0[voiced])


def lf0_to_f0(lf0: np.ndarray, vuv: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """F0 in Hz from (continuous) log-F0 and a voicing flag/probability.

    Parameters
    ----------
    lf0 : ndarray [shape=(T,)]
        Log-F0 (log Hz).
    vuv : ndarray [shape=(T,)]
        Voicing flag or probability; frames with ``vuv > threshold`` are voiced.

    Returns
    -------
    f0 : ndarray [shape=(T,)]
        ``exp(lf0)`` on voiced frames, 0 elsewhere.
    """
    lf0 = np.asarray(lf0, dtype=np.float64).reshape(-1)
    vuv = np.asarray(vuv, dtype=np.float64).reshape(-1)
    if lf0.shape != vuv.shape:
        raise ValueError(f"lf0_to_f0: lf0 has {lf0.shape[0]} frames but vuv has {vuv.shape[0]}")
    return np.where(vuv > threshold, np.exp(lf0), 0.0)
