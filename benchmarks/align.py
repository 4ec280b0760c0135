"""The forced aligner on a corpus with known times: boundary accuracy, speed, E-step scaling, memory.

Builds the input ``sps ingest`` would write from a corpus directory (``wav/<utt>.flac``,
``metadata.csv`` or ``sentences.txt``, the split lists), runs the ``sps align`` stage's
steps (Festival front end, features, flat-start training, Viterbi, outputs) in a fresh
experiment directory, and prints

* **accuracy**: phone boundaries against the corpus's own labels (``lab/``): mean
  absolute error, median, share within 20 ms (the issue's targets: <= 10 ms and >= 90 %),
  matched as in :mod:`sps.align.score` (by position among the non-pause phones; the
  pauses the aligner chose or dropped score both their edges). The reference figure in
  the same run: Festival's own predicted durations stretched to each recording's length
  (what one gets without an aligner);
* **speed**: wall time of each step and in all (target: <= 3 minutes for the shipped
  corpus on the 2-core machine), and per hour of audio;
* **E-step scaling**: one E-step over the training set with ``--jobs 1`` and ``2`` worker
  processes, and the PyTorch backend against the C kernels on a subset;
* **memory**: peak resident memory of one forward-backward and one Viterbi over a
  20-second utterance (utterances joined), per backend, in a fresh process each.

    python benchmarks/align.py [--corpus data/slt_festival] [--jobs 2] [--utts N]
                               [--voice cmu_us_slt_arctic_hts] [--json out.json] [key=value ...]

Run it alone on the machine (``heavy --exclusive``): the figures are wall times.
``key=value`` overrides go to the stage config (``aligner.mixtures=[1,2,4]``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))          # run from a checkout without installing

from sps.align.context import phone_of  # noqa: E402
from sps.align.score import boundary_pairs, summarize  # noqa: E402
from sps.config import bind, load_config  # noqa: E402
from sps.frontend import load_labels  # noqa: E402
from sps.stages import align as stage  # noqa: E402
from sps.stages.experiment import Experiment  # noqa: E402


def corpus_texts(corpus: Path) -> dict[str, str]:
    if (corpus / "metadata.csv").exists():
        rows = [line.split("|") for line in (corpus / "metadata.csv").read_text().splitlines() if line.strip()]
        return {r[0]: r[-1] for r in rows}
    return dict(line.split("\t", 1) for line in (corpus / "sentences.txt").read_text().splitlines() if line.strip())


def make_exp(root: Path, corpus: Path, utts: int | None) -> tuple[Experiment, list[str]]:
    texts = corpus_texts(corpus)
    lists = {s: [u for u in (corpus / f"{s}.list").read_text().split() if u in texts]
             for s in ("train", "dev", "eval")}
    if utts:
        keep = set(sorted(texts)[:utts])
        lists = {s: [u for u in ids if u in keep] for s, ids in lists.items()}
    ids = [u for s in lists.values() for u in s]
    data = root / "data"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text("".join(f"{u} {corpus / 'wav' / (u + '.flac')}\n" for u in ids))
    (data / "text").write_text("".join(f"{u} {texts[u]}\n" for u in ids))
    for s, members in lists.items():
        (data / f"{s}.list").write_text("".join(u + "\n" for u in members))
    return Experiment(root), ids


def errors_ms(ref_path: Path, hyp) -> np.ndarray:
    ref = load_labels(ref_path)
    pairs = boundary_pairs([phone_of(c) for c in ref.contexts], ref.times[:, [0, -1]],
                           [phone_of(c) for c in hyp.contexts], hyp.times[:, [0, -1]])
    return (pairs[:, 1] - pairs[:, 0]) / 1e4


def festival_baseline(corpus: Path, ids: list[str], voice: str, audio_s: dict[str, float]) -> np.ndarray:
    """Festival's predicted times, stretched to each recording: the no-aligner reference."""
    from sps.frontend import texts_to_labels
    from sps.frontend.labels import Labels
    texts = corpus_texts(corpus)
    out = []
    for u, r in zip(ids, texts_to_labels([texts[u] for u in ids], voice=voice, durations=True)):
        if isinstance(r, Exception):
            continue
        lab = r[0]
        scale = audio_s[u] * 1e7 / float(lab.times[-1, -1])
        times = np.rint(lab.times * scale / 50000).astype(np.int64) * 50000
        try:
            out.append(errors_ms(corpus / "lab" / f"{u}.lab", Labels(contexts=lab.contexts, times=times)))
        except ValueError:
            continue
    return np.concatenate(out) if out else np.zeros(0)


