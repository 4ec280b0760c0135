"""Copy synthesis of the source-filter vocoder against the LPC order and lag window.

The LPC vocoders take their spectral envelope from an all-pole fit to the mel-cepstral
envelope; this measures what that fit costs on its own, with no network: the classical
source-filter vocoder (pulses or noise through the per-frame filters) vocodes the natural
features of a split, and every waveform is scored as the recipe scores vocoders (WORLD
re-analysis against the natural features). Defaults to the dev split, so that a setting
is chosen without looking at the eval split.

    python benchmarks/lpc_order.py --exp-dir exp/slt_festival [--split dev]
        [--settings 16:50 24:50 32:50 16:20 32:20 32:0] [--mixed]

Each setting is ``order:lag_window_hz``. Needs the experiment's features (stage 1).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from sps.spec import static_columns
from sps.stages.evaluate import acoustic_metrics
from sps.stages.experiment import Experiment
from sps.vocoders import world
from sps.vocoders.conditioning import Conditioning
from sps.vocoders.excitation import LinearPrediction
from sps.vocoders.source_filter import SourceFilterVocoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exp-dir", required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--settings", nargs="+", default=["16:50", "24:50", "32:50", "16:20", "32:20", "32:0"])
    ap.add_argument("--mixed", action="store_true", help="pulses and noise mixed by the band aperiodicity")
    args = ap.parse_args()
    torch.set_num_threads(1)
    exp = Experiment(args.exp_dir)
    spec = exp.spec("out_acoustic")
    cols = static_columns(spec)
    config = exp.feature_config()
    cond = Conditioning(spec, np.zeros(len(cols)), np.ones(len(cols)))    # natural units in and out
    utts = exp.utterances(args.split)
    print(f"source-filter copy synthesis, {args.split} split ({len(utts)} utterances), WORLD re-analysis")
    print(f"{'order':>5} {'lag window (Hz)':>15} {'MCD (dB)':>9} {'F0 corr':>8} {'V/UV (%)':>9}")
    for setting in args.settings:
        order, lag_window = (float(v) for v in setting.split(":"))
        sf = SourceFilterVocoder(cond.dim, cond.layout(), hop_length=cond.hop_length, order=int(order),
                                 mixed=args.mixed)
        sf.lp = LinearPrediction(cond.dim, cond.layout(), order=int(order), preemphasis=sf.preemphasis,
                                 lag_window_hz=lag_window)
        scores = []
        for utt in utts:
            natural = np.load(exp.dump_path(args.split, "out_acoustic", utt))[:, cols]
            wav = sf.generate(torch.from_numpy(cond(natural))[None], generator=torch.Generator().manual_seed(0))
            static, _ = world.analyze(wav[0].double().numpy(), config.sample_rate, config)
            T = min(len(static), len(natural))
            scores.append(acoustic_metrics(natural[:T], static[:T], spec))
        mean = {k: float(np.mean([s[k] for s in scores])) for k in ("mcd_db", "f0_corr", "vuv_error_pct")}
        print(f"{int(order):>5} {lag_window:>15g} {mean['mcd_db']:>9.2f} {mean['f0_corr']:>8.3f} "
              f"{mean['vuv_error_pct']:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
