"""Voices from the aligner's labels against the same recipe on true labels (eval split).

Experiments (each a recipe run; the figures are read from its ``eval/*/eval/metrics.json``):

* **E1 true labels**: ``recipes/slt_festival`` on ``data/slt_festival`` (the labels the
  HTS voice spoke with), stages 0-8 with every acoustic model. Not run here: ``--base``
  names a finished experiment of it (read only).
* **E2 aligned, phone level**: ``recipes/own_voice`` on the same corpus from wav + text
  alone (``metadata.csv``; the lab/ folder unused): ingestion, the HMM aligner trained on
  the corpus, its phone-level labels, then the same stages and configs. Ingestion keeps
  the audio as it is (``trim=false``, ``loudness_db=null``) and ``features.f0_floor=80``
  (SLT's value, where own_voice defaults to 60 Hz), so that only the labels differ from E1.
* **E3 aligned, state level**: E2 with ``align.labels=state`` (``data/lab.scp`` names
  ``align/lab_state``): the linguistic features get the state position, the duration
  model predicts 5 durations per phone. It starts from hard links to E2's ingested audio
  and alignment (every stage writes by renaming, so E2 stays as it was).
* **E4 the kal diphone voice**: ``recipes/own_voice`` with its defaults but phone-level labels (``data/kal_festival``
  made at stage -1, trimmed and levelled audio, f0_floor 60 Hz). No true-label run to
  compare with: its figures stand alone (WORLD copy synthesis is its ceiling).

E2-E4 train only the convolutional models (``--acoustic-models acoustic_conv,acoustic_conv_mge``:
the feed-forward DNNs are left out to save CPU; the conv + MGE model is the recipe's best
and its full-TTS system). Systems compared: WORLD copy synthesis, the conv + MGE model
with natural durations (frame by frame) and full TTS with predicted durations (DTW).

Targets (issue 20): E2 conv + MGE, natural durations: MCD within 0.15 dB and F0
correlation within 0.03 of E1. E3 against E2 decides the own_voice default labels.

    python benchmarks/own_voice.py [--base /work/exp/base] [--work exp/own_voice_bench]
        [--run e1,e2,e3,e4 [--stop-stage N] [--epochs N] [--seed S]] [--json out.json]

Without ``--run`` it only prints the table of what exists. With it, each named
experiment runs ``recipes/own_voice/run.sh`` up to ``--stop-stage`` (default 9, eval;
own_voice numbering); stages skip what exists, so a rerun (or a larger ``--stop-stage``)
resumes. On a 2-core machine shared with another run, each of E2-E4 takes about an hour
(the conv model's 40 epochs about 35 minutes of it). ``--epochs N`` trains the conv model
N epochs instead, in experiments ``e2_epN``/``e3_epN`` that start from E2's inputs (E2 run
first): a cheaper comparison of state- and phone-level labels at the same budget.

``--seed S`` repeats the acoustic models of the named experiments (``e1`` too) with other
seeds (conv: S, conv + MGE: S + 1), in experiments ``<name>_sS`` that start from the
experiment's features, statistics and duration model (E1's: ``--base``): the
run-to-run spread of one recipe. The verdicts compare the means over an experiment's runs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_SH = ROOT / "recipes" / "own_voice" / "run.sh"
E1_RUN_SH = ROOT / "recipes" / "slt_festival" / "run.sh"
CONV_STAGE = {RUN_SH: 7, E1_RUN_SH: 6}   # each recipe's stage that trains the conv models (eval: + 2)
MODELS = "acoustic_conv,acoustic_conv_mge"
SAME_AUDIO = ["ingest.layout=ljspeech", "ingest.trim=false", "ingest.loudness_db=null", "features.f0_floor=80"]
EXPERIMENTS = {   # name: (title, first stage, run.sh arguments, experiment whose inputs it starts from)
    "e2": ("aligned phone labels", 0, ["--corpus", "data/slt_festival", *SAME_AUDIO, "align.labels=phone"], None),
    "e3": ("aligned state labels", 0, ["--corpus", "data/slt_festival", *SAME_AUDIO, "align.labels=state"], "e2"),
    "e4": ("kal diphone voice", -1, ["align.labels=phone"], None),     # as measured (the default is state now)
}
# what an experiment shares with the one it starts from (hard links): E3 the audio and the
# alignment (its features are redone: their records name the labels), a shorter-trained
# variant of E2 (--epochs) also E2's features, statistics and duration model
SEED_DIRS = {"e3": ("data", "align"), "e2": ("data", "align", "dump", "stats", "models/duration_dnn")}
REPEAT_DIRS = ("data", "dump", "stats", "models/duration_dnn")   # what a seed repeat shares (E2/E3: + align)
SYSTEMS = [("world_copy", "WORLD copy synthesis"),
           ("acoustic_dnn_mge", "DNN + MGE, natural durations"),
           ("acoustic_conv", "conv (MSE), natural durations"),
           ("acoustic_conv_mge", "conv + MGE, natural durations"),
           ("acoustic_conv_mge_durpred", "conv + MGE, full TTS (DTW)")]
COLUMNS = [("mcd_db", "MCD dB", "{:.2f}"), ("f0_corr", "F0 corr", "{:.3f}"), ("f0_rmse_hz", "F0 RMSE", "{:.1f}"),
           ("bap_db", "BAP dB", "{:.3f}"), ("vuv_error_pct", "V/UV %", "{:.2f}")]
TARGET_SYSTEM = "acoustic_conv_mge"
TARGETS = {"mcd_db": 0.15, "f0_corr": -0.03}   # largest worsening of E2 against E1 (MCD up, F0 corr down)


def link_tree(src: Path, dst: Path) -> None:
    """``dst`` as a copy of ``src`` whose files are hard links (``cp -al``)."""
    shutil.copytree(src, dst, copy_function=os.link, symlinks=True)


def seed(work: Path, name: str, src: Path, dirs: tuple[str, ...]) -> None:
    """Start experiment ``name`` from hard links to ``dirs`` of the experiment in ``src``."""
    dst = work / name
    if dst.exists():
        return
    missing = [d for d in dirs if not (src / d).exists()]
    if missing:
        raise SystemExit(f"own_voice.py: {name} starts from {src}'s {', '.join(missing)}: run {src.name} first")
    tmp = work / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for d in dirs:
        link_tree(src / d, tmp / d)
    tmp.rename(dst)


def exp_name(name: str, epochs: int | None, seed_: int | None = None) -> str:
    return name + (f"_ep{epochs}" if epochs else "") + (f"_s{seed_}" if seed_ is not None else "")


def run(work: Path, base: Path, name: str, stop_stage: int, jobs: int, epochs: int | None,
        seed_: int | None) -> None:
    """run.sh of experiment ``name`` (``epochs``: its conv model trained that many epochs instead;
    ``seed_``: a repeat of its acoustic models with other seeds)."""
    if name == "e1":
        if seed_ is None or epochs:
            raise SystemExit("own_voice.py: e1 is --base (run recipes/slt_festival); --run e1 is for --seed repeats")
        first, args, source, run_sh = 0, [], base, E1_RUN_SH
    else:
        _, first, args, source = EXPERIMENTS[name]
        source, run_sh = source and work / source, RUN_SH
    if epochs:
        if name == "e4":
            raise SystemExit("own_voice.py: --epochs is for e2 and e3 (a comparison at a smaller budget)")
        source = work / "e2"
        args = [*args, f"acoustic_conv.train.epochs={epochs}"]
    dirs = SEED_DIRS.get(name, ())
    if seed_ is not None:
        source, first = work / exp_name(name, epochs) if name != "e1" else base, CONV_STAGE[run_sh]
        dirs = REPEAT_DIRS + (("align",) if run_sh is RUN_SH else ())
        args = [*args, f"acoustic_conv.train.seed={seed_}", f"acoustic_conv_mge.train.seed={seed_ + 1}"]
    if source:
        seed(work, exp_name(name, epochs, seed_), source, dirs)
    last = stop_stage - (CONV_STAGE[RUN_SH] - CONV_STAGE[run_sh])
    cmd = [str(run_sh), "--exp-dir", str(work / exp_name(name, epochs, seed_)), "--stage", str(first),
           "--stop-stage", str(last), "--jobs", str(jobs), "--acoustic-models", MODELS, *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def scores(exp: Path) -> dict[str, dict]:
    """system -> its mean metrics (and utterance count) on the eval split."""
    out = {}
    for system, _ in SYSTEMS:
        p = exp / "eval" / system / "eval" / "metrics.json"
        if p.exists():
            m = json.loads(p.read_text())
            out[system] = {**m["mean"], "utterances": m["num_utterances"], "alignment": m.get("alignment")}
    return out


def group(name: str) -> str:
    """The experiment a run belongs to: its name without a seed repeat's ``_sN``."""
    return re.sub(r"_s\d+$", "", name)