def estep_seconds(ad, inputs, cfg, jobs: int, backend: str, utts: list[str]) -> float:
    from sps.align import Aligner
    from sps.align.train import EStep
    model = Aligner.load(ad.model).model
    examples = stage._examples(ad, utts, inputs)
    with EStep(examples, cfg.aligner, jobs, backend) as step:
        t0 = time.perf_counter()
        step(model, True)
        return time.perf_counter() - t0


MEMORY_CHILD = r"""
import json, sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(1)
from sps.align import Aligner
from sps.align.model import accumulate
from sps.align.train import make_graph
aligner = Aligner.load(sys.argv[2])
d = np.load(sys.argv[3], allow_pickle=False)
x = torch.from_numpy(d["features"])
contexts = [str(c) for c in d["contexts"]]
graph = make_graph(contexts, aligner.model.models, aligner.config, pauses=True)
from sps.align.train import Example
ex = Example("long", d["features"], contexts)
accumulate(aligner.model, [("warm", x[:400], make_graph(contexts[:9] + contexts[-1:], aligner.model.models,
           aligner.config, pauses=True))], beam=aligner.config.beam, backend=sys.argv[5])
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
with open("/proc/self/clear_refs", "w") as f:   # resets the peak (VmHWM) to the current size
    f.write("5")
base = status("VmRSS")
if sys.argv[4] == "fb":
    s = accumulate(aligner.model, [("long", x, graph)], beam=aligner.config.beam, backend=sys.argv[5])
    ok = s.utterances == 1
else:
    r = aligner.align_examples([ex], backend=sys.argv[5])
    ok = not isinstance(r["long"], str)
peak = status("VmHWM")
print(json.dumps({"mb": (peak - base) / 1024.0, "ok": ok, "frames": int(x.shape[0]), "states": len(graph)}))
"""


