"""Text to waveform with a packed voice: real-time factor, time to first audio, equivalence.

* **Real-time factor**, one sentence of about 3 s, every vocoder: seconds of compute
  per second of speech for the models (duration, acoustic, MLPG) plus the vocoder, and
  with Festival's text analysis (timed apart: it is a separate process per call). The
  baseline is real time itself (RTF 1).
* **Time to first audio** for a 10-sentence paragraph: :meth:`Voice.stream` (sentence
  by sentence, chunk by chunk where the vocoder can) against the plain :meth:`Voice.speak`
  of the whole paragraph, which returns nothing before the end.
* **Equivalence** (``--exp-dir``): the voice against the experiment it was packed from,
  on the eval utterances of its full-TTS system ``synth/<system>/eval``: WORLD wavs bit
  for bit (16-bit files), each neural vocoder draw for draw against the stage's own model
  (``load_vocoder`` + ``generate`` with the same seed).

One thread by default (``--threads``); run it under ``taskset``/``heavy`` for one core.
``--random-vocoders wavernn`` adds a vocoder of the recipe's config with random weights
(for its speed only: speed does not depend on the weights).

    python benchmarks/voice.py --voice data/pretrained/slt_festival.voice.pt
    python benchmarks/voice.py --voice V --exp-dir exp/slt_festival --system acoustic_conv_mge_durpred
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sps import Voice  # noqa: E402
from sps.synthesis import VocoderRunner  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SENTENCE = "The toolkit can now say anything you type, and it starts speaking right away."
PARAGRAPH = ("The toolkit takes a corpus to a voice in numbered stages. Features come from WORLD and SPTK. "
             "Labels and questions give the linguistic features. A duration model times every phone. "
             "An acoustic model predicts the spectrum, pitch and aperiodicity. Parameter generation smooths "
             "the trajectories. A vocoder turns them into a waveform. The neural vocoders predict the "
             "excitation of a linear prediction filter. Everything runs on one core in real time. "
             "A packed voice speaks without the experiment that made it.")


def best_of(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def random_vocoder(voice: Voice, name: str) -> VocoderRunner:
    from sps.config import load_config
    from sps.vocoders import build_vocoder
    cfg = load_config(os.path.join(ROOT, "recipes", "slt_festival", "conf", f"{name}.yaml"))
    torch.manual_seed(0)
    model = {**cfg["model"], "features": voice.conditioning.layout(), "hop_length": voice.conditioning.hop_length}
    m = build_vocoder(cfg["vocoder"], model, voice.conditioning.dim)
    m.set_conditioning(voice.conditioning.mean, voice.conditioning.std)
    return VocoderRunner(f"{name} (random weights)", voice.synthesizer.spec, model=m.eval(),
                         conditioning=voice.conditioning, generate=(cfg.get("vocode") or {}).get("generate"))


def rtf_table(voice: Voice, vocoders: list[str], repeat: int) -> None:
    sr = voice.sample_rate
    fest, labels = best_of(lambda: voice.labels(SENTENCE), repeat)
    models, static = best_of(lambda: voice.parameters(labels), repeat)
    seconds = len(static) * voice.conditioning.hop_length / sr
    print(f"\ntext -> waveform, one sentence ({seconds:.2f} s of speech, {len(labels)} phones), "
          f"{torch.get_num_threads()} thread(s), best of {repeat}")
    print(f"Festival (labels, one process): {fest * 1000:.0f} ms = {fest / seconds:.3f} x real time; "
          f"models (durations, acoustic, MLPG): {models * 1000:.0f} ms = {models / seconds:.3f} x real time")
    print(f"{'vocoder':28s} {'vocoder ms':>10s} {'RTF models+vocoder':>19s} {'RTF with Festival':>18s} "
          f"{'x faster than real time':>24s}")
    for name in vocoders:
        runner = voice.vocoder(name)
        runner.waveforms([static])                        # warm-up (kernel load, first-call costs)
        t, _ = best_of(lambda: runner.waveforms([static]), repeat)
        rtf = (models + t) / seconds
        print(f"{runner.name:28s} {t * 1000:10.0f} {rtf:19.3f} {(fest + models + t) / seconds:18.3f} "
              f"{1 / rtf:24.1f}")


def first_audio_table(voice: Voice, vocoders: list[str], repeat: int) -> None:
    print(f"\ntime to first audio, a 10-sentence paragraph ({len(PARAGRAPH.split())} words), Festival included")
    print(f"{'vocoder':28s} {'speech s':>9s} {'first audio s':>14s} {'stream all s':>13s} {'speak() s':>10s} "
          f"{'speak/first':>12s}")
    for name in vocoders:
        runner = voice.vocoder(name)
        firsts, totals, n = [], [], 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            first, n = None, 0
            for piece in voice.stream(PARAGRAPH, name):
                first = first if first is not None else time.perf_counter() - t0
                n += len(piece)
            firsts.append(first)
            totals.append(time.perf_counter() - t0)
        whole, _ = best_of(lambda: voice.speak(PARAGRAPH, name), repeat)
        print(f"{runner.name:28s} {n / voice.sample_rate:9.1f} {min(firsts):14.2f} {min(totals):13.2f} "
              f"{whole:10.2f} {whole / min(firsts):11.1f}x")


def equivalence(voice: Voice, exp_dir: str, system: str, vocoders: list[str]) -> None:
    import soundfile as sf

    from sps.io import write_wav
    from sps.stages.experiment import Experiment
    from sps.stages.vocoder import load_vocoder
    import tempfile
    exp = Experiment(exp_dir)
    sdir = exp.synth_dir(system, "eval")
    utts = sorted(p.stem for p in sdir.glob("*.wav"))
    labs = exp.scp("lab")
    same = 0
    with tempfile.TemporaryDirectory() as tmp:
        for utt in utts:
            wav, sr = voice.speak_labels(labs[utt], "world")
            write_wav(os.path.join(tmp, "x.wav"), wav, sr)
            same += np.array_equal(sf.read(os.path.join(tmp, "x.wav"), dtype="int16")[0],
                                   sf.read(str(sdir / f"{utt}.wav"), dtype="int16")[0])
    print(f"\nequivalence with {exp.root} ({system}, eval split):")
    print(f"  world: {same} of {len(utts)} utterances bit for bit (16-bit wav) with the synth stage's files")
    cond = exp.conditioning()
    for name in vocoders:
        if name == "world" or not exp.model_dir(name).exists():
            continue
        model = load_vocoder(exp, name, cond, torch.device("cpu"))
        same = 0
        for utt in utts[:3]:
            static = voice.parameters(labs[utt])
            expect = model.generate(torch.from_numpy(cond(static))[None], generator=torch.Generator().manual_seed(0))
            got, _ = voice.speak_labels(labs[utt], name, seed=0)
            same += np.array_equal(got, np.clip(expect[0].double().numpy(), -1, 1))
        print(f"  {name}: {same} of {min(3, len(utts))} utterances draw for draw with models/{name} (seed 0)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voice", default=os.path.join(ROOT, "data", "pretrained", "slt_festival.voice.pt"))
    ap.add_argument("--vocoders", default=None, help="comma-separated (default: every one the voice has)")
    ap.add_argument("--random-vocoders", default="", help="comma-separated recipe vocoders to add with random "
                                                          "weights (speed only), e.g. wavernn")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--exp-dir", help="the experiment the voice was packed from: check equivalence")
    ap.add_argument("--system", default="acoustic_conv_mge_durpred", help="its full-TTS system under synth/")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: rtf, first, equivalence")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("SPS_THREADS", str(args.threads))
    voice = Voice.load(args.voice)
    names = args.vocoders.split(",") if args.vocoders else list(voice.vocoders)
    for extra in filter(None, args.random_vocoders.split(",")):
        runner = random_vocoder(voice, extra)
        voice.add_vocoder(runner)
        names.append(runner.name)
    skip = set(args.skip.split(","))
    print(f"voice {args.voice}: {voice.name}, vocoders {', '.join(voice.vocoders)}; load {os.getloadavg()}")
    if "rtf" not in skip:
        rtf_table(voice, names, args.repeat)
    if "first" not in skip:
        first_audio_table(voice, names, max(1, args.repeat // 2))
    if args.exp_dir and "equivalence" not in skip:
        equivalence(voice, args.exp_dir, args.system, names)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
