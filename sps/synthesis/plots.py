"""Figure comparing natural and generated speech parameters of one utterance."""
from __future__ import annotations

import os

import numpy as np

from sps.features import lf0_to_f0, mgc_to_log_power
from sps.io import atomic_path
from sps.spec import split_streams


def plot_comparison(path_png: str | os.PathLike, generated: np.ndarray, spec: dict,
                    natural: np.ndarray | None = None, title: str | None = None) -> None:
    """Spectral envelopes (natural above generated) and both F0 contours -> PNG.

    Parameters
    ----------
    path_png : path-like
        Written atomically.
    generated, natural : ndarray [shape=(T, S)]
        Static features ``[mgc | lf0 | vuv | bap]`` (natural optional).
    spec : dict
        Stream spec (alpha, FFT size, sample rate, frame shift).
    """
    from matplotlib.figure import Figure   # matplotlib only when a plot is made
    a = spec["analysis"]
    sr, shift = spec["sample_rate"], spec["frame_shift_ms"] / 1000.0
    rows = [("generated", generated)] if natural is None else [("natural", natural), ("generated", generated)]
    fig = Figure(figsize=(10, 2.2 * len(rows) + 2.0))
    axes = fig.subplots(len(rows) + 1, 1, sharex=True, gridspec_kw={"height_ratios": [2] * len(rows) + [1.6]})
    f0s = {}
    vmax = None
    for ax, (label, feats) in zip(axes, rows):
        st = split_streams(np.asarray(feats, dtype=np.float64), spec)
        db = 10 / np.log(10) * mgc_to_log_power(st["mgc"], float(a["alpha"]), int(a["fft_size"]))
        vmax = db.max() if vmax is None else vmax  # same colour scale for both
        ax.imshow(db.T, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
                  extent=(0, len(db) * shift, 0, sr / 2000))
        ax.set_ylabel(f"{label}\nkHz")
        f0s[label] = lf0_to_f0(st["lf0"][:, 0], st["vuv"][:, 0])
    ax = axes[-1]
    for label, f0 in f0s.items():
        t = np.arange(len(f0)) * shift
        ax.plot(t, np.where(f0 > 0, f0, np.nan), lw=1.2, label=label)
    ax.set_ylabel("F0 (Hz)")
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    with atomic_path(path_png) as tmp:
        fig.savefig(tmp, dpi=72)


def plot_spectrogram(path_png: str | os.PathLike, wav: np.ndarray, sample_rate: int,
                     title: str | None = None, max_khz: float = 8.0) -> None:
    """Narrow-band spectrogram of a waveform -> PNG (harmonics are visible as lines).

    Parameters
    ----------
    path_png : path-like
        Written atomically.
    wav : ndarray [shape=(N,)]
        Waveform in [-1, 1].
    sample_rate : int
        Hz.
    max_khz : float
        Top of the frequency axis.
    """
    from matplotlib.figure import Figure   # matplotlib only when a plot is made
    from sps.features import stft_magnitude
    x = np.asarray(wav, dtype=np.float64).reshape(-1)
    n_fft, hop = 1024, max(1, sample_rate // 200)              # 40 ms windows: harmonics resolved
    mag = stft_magnitude(x, n_fft, hop, win_length=int(0.04 * sample_rate))
    db = 20 * np.log10(np.maximum(mag, 1e-6))
    top = min(int(max_khz * 1000 * n_fft / sample_rate), db.shape[1])
    fig = Figure(figsize=(6, 2.2))
    ax = fig.subplots()
    vmax = db.max()
    ax.imshow(db[:, :top].T, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 70, vmax=vmax,
              extent=(0, len(x) / sample_rate, 0, top * sample_rate / n_fft / 1000))
    ax.set_ylabel("kHz")
    ax.set_xlabel("time (s)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=72)
