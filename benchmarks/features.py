"""Throughput of the ``features`` stage on the shipped corpus, with 1 and 2 worker processes.

Runs :func:`sps.stages.features.run` (WORLD analysis, mel-cepstrum, band aperiodicity,
deltas, log-mel, waveform; all four outputs written) on the first ``--utts``
utterances of ``data/slt_festival`` (default 40, a subset of the corpus) in a fresh
temporary experiment directory per run, and prints utterances per second, audio
seconds per wall-clock second, and the 2-job speed-up over 1 job measured in the
same run. A per-step profile of one pass (serial) shows where the time goes.

    python benchmarks/features.py [--utts 40] [--config recipes/slt_festival/conf/features.yaml]
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))          # run from a checkout without installing

from sps.features import FeatureConfig, mel_spectrogram, sp2mc  # noqa: E402
from sps.stages import features as features_stage  # noqa: E402
from sps.features.acoustic import mel_win_length, pysptk, pyworld  # noqa: E402
from sps.stages.runner import StageContext  # noqa: E402


def make_exp(root: Path, wavs: list[Path]) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    lab_dir = ROOT / "data" / "slt_festival" / "lab"
    (data / "wav.scp").write_text("".join(f"{w.stem} {w}\n" for w in wavs))
    (data / "lab.scp").write_text("".join(f"{w.stem} {lab_dir / (w.stem + '.lab')}\n" for w in wavs))
    (data / "train.list").write_text("".join(f"{w.stem}\n" for w in wavs))
    return root


def profile(wavs: list[Path], cfg: FeatureConfig) -> dict[str, float]:
    """Seconds spent per analysis step over all utterances (serial)."""
    pw = pyworld()
    t = dict.fromkeys(["f0 (" + cfg.f0_method + ")", "cheaptrick", "d4c", "sp2mc", "mel"], 0.0)
    t_pysptk = 0.0
    for w in wavs:
        x, sr = sf.read(w)
        t0 = time.perf_counter()
        if cfg.f0_method == "harvest":
            f0, tt = pw.harvest(x, sr, cfg.f0_floor, cfg.f0_ceil, cfg.frame_shift_ms)
        else:
            f0, tt = pw.dio(x, sr, cfg.f0_floor, cfg.f0_ceil, frame_period=cfg.frame_shift_ms)
            f0 = pw.stonemask(x, f0, tt, sr)
        t1 = time.perf_counter()
        sp = pw.cheaptrick(x, f0, tt, sr, fft_size=cfg.resolved_fft_size())
        t2 = time.perf_counter()
        pw.d4c(x, f0, tt, sr, fft_size=cfg.resolved_fft_size())
        t3 = time.perf_counter()
        sp2mc(sp, cfg.mgc_order, cfg.resolved_alpha())
        t4 = time.perf_counter()
        mel_spectrogram(x, sr, cfg.hop_length, cfg.mel_fft_size, mel_win_length(cfg), cfg.num_mels)
        t5 = time.perf_counter()
        for key, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            t[key] += dt
        t6 = time.perf_counter()
        pysptk().sp2mc(sp, cfg.mgc_order, cfg.resolved_alpha())   # baseline: per-frame loop
        t_pysptk += time.perf_counter() - t6
    return t, t_pysptk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utts", type=int, default=40)
    parser.add_argument("--config", type=Path, default=ROOT / "recipes" / "slt_festival" / "conf" / "features.yaml")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = yaml.safe_load(args.config.read_text())
    cfg = FeatureConfig.from_dict(config)
    wavs = sorted((ROOT / "data" / "slt_festival" / "wav").glob("*.flac"))[:args.utts]
    audio_s = sum(sf.info(str(w)).duration for w in wavs)
    print(f"features stage, {len(wavs)} utterances of data/slt_festival ({audio_s:.1f} s of audio), "
          f"f0_method={cfg.f0_method}, config {args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config}")
    rates = {}
    for jobs in args.jobs:
        with tempfile.TemporaryDirectory() as tmp:
            exp = make_exp(Path(tmp) / "exp", wavs)
            t0 = time.perf_counter()
            summary = features_stage.run(StageContext(exp_dir=exp, config=config, jobs=jobs))["train"]
            dt = time.perf_counter() - t0
        if summary.failed:
            raise SystemExit(f"{len(summary.failed)} utterances failed: {summary.failed}")
        rates[jobs] = len(wavs) / dt
        print(f"  jobs={jobs}: {dt:7.2f} s  {rates[jobs]:6.2f} utt/s  {audio_s / dt:6.2f} x real time")
    if 1 in rates:
        for jobs in rates:
            if jobs != 1:
                print(f"  speed-up jobs={jobs} vs jobs=1: {rates[jobs] / rates[1]:.2f}x")
    steps, t_pysptk = profile(wavs, cfg)
    total = sum(steps.values())
    print("  serial profile of the analysis steps (s, share): " +
          ", ".join(f"{k} {v:.2f} ({100 * v / total:.0f}%)" for k, v in steps.items()))
    print(f"  sp2mc as one matrix product: {steps['sp2mc']:.2f} s vs pysptk.sp2mc per frame "
          f"{t_pysptk:.2f} s ({t_pysptk / steps['sp2mc']:.1f}x)")


if __name__ == "__main__":
    main()
