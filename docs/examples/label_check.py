"""Do a corpus's label times match its audio? Spectrograms with the boundaries, and a voicing test.

    python docs/examples/label_check.py --corpus data/kal_festival --out docs/kal_labels.png \
        --utts kal_0005 kal_0001

The figure stacks wide-band spectrograms (8 ms Hann windows every 2 ms, 0-8 kHz, 70 dB
range) of the chosen utterances with the label boundaries drawn and the phones named.

The table is a check that needs no eye: WORLD's voicing decision (DIO + StoneMask, 5 ms
frames) should be "voiced" inside vowels and "unvoiced" inside voiceless obstruents
(p t k ch f th s sh hh). For every utterance of the corpus (or ``--max-utts``), the
labels are shifted by each of ``--shifts`` milliseconds and the agreement (frames of
those phones where the decision matches, in %) is measured. Labels that match the audio
agree best at a shift of 0 ms; labels off by 20 ms would peak near -20 or +20.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sps.features import FeatureConfig
from sps.features.acoustic import world_analysis
from sps.features.mel import stft_magnitude
from sps.io import read_label_file, read_wav

VOWELS = {"aa", "ae", "ah", "ao", "aw", "ax", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"}
VOICELESS = {"p", "t", "k", "ch", "f", "th", "s", "sh", "hh"}
_PHONE = re.compile(r"^[^-]*-([^+]+)\+")


def phones(lab: Path) -> list[tuple[float, float, str]]:
    """(start s, end s, phone) of a label file."""
    return [(ln.start * 1e-7, ln.end * 1e-7, _PHONE.match(ln.context).group(1)) for ln in read_label_file(lab)]


def voicing_agreement(corpus: Path, utts: list[str], shifts_ms: list[float]) -> np.ndarray:
    """Per shift: (matching frames, frames) summed over ``utts``."""
    cfg = FeatureConfig(f0_method="dio")
    counts = np.zeros((len(shifts_ms), 2))
    for utt in utts:
        x, sr = read_wav(next((corpus / "wav").glob(f"{utt}.*")), cfg.sample_rate)
        f0, _, _ = world_analysis(x, cfg)
        voiced = f0 > 0
        t = np.arange(voiced.size) * cfg.frame_shift_ms / 1000.0
        segs = phones(corpus / "lab" / f"{utt}.lab")
        for i, shift in enumerate(shifts_ms):
            for start, end, ph in segs:
                want = True if ph in VOWELS else False if ph in VOICELESS else None
                if want is None:
                    continue
                inside = (t >= start + shift / 1000.0) & (t < end + shift / 1000.0)
                counts[i] += (np.count_nonzero(voiced[inside] == want), np.count_nonzero(inside))
    return counts


def draw(corpus: Path, utts: list[str], out: Path) -> None:
    fig = Figure(figsize=(12, 2.6 * len(utts)))
    for k, utt in enumerate(utts):
        ax = fig.add_subplot(len(utts), 1, k + 1)
        x, sr = read_wav(next((corpus / "wav").glob(f"{utt}.*")))
        n, hop = int(0.008 * sr), int(0.002 * sr)
        mag = stft_magnitude(x, n_fft=256, hop_length=hop, win_length=n)
        db = 20 * np.log10(mag.T + 1e-7)                     # (bins, frames)
        ax.imshow(db, origin="lower", aspect="auto", cmap="gray_r", vmin=db.max() - 70, vmax=db.max(),
                  extent=(0, x.size / sr, 0, sr / 2))
        for start, end, ph in phones(corpus / "lab" / f"{utt}.lab"):
            ax.axvline(start, color="tab:red", lw=0.8)
            ax.text((start + end) / 2, sr / 2 * 0.93, ph, color="tab:blue", ha="center", va="top", fontsize=9)
        ax.set_ylabel("Hz")
        ax.set_title(f"{corpus.name}/{utt}", fontsize=10, loc="left")
    ax.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="a folder with wav/ and lab/")
    ap.add_argument("--utts", nargs="*", default=[], help="utterances to draw")
    ap.add_argument("--out", type=Path, help="PNG of the drawn utterances")
    ap.add_argument("--shifts", type=float, nargs="+", default=[-30, -20, -10, -5, 0, 5, 10, 20, 30])
    ap.add_argument("--max-utts", type=int, default=None)
    args = ap.parse_args()
    if args.out and args.utts:
        draw(args.corpus, args.utts, args.out)
        print(f"wrote {args.out}")
    utts = sorted(p.stem for p in (args.corpus / "lab").glob("*.lab"))[:args.max_utts]
    counts = voicing_agreement(args.corpus, utts, args.shifts)
    print(f"{args.corpus}: voicing agreement in vowels and voiceless obstruents, {len(utts)} utterances")
    print("shift (ms) " + " ".join(f"{s:>6g}" for s in args.shifts))
    print("agree (%)  " + " ".join(f"{100 * m / n:6.1f}" for m, n in counts))


if __name__ == "__main__":
    main()
