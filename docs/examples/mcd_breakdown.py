"""Where a system's mel-cepstral distortion comes from: voiced and unvoiced frames, bands of
cepstral coefficients, and the mean error (bias) of the first coefficients in voiced frames.

Scored like the eval stage with ``source: audio`` (WORLD re-analysis of the waveform
against the natural features, frame by frame), but pooled over frames rather than averaged
per utterance, so ``all`` differs a little from the eval table.

    python docs/examples/mcd_breakdown.py --exp-dir EXP [--split eval] SYSTEM [SYSTEM ...]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sps.spec import split_streams
from sps.stages import evaluate
from sps.stages.experiment import Experiment

BANDS = [(1, 4), (5, 12), (13, 24), (25, None)]      # cepstral coefficients c_a .. c_b
DB = 10 / np.log(10) * np.sqrt(2)


def breakdown(exp: Experiment, system: str, split: str) -> str:
    spec = exp.spec("out_acoustic")
    cols = evaluate.static_columns(spec)
    sdir = exp.synth_dir(system, split)
    diffs, voiced = [], []
    for utt in exp.utterances(split):
        if not (sdir / f"{utt}.wav").exists():
            continue
        natural = evaluate.load_array(exp.dump_path(split, "out_acoustic", utt))[:, cols]
        made = evaluate.generated_static(exp, system, split, utt, "audio")
        T = min(len(natural), len(made))
        n, g = split_streams(natural[:T], spec), split_streams(made[:T], spec)
        diffs.append(g["mgc"] - n["mgc"])
        voiced.append(n["vuv"][:, 0] > 0.5)
    if not diffs:
        return f"{system:<42} no waveforms in {sdir}"
    d, v = np.concatenate(diffs), np.concatenate(voiced)
    frame_mcd = DB * np.sqrt((d[:, 1:] ** 2).sum(1))
    bands = " ".join(f"c{a}-{b or d.shape[1] - 1} {(d[:, a:(b or d.shape[1] - 1) + 1] ** 2).sum(1).mean():.4f}"
                     for a, b in BANDS)
    bias = " ".join(f"{x:+.3f}" for x in d[v, 1:5].mean(0))
    return (f"{system:<42} all {frame_mcd.mean():.3f} voiced {frame_mcd[v].mean():.3f} "
            f"unvoiced {frame_mcd[~v].mean():.3f} | squared error {bands} | voiced bias c1-c4 {bias}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exp-dir", type=Path, required=True)
    ap.add_argument("--split", default="eval")
    ap.add_argument("systems", nargs="+", help="names under synth/")
    a = ap.parse_args()
    exp = Experiment(a.exp_dir)
    for system in a.systems:
        print(breakdown(exp, system, a.split), flush=True)


if __name__ == "__main__":
    main()
