"""Cost per hour of audio: every recipe stage's wall time and peak memory at 1x, 3x, 10x
the shipped corpus, with 1 and 2 jobs.

    python benchmarks/scaling.py --work /tmp/scaling [--scales 1 3 10] [--jobs 1 2]
        [--train-steps 100] [--json out.json]
        [--slot 1 /work/helpers/heavy --slot 2 "/work/helpers/heavy --exclusive"]

A corpus of scale ``s`` repeats the shipped corpus (``data/slt_festival``) ``s`` times
with renamed ids (``<utt>_c<k>``; symbolic links to the same files, the split lists
repeated likewise), so a 10x corpus holds 10x the audio of each split. For each scale
the stages run as the recipe runs them (``sps <stage>`` with the recipe's configs, one
process per stage), each pass (a scale and a number of jobs) behind its ``--slot``:

* per-utterance stages (``features``, ``linguistic``, ``synth``): with ``--jobs 1``, then
  again with ``--jobs 2`` and ``--force`` (same outputs, rewritten);
* ``stats``, the trainings (``duration``, ``acoustic_conv``, ``train-vocoder``) for
  ``--train-steps`` optimizer steps (their time per step does not depend on the
  corpus; what grows is the set-up and the validation, which are included), and
  ``eval``: once, with ``--jobs 1``.

Wall time is measured around the whole process (imports included; not the wait for a
slot), CPU time is its user + system time (children included: on a machine shared with
other work it is the steadier figure), peak memory is
the largest resident set of the process tree (``wait4``'s ``ru_maxrss``: the stage
process or its biggest worker). The table gives seconds per hour of the audio each
stage reads (all splits for features/linguistic, the train split for stats and
training, the eval split for synth and eval) and the 10x / 1x ratios the issue's
targets are stated in (linear: time per hour within 15 %, memory within 20 %).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "recipes" / "slt_festival" / "conf"
CORPUS = ROOT / "data" / "slt_festival"
SPLITS = ("train", "dev", "eval")
PER_UTT = ("features", "linguistic", "synth")
#: stage -> (sps subcommand, config, extra overrides, split whose audio it reads)
STAGES = {
    "prepare": ("prepare", "prepare.yaml", [], None),
    "features": ("features", "features.yaml", [], "all"),
    "linguistic": ("linguistic", "linguistic.yaml", [], "all"),
    "stats": ("stats", "stats.yaml", [], "train"),
    "train_duration": ("train", "duration.yaml", ["train.plot=false"], "train"),
    "train_acoustic": ("train", "acoustic_conv.yaml", ["train.plot=false"], "train"),
    "train_vocoder": ("train-vocoder", "wavenet.yaml", ["train.plot=false", "train.valid_every=null",
                                                        "train.checkpoint_every=null"], "train"),
    "synth": ("synth", "synth.yaml", ["acoustic_model=acoustic_conv", "duration_model=duration_dnn"], "eval"),
    "eval": ("eval", "eval.yaml", [], "eval"),
}


def make_corpus(out: Path, scale: int, subset: int | None = None) -> dict[str, float]:
    """``scale`` renamed copies of the shipped corpus under ``out``; hours per split."""
    import soundfile as sf
    if out.exists():
        shutil.rmtree(out)
    for sub in ("wav", "lab"):
        (out / sub).mkdir(parents=True)
    hours = {}
    for split in SPLITS:
        utts = (CORPUS / f"{split}.list").read_text().split()[:subset]
        ids, seconds = [], 0.0
        for utt in utts:
            audio = next(p for p in (CORPUS / "wav" / f"{utt}{ext}" for ext in (".flac", ".wav")) if p.exists())
            seconds += sf.info(str(audio)).duration * scale
            for k in range(scale):
                new = f"{utt}_c{k}"
                (out / "wav" / f"{new}{audio.suffix}").symlink_to(audio)
                (out / "lab" / f"{new}.lab").symlink_to(CORPUS / "lab" / f"{utt}.lab")
                ids.append(new)
        (out / f"{split}.list").write_text("".join(i + "\n" for i in ids))
        hours[split] = seconds / 3600
    hours["all"] = sum(hours[s] for s in SPLITS)
    return hours


def run_stage(exp: Path, stage: str, jobs: int, overrides: list[str], force: bool, log: Path) -> dict:
    """One ``sps`` stage as a child process: wall seconds and peak RSS (MB) of its tree
    (``wait4``: the largest of the stage process and its workers)."""
    sub, conf, extra, _ = STAGES[stage]
    cmd = [shutil.which("sps") or "sps", sub, "--exp-dir", str(exp), "--config", str(CONF / conf),
           "--jobs", str(jobs), *extra, *overrides] + (["--force"] if force else [])
    with open(log, "a") as f:
        f.write(f"\n### {' '.join(cmd)}\n")
        f.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"scaling: {' '.join(cmd)} failed (exit {code}); see {log}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024,
            "load": open("/proc/loadavg").read().split()[:3]}


def run_pass(work: Path, scale: int, jobs: int, first: bool, train_steps: int, stages: list[str],
             subset: int | None) -> list[dict]:
    """The stages of one scale with ``jobs`` jobs: the first pass of a scale builds the
    corpus and runs every stage, a later one the per-utterance stages again (``--force``)."""
    corpus, exp, log = work / f"corpus_{scale}x", work / f"exp_{scale}x", work / f"scaling_{scale}x.log"
    if first:
        hours = make_corpus(corpus, scale, subset)
        (work / f"hours_{scale}x.json").write_text(json.dumps(hours))
        if exp.exists():
            shutil.rmtree(exp)
        log.write_text("")
    hours = json.loads((work / f"hours_{scale}x.json").read_text())
    rows = []
    for stage in [s for s in STAGES if s in stages or s == "prepare"]:
        if not first and stage not in PER_UTT:
            continue     # stages that take no --jobs run once
        overrides = [f"corpus.path={corpus}"] if stage == "prepare" else []
        if stage.startswith("train"):
            overrides.append(f"train.max_steps={train_steps}")
        rec = run_stage(exp, stage, jobs, overrides, force=not first, log=log)
        split = STAGES[stage][3]
        rec.update(stage=stage, scale=scale, jobs=jobs, hours=hours[split] if split else None)
        if rec["hours"]:
            rec["s_per_hour"] = rec["wall_s"] / rec["hours"]
            rec["cpu_s_per_hour"] = rec["cpu_s"] / rec["hours"]
        rows.append(rec)
        print(f"{scale:>3}x jobs {jobs}  {stage:15s} {rec['wall_s']:8.1f} s  {rec['cpu_s']:8.1f} cpu-s  "
              f"{rec['peak_mb']:7.0f} MB" + (f"  {rec['s_per_hour']:8.0f} s/h  {rec['cpu_s_per_hour']:8.0f} cpu-s/h"
                                             if rec.get("s_per_hour") else "")
              + f"  load {' '.join(rec['load'])}", flush=True)
    return rows


def table(rows: list[dict], scales: list[int]) -> str:
    """Markdown: per stage and job count, wall and CPU seconds per hour of audio and peak MB
    at each scale, and the largest / smallest scale ratios."""
    lo, hi = min(scales), max(scales)
    cols = [f"{s}x wall s/h" for s in scales] + [f"{s}x CPU s/h" for s in scales] + [f"{s}x MB" for s in scales]
    head = "| stage | jobs | " + " | ".join(cols) + f" | wall/h {hi}x/{lo}x | CPU/h {hi}x/{lo}x | MB {hi}x/{lo}x |"
    lines = [head, "|" + "---|" * (2 + len(cols) + 3)]
    keys = sorted({(r["stage"], r["jobs"]) for r in rows}, key=lambda k: (list(STAGES).index(k[0]), k[1]))
    for stage, jobs in keys:
        if stage == "prepare":
            continue
        by = {r["scale"]: r for r in rows if r["stage"] == stage and r["jobs"] == jobs}

        def cell(s, key, fmt="{:.0f}"):
            return fmt.format(by[s][key]) if s in by and by[s].get(key) is not None else ""

        def ratio(key):
            ok = lo in by and hi in by and by[lo].get(key) and by[hi].get(key)
            return f"{by[hi][key] / by[lo][key]:.2f}" if ok else ""
        cells = ([cell(s, "s_per_hour") for s in scales] + [cell(s, "cpu_s_per_hour") for s in scales]
                 + [cell(s, "peak_mb") for s in scales])
        lines.append(f"| {stage} | {jobs} | " + " | ".join(cells)
                     + f" | {ratio('s_per_hour')} | {ratio('cpu_s_per_hour')} | {ratio('peak_mb')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="scratch directory (corpora and experiments)")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 3, 10])
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--train-steps", type=int, default=100, help="optimizer steps of each training")
    ap.add_argument("--stages", nargs="+", default=list(STAGES)[1:], choices=list(STAGES)[1:])
    ap.add_argument("--subset", type=int, default=None, help="first N utterances of each split (smoke test)")
    ap.add_argument("--json", type=Path, help="write every measurement here")
    ap.add_argument("--slot", nargs=2, action="append", default=[], metavar=("JOBS", "PREFIX"),
                    help="run each pass of JOBS jobs behind PREFIX (split at spaces), e.g. "
                         "--slot 1 /work/helpers/heavy --slot 2 '/work/helpers/heavy --exclusive'; "
                         "the time spent waiting for the slot is not measured")
    ap.add_argument("--pass", dest="one_pass", nargs=3, type=int, metavar=("SCALE", "JOBS", "FIRST"),
                    help=argparse.SUPPRESS)   # one pass, run by the main process inside its slot
    args = ap.parse_args()
    if args.one_pass:
        scale, jobs, first = args.one_pass
        rows = run_pass(args.work, scale, jobs, bool(first), args.train_steps, args.stages, args.subset)
        (args.work / f"pass_{scale}x_{jobs}.json").write_text(json.dumps(rows))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    slots = {int(j): prefix.split() for j, prefix in args.slot}
    print(f"# {platform.machine()} {os.cpu_count()} CPUs, scales {args.scales}, jobs {args.jobs}, "
          f"{args.train_steps} training steps, load {open('/proc/loadavg').read().strip()}", flush=True)
    rows = []
    for scale in args.scales:
        for jobs in args.jobs:
            cmd = [*slots.get(jobs, []), sys.executable, __file__, "--work", str(args.work), "--train-steps",
                   str(args.train_steps), "--stages", *args.stages, "--pass", str(scale), str(jobs),
                   str(int(jobs == args.jobs[0]))] + (["--subset", str(args.subset)] if args.subset else [])
            if subprocess.run(cmd).returncode != 0:
                sys.exit(f"scaling: the pass {scale}x jobs {jobs} failed")
            rows += json.loads((args.work / f"pass_{scale}x_{jobs}.json").read_text())
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
        shutil.rmtree(args.work / f"exp_{scale}x" / "dump", ignore_errors=True)   # the 10x dump is GBs
    print(table(rows, args.scales))


if __name__ == "__main__":
    main()
