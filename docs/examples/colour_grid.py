"""The excitation-colour post-filter (sps.vocoders.colour) at other orders and windows, applied
offline to waveforms an LPC vocoder made without it, and scored: how its settings were chosen.

    python docs/examples/colour_grid.py --exp-dir EXP --model wavenet --split dev \
        --system wavenet_copy=dump --system acoustic_conv_mge_wavenet=acoustic_conv_mge \
        --orders 8 16 32 --windows-ms 10 15 25

``--system NAME=FEATURES``: ``synth/NAME/<split>/*.wav``, made from the natural features
(``dump``) or from an acoustic model's (``synth/<model>/<split>/*.npy``), with the colour
filter off (e.g. a model trained before it, or ``vocode.generate.colour=false``). For each
order and window the corpus colour is measured again from the train split (``models/MODEL``
gives the LPC settings), the filter applied, the result written to
``synth/NAME_o<order>w<ms>/<split>/`` and scored as ``docs/examples/mcd_breakdown.py`` does
(pooled over frames, voiced and unvoiced apart).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from sps.dsp import deemphasis, preemphasis
from sps.io import load_array, read_wav, write_wav
from sps.stages.datasets import natural_utterances
from sps.stages.experiment import Experiment
from sps.stages.vocoder import load_vocoder
from sps.vocoders import colour

sys.path.insert(0, str(Path(__file__).parent))
from mcd_breakdown import breakdown  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exp-dir", type=Path, required=True)
    ap.add_argument("--model", required=True, help="models/<name> of the LPC vocoder")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--system", action="append", required=True, metavar="NAME=FEATURES")
    ap.add_argument("--orders", type=int, nargs="+", default=[colour.ORDER])
    ap.add_argument("--windows-ms", type=float, nargs="+", default=[1000 * colour.WINDOW_S])
    a = ap.parse_args()
    exp = Experiment(a.exp_dir)
    cond = exp.conditioning()
    model = load_vocoder(exp, a.model, cond, torch.device("cpu"))
    lp, hop = model.lp, model.hop_length
    train = list(natural_utterances(exp, "train", cond))
    for order in a.orders:
        for ms in a.windows_ms:
            c = model.measure_colour(train, order, ms / 1000)
            for spec in a.system:
                name, source = spec.split("=", 1)
                out = f"{name}_o{order}w{ms:g}"
                out_dir = exp.synth_dir(out, a.split)
                out_dir.mkdir(parents=True, exist_ok=True)
                for utt in exp.utterances(a.split):
                    feats = exp.dump_path(a.split, "out_acoustic", utt) if source == "dump" else \
                        exp.synth_dir(source, a.split) / f"{utt}.npy"
                    k = torch.from_numpy(cond(load_array(feats), feats))[None]
                    T = k.shape[1]
                    wav = np.zeros(T * hop)
                    got = read_wav(exp.synth_dir(name, a.split) / f"{utt}.wav")[0][:T * hop]
                    wav[:len(got)] = got
                    x = preemphasis(torch.from_numpy(wav), lp.preemphasis).numpy()[None]
                    post = colour.ColourFilter(lp.frame_lpc(k).double().numpy(), lp.frame_voicing(k).numpy(), c,
                                               hop, lp.sample_rate, ms / 1000)
                    y = deemphasis(torch.from_numpy(post.push(x)[0]), lp.preemphasis).clamp(-1, 1)
                    write_wav(out_dir / f"{utt}.wav", y.float().numpy(), cond.sample_rate)
                print(breakdown(exp, out, a.split), flush=True)
    for spec in a.system:
        print(breakdown(exp, spec.split("=", 1)[0], a.split), flush=True)


if __name__ == "__main__":
    main()
