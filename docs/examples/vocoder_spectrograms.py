"""Narrow-band spectrograms of one utterance, natural speech and vocoded systems, stacked.

    python docs/examples/vocoder_spectrograms.py --exp-dir exp/slt_festival --utt slt_0329 \
        --out docs/vocoders_spectrograms.png world_copy source_filter_copy wavenet_copy

Each system is ``synth/<system>/<split>/<utt>.wav`` of the experiment; the natural
waveform is the features stage's ``dump/<split>/wav/<utt>.npy``. 64 ms Hann windows
every 5 ms, 0-5 kHz, 80 dB range per panel: harmonics show as horizontal stripes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sps.io import load_array, read_wav


def log_spectrogram(x: np.ndarray, sr: int, win_ms: float = 64.0, hop_ms: float = 5.0) -> np.ndarray:
    """dB magnitude, shape (frames, bins)."""
    n, hop = int(sr * win_ms / 1000), int(sr * hop_ms / 1000)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (n // 2, n // 2)), n)[::hop]
    return 20 * np.log10(np.abs(np.fft.rfft(frames * np.hanning(n), axis=-1)) + 1e-7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exp-dir", type=Path, required=True)
    ap.add_argument("--utt", required=True)
    ap.add_argument("--split", default="eval")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-hz", type=float, default=5000.0)
    ap.add_argument("systems", nargs="+")
    args = ap.parse_args()

    natural = load_array(args.exp_dir / "dump" / args.split / "wav" / f"{args.utt}.npy").reshape(-1)
    panels = [("natural", natural, None)]
    for name in args.systems:
        x, sr = read_wav(args.exp_dir / "synth" / name / args.split / f"{args.utt}.wav")
        panels.append((name, x, sr))
    sr = next(sr for _, _, sr in panels if sr is not None)

    fig = Figure(figsize=(10, 1.6 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (name, x, _) in zip(np.atleast_1d(axes), panels):
        S = log_spectrogram(np.asarray(x, dtype=np.float64), sr)
        bins = int(S.shape[1] * args.max_hz / (sr / 2))
        ax.imshow(S[:, :bins].T, origin="lower", aspect="auto", cmap="magma", vmin=S.max() - 80, vmax=S.max(),
                  extent=(0, len(S) * 0.005, 0, args.max_hz / 1000))
        ax.set_ylabel("kHz", fontsize=7)
        ax.set_title(name, fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
    np.atleast_1d(axes)[-1].set_xlabel("s", fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    from PIL import Image   # matplotlib's own dependency: a 256-colour palette keeps the file small
    Image.open(args.out).convert("RGB").quantize(256).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
