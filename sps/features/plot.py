"""Diagnostic figure: waveform, spectral envelope and F0 contour(s) of one utterance."""
from __future__ import annotations

import os

import numpy as np

from sps.features.acoustic import mc2sp
from sps.io import atomic_path


def plot_features(path_png: str | os.PathLike, *, wav: np.ndarray | None = None, sp: np.ndarray | None = None,
                  mgc: np.ndarray | None = None, alpha: float = 0.42, fft_size: int = 1024,
                  f0=None, sample_rate: int = 16000, frame_shift_ms: float = 5.0,
                  title: str | None = None) -> None:
    """Save a PNG with up to three panels (matplotlib, rendered with Agg).

    Parameters
    ----------
    path_png : path-like
        Output file (written atomically).
    wav : ndarray [shape=(N,) or (N, 1)], optional
        Waveform in [-1, 1] at ``sample_rate``.
    sp : ndarray [shape=(T, fft_size // 2 + 1)], optional
        Power spectral envelope, shown in dB.
    mgc : ndarray [shape=(T, M + 1)], optional
        Mel-cepstrum, converted with ``mc2sp(mgc, alpha, fft_size)`` when ``sp``
        is not given.
    f0 : ndarray [shape=(T,) or (T, 1)] or dict of label -> ndarray, optional
        F0 in Hz (0 = unvoiced, not drawn); a dict overlays several contours (e.g.
        natural vs generated).
    sample_rate : int
        Hz.
    frame_shift_ms : float
        ms per frame.
    """
    from matplotlib.figure import Figure   # no pyplot: no global backend state

    if sp is None and mgc is not None:
        sp = mc2sp(mgc, alpha, fft_size)
    if f0 is not None and not isinstance(f0, dict):
        f0 = {"F0": f0}
    panels = [p for p, v in (("wav", wav), ("sp", sp), ("f0", f0)) if v is not None]
    if not panels:
        raise ValueError(f"{path_png}: plot_features needs at least one of wav, sp/mgc, f0")
    heights = {"wav": 1.0, "sp": 2.0, "f0": 1.2}
    fig = Figure(figsize=(10, 1.6 * sum(heights[p] for p in panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True,
                        gridspec_kw={"height_ratios": [heights[p] for p in panels]})
    shift = frame_shift_ms / 1000.0
    for ax, panel in zip(axes[:, 0], panels):
        if panel == "wav":
            w = np.asarray(wav, dtype=np.float64).reshape(-1)
            ax.plot(np.arange(w.size) / sample_rate, w, lw=0.4, color="k")
            ax.set_ylabel("amplitude")
        elif panel == "sp":
            db = 10.0 * np.log10(np.maximum(np.asarray(sp, dtype=np.float64), 1e-12))
            ax.imshow(db.T, origin="lower", aspect="auto", cmap="magma",
                      extent=(0, db.shape[0] * shift, 0, sample_rate / 2000.0),
                      vmin=db.max() - 80.0, vmax=db.max())
            ax.set_ylabel("kHz")
        else:
            for label, contour in f0.items():
                c = np.asarray(contour, dtype=np.float64).reshape(-1)
                ax.plot(np.arange(c.size) * shift, np.where(c > 0, c, np.nan), lw=1.0, label=label)
            ax.set_ylabel("F0 [Hz]")
            if len(f0) > 1:
                ax.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("time [s]")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    with atomic_path(path_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