def memory(ad, ids: list[str], seconds: float = 20.0) -> dict:
    """Peak memory (MB above the process's resident set before the call; Linux's peak is
    reset first) of forward-backward and Viterbi over one utterance of about ``seconds`` s
    (utterances joined), each in a fresh process."""
    from sps.align.context import merge_pauses
    feats, contexts, total = [], [], 0
    for u in ids:
        if not ad.feats(u).exists():
            continue
        f = np.load(ad.feats(u))
        feats.append(f)
        contexts += [c for c in ad.front(u).read_text().splitlines() if c.strip()]
        total += f.shape[0]
        if total * 0.005 >= seconds:
            break
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.npz"
        np.savez(path, features=np.concatenate(feats), contexts=np.array(merge_pauses(contexts)))
        for op in ("fb", "viterbi"):
            for backend in ("native", "torch"):
                proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(ROOT), str(ad.model), str(path), op,
                                       backend], capture_output=True, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"})
                if proc.returncode:
                    raise RuntimeError(proc.stderr[-2000:])
                out[f"{op}_{backend}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "slt_festival")
    parser.add_argument("--utts", type=int, default=None, help="first N utterances (sorted ids) only")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the stage run")
    parser.add_argument("--voice", default="cmu_us_slt_arctic_hts", help="Festival voice of the front end")
    parser.add_argument("--exp", type=Path, default=None, help="experiment directory (default: a temporary one)")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: baseline,scaling,memory")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("overrides", nargs="*", help="stage config overrides (aligner.beam=500 ...)")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    corpus = args.corpus.resolve()
    tmp = tempfile.TemporaryDirectory(prefix="sps_align_bench_") if args.exp is None else None
    root = Path(tmp.name) if tmp else args.exp
    exp, ids = make_exp(root, corpus, args.utts)
    cfg = bind(stage.AlignStageConfig, load_config(None, [f"voice={args.voice}", *args.overrides]), "align")
    ad, inputs = stage.AlignDir(exp), stage.read_inputs(exp)
    with open(os.devnull, "w") as null:
        t = {}
        t0 = time.perf_counter()
        stage._check_config(ad, cfg, True)
        stage.prepare(ad, inputs, inputs.utts, cfg, args.jobs, False)
        t["front end + features"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        stderr, sys.stderr = sys.stderr, null
        try:
            stage.train_all(ad, inputs, cfg, args.jobs)
        finally:
            sys.stderr = stderr
        t["training"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        stage.align_utts(ad, inputs, inputs.utts, cfg, False)
        report = stage.finish(ad, inputs, cfg, 1.0)
        t["alignment + outputs"] = time.perf_counter() - t1
        t["total"] = time.perf_counter() - t0
    audio_s = {u: np.load(ad.feats(u)).shape[0] * 0.005 for u in ids if ad.feats(u).exists()}
    hours = sum(audio_s.values()) / 3600.0

    errs, same = [], 0
    for u in ids:
        if (ad.lab(u)).exists():
            hyp = load_labels(ad.lab(u))
            errs.append(errors_ms(corpus / "lab" / f"{u}.lab", hyp))
            ref = load_labels(corpus / "lab" / f"{u}.lab")
            same += [phone_of(c) == "pau" for c in hyp.contexts] == [phone_of(c) == "pau" for c in ref.contexts]
    acc = summarize(np.concatenate(errs))
    acc["within_10ms"] = float((np.abs(np.concatenate(errs)) <= 10).mean())
    fig = {"corpus": str(corpus), "utterances": len(ids), "aligned": report["aligned"], "failed": report["failed"],
           "audio_minutes": hours * 60, "jobs": args.jobs, "voice": args.voice, "accuracy": acc,
           "same_pauses_as_reference": same, "pauses_added": report["pauses_added"],
           "pauses_dropped": report["pauses_dropped"], "seconds": t,
           "seconds_per_hour_of_audio": t["total"] / hours, "loadavg": open("/proc/loadavg").read().split()[:3],
           "config": {k: v for k, v in vars(cfg.aligner).items() if k != "features"}}
    print(f"corpus {corpus.name}: {len(ids)} utterances, {hours * 60:.1f} min of audio, {report['aligned']} aligned, "
          f"{report['failed']} failed; --jobs {args.jobs}; load {' '.join(fig['loadavg'])}")
    print("\naccuracy (phone boundaries against the corpus's labels)        target")
    print(f"  mean absolute error  {acc['mae_ms']:7.2f} ms                          <= 10 ms")
    print(f"  median               {acc['median_ms']:7.2f} ms")
    print(f"  mean signed (late +) {acc['bias_ms']:7.2f} ms")
    print(f"  within 20 ms         {100 * acc['within']:7.2f} %                           >= 90 %")
    print(f"  within 10 ms         {100 * acc['within_10ms']:7.2f} %")
    print(f"  boundaries           {acc['boundaries']:7d}; utterances with the reference's pauses: {same}; "
          f"pauses added {report['pauses_added']}, dropped {report['pauses_dropped']}")
    if "baseline" not in skip:
        base = summarize(festival_baseline(corpus, ids, args.voice, audio_s))
        fig["baseline_festival_durations"] = base
        print(f"  reference in this run, Festival's predicted durations stretched to the audio: "
              f"{base['mae_ms']:.2f} ms, {100 * base['within']:.1f} % within 20 ms")
    print("\nspeed (wall)                                                 target")
    for k, v in t.items():
        print(f"  {k:22s} {v:8.1f} s" + ("                          <= 180 s" if k == "total" else ""))
    print(f"  per hour of audio      {t['total'] / hours:8.1f} s")
    if "scaling" not in skip:
        train = [u for u in ids if inputs.split_of.get(u) == "train"]
        e1 = estep_seconds(ad, inputs, cfg, 1, "auto", train)
        e2 = estep_seconds(ad, inputs, cfg, 2, "auto", train)
        sub = train[:40]
        en = estep_seconds(ad, inputs, cfg, 1, "native", sub)
        et = estep_seconds(ad, inputs, cfg, 1, "torch", sub)
        fig["estep"] = {"jobs1_s": e1, "jobs2_s": e2, "speedup": e1 / e2, "subset": len(sub),
                        "native_s": en, "torch_s": et, "native_speedup": et / en}
        print(f"\nE-step over the train split (final model): --jobs 1 {e1:.2f} s, --jobs 2 {e2:.2f} s "
              f"(x{e1 / e2:.2f})")
        print(f"E-step on {len(sub)} utterances, one process: C kernels {en:.2f} s, PyTorch {et:.2f} s "
              f"(C x{et / en:.1f})")
    if "memory" not in skip:
        mem = memory(ad, ids)
        fig["memory_20s"] = mem
        m = mem["fb_native"]
        print(f"\nmemory, one utterance of {m['frames'] * 0.005:.1f} s ({m['frames']} frames, {m['states']} states), "
              "peak MB above the process before the call:")
        for k, v in mem.items():
            print(f"  {k:16s} {v['mb']:8.1f} MB{'' if v['ok'] else '  (failed)'}")
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2) + "\n")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