def pooled(results: dict[str, dict], name: str) -> dict[str, dict]:
    """system -> the mean of each metric over the runs of experiment ``name`` (and ``runs``)."""
    runs = [res for run_name, res in results.items() if group(run_name) == name]
    out = {}
    for system, _ in SYSTEMS:
        ms = [res[system] for res in runs if system in res]
        if ms:
            out[system] = {k: sum(m[k] for m in ms) / len(ms) for k, _, _ in COLUMNS if all(k in m for m in ms)}
            out[system]["runs"] = len(ms)
    return out


def table(results: dict[str, dict], titles: dict[str, str]) -> str:
    ref = pooled(results, "e1")
    head = f"{'experiment':<32}{'system':<30}{'utts':>5}" + "".join(f"{h:>9}" for _, h, _ in COLUMNS) \
        + f"{'dMCD':>8}{'dF0corr':>9}"
    lines = [head, "-" * len(head)]
    for name, res in results.items():
        for system, label in SYSTEMS:
            if system not in res:
                continue
            m = res[system]
            row = f"{name + ' ' + titles[name.split('_')[0]]:<32}{label:<30}{m['utterances']:>5}"
            row += "".join(f"{fmt.format(m[k]) if k in m else '-':>9}" for k, _, fmt in COLUMNS)
            if name[:2] in ("e2", "e3") and system in ref:
                row += f"{m['mcd_db'] - ref[system]['mcd_db']:>+8.2f}{m['f0_corr'] - ref[system]['f0_corr']:>+9.3f}"
            lines.append(row)
    return "\n".join(lines)


def verdicts(results: dict[str, dict]) -> list[str]:
    """The targets on the means over each experiment's runs (seed repeats)."""
    out = []
    e1, e2 = pooled(results, "e1"), pooled(results, "e2")
    if TARGET_SYSTEM in e1 and TARGET_SYSTEM in e2:
        a, b = e1[TARGET_SYSTEM], e2[TARGET_SYSTEM]
        d_mcd, d_f0 = b["mcd_db"] - a["mcd_db"], b["f0_corr"] - a["f0_corr"]
        out.append(f"E2 vs E1 ({b['runs']} and {a['runs']} run(s), means), conv + MGE, natural durations: "
                   f"MCD {d_mcd:+.2f} dB (target <= +{TARGETS['mcd_db']}): "
                   f"{'met' if d_mcd <= TARGETS['mcd_db'] else 'MISSED'}; F0 corr {d_f0:+.3f} "
                   f"(target >= {TARGETS['f0_corr']}): {'met' if d_f0 >= TARGETS['f0_corr'] else 'MISSED'}")
    for suffix in sorted({group(k)[2:] for k in results if k[:2] in ("e2", "e3")}):
        e2, e3 = pooled(results, "e2" + suffix), pooled(results, "e3" + suffix)
        for system, label in SYSTEMS[2:]:
            if system in e2 and system in e3:
                out.append(f"E3{suffix} (state) vs E2{suffix} (phone), {label}: MCD "
                           f"{e3[system]['mcd_db'] - e2[system]['mcd_db']:+.2f} dB, "
                           f"F0 corr {e3[system]['f0_corr'] - e2[system]['f0_corr']:+.3f}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=ROOT / "exp" / "slt_festival",
                    help="E1: a finished recipes/slt_festival experiment (stages 0-8), read only")
    ap.add_argument("--work", type=Path, default=ROOT / "exp" / "own_voice_bench", help="E2-E4 go here")
    ap.add_argument("--run", default="", help="comma-separated experiments to run (e2,e3,e4; e1 with --seed) "
                    "before the table")
    ap.add_argument("--stop-stage", type=int, default=9, help="own_voice stage to run up to (9: eval)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--epochs", type=int, help="train the conv model of e2/e3 this many epochs (the recipe: 40), "
                    "in experiments <name>_ep<N> that share E2's inputs: a cheaper state-vs-phone comparison")
    ap.add_argument("--seed", type=int, help="repeat the acoustic models of the --run experiments with seeds "
                    "S (conv) and S+1 (conv + MGE), in experiments <name>_s<S> that share their features")
    ap.add_argument("--json", type=Path, help="write the figures here")
    a = ap.parse_args(argv)
    for name in filter(None, a.run.split(",")):
        if name not in EXPERIMENTS and name != "e1":
            ap.error(f"--run: unknown experiment {name!r} (e1, e2, e3, e4)")
        a.work.mkdir(parents=True, exist_ok=True)
        run(a.work.resolve(), a.base.resolve(), name, a.stop_stage, a.jobs, a.epochs, a.seed)
    titles = {"e1": "true labels", **{k: v[0] for k, v in EXPERIMENTS.items()}}
    results = {"e1": scores(a.base)}
    for d in sorted(a.work.glob("e1_s*")):
        results[d.name] = scores(d)
    for k in EXPERIMENTS:
        results[k] = scores(a.work / k)
        for d in sorted(a.work.glob(f"{k}_*")):
            results[d.name] = scores(d)
    results = {k: v for k, v in results.items() if v}
    if not results:
        print(f"own_voice.py: no eval figures yet under {a.base} or {a.work}")
        return 1
    print(f"\neval split; E1 = {a.base}, E2-E4 under {a.work}; dMCD/dF0corr: against E1's same system\n")
    print(table(results, titles))
    for line in verdicts(results):
        print(line)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
