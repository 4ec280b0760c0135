"""Benchmark: linguistic features (sps.frontend) vs a naive Merlin-style baseline.

Usage::

    python benchmarks/frontend.py [--lab-dir DIR] [--max-utts N] [--naive-utts M]

Labels: ``--lab-dir``, else the shipped corpus ``data/slt_festival/lab``, else a few
sentences labelled here with Festival. Questions: the shipped Festival question file.

Measured in the same run, utterances per second, including label reading:

* ``sps phone``: ``load_labels`` + ``linguistic_features`` (phone level) + ``duration_features``
* ``sps frame``: ``load_labels`` + ``linguistic_features(frame_level=True)`` (5 ms frames,
  6 positional features)
* ``naive phone``: for each label, each question, each pattern a precompiled
  ``re.fullmatch`` (``re.search`` for CQS and star-free patterns), no sharing or caching
* ``naive frame``: naive phone + a Python loop building the frame rows

Both paths are checked to give identical matrices. Each rate is the best of
``--repeat`` passes.
"""
from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sps.frontend import (DEFAULT_QUESTION_FILE, duration_features, linguistic_features,  # noqa: E402
                          load_labels, load_questions, pattern_to_regex)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Would you like a cup of tea before we leave for the station?",
    "Twenty seven people arrived at half past nine in the morning.",
    "In the middle of the night, the old clock stopped ticking.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "My brother and I walked to the river, but it was frozen.",
    "How many books can you carry to the library on Thursday?",
]


def festival_examples(out_dir: Path) -> list[Path]:
    if shutil.which("festival") is None:
        sys.exit("no labels: give --lab-dir, ship data/slt_festival, or install festival")
    paths = []
    for i, text in enumerate(SENTENCES):
        path = out_dir / f"ex{i:02d}.lab"
        script = out_dir / "run.scm"
        script.write_text(f'(voice_cmu_us_slt_arctic_hts)\n(set! utt (Utterance Text "{text}"))\n'
                          f'(utt.synth utt)\n(hts_dump_feats utt hts_feats_list "{path}")\n')
        subprocess.run(["festival", "-b", str(script)], check=True, stdin=subprocess.DEVNULL,
                       capture_output=True)
        paths.append(path)
    return paths


class Naive:
    """One precompiled regex per pattern, tried on every label: the textbook loop."""

    def __init__(self, questions):
        def compile_binary(p):
            body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p)
            return re.compile(body).fullmatch if "*" in p else re.compile(body).search
        self.binary = [[compile_binary(p) for p in q.patterns] for q in questions.binary]
        self.numeric = [(re.compile(pattern_to_regex(q.patterns[0], True)), q.default) for q in questions.numeric]

    def phone(self, contexts):
        rows = []
        for c in contexts:
            row = [1.0 if any(m(c) for m in matchers) else 0.0 for matchers in self.binary]
            for rx, default in self.numeric:
                m = rx.search(c)
                row.append(float(m.group(1)) if m else default)
            rows.append(row)
        return np.array(rows, dtype=np.float32)

    def frame(self, labels, frame_shift=50000):
        phone = self.phone(labels.contexts)
        rows = []
        for t in range(len(labels)):
            n = round(labels.end[t] / frame_shift) - round(labels.start[t] / frame_shift)
            for i in range(n):
                r = i / n
                cc = [math.exp(-(r - mu) ** 2 / 0.32) / (0.4 * math.sqrt(2 * math.pi)) for mu in (0.0, 0.5, 1.0)]
                rows.append(list(phone[t]) + [(i + 1) / n, (n - i) / n, n] + cc)
        return np.array(rows, dtype=np.float32)


def rate(fn, paths, repeat):
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        best = min(best, time.perf_counter() - t0)
    return len(paths) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lab-dir", type=Path)
    ap.add_argument("--max-utts", type=int, default=200)
    ap.add_argument("--naive-utts", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    lab_dir = args.lab_dir or (ROOT / "data" / "slt_festival" / "lab")
    if lab_dir.is_dir() and any(lab_dir.glob("*.lab")):
        paths, source = sorted(lab_dir.glob("*.lab"))[:args.max_utts], str(lab_dir)
    else:
        paths, source = festival_examples(Path(tmp.name)), "festival examples (generated now)"
    qs = load_questions(DEFAULT_QUESTION_FILE)
    naive = Naive(qs)
    sub = paths[:args.naive_utts]
    for p in sub:  # same answers
        lab = load_labels(p)
        np.testing.assert_array_equal(linguistic_features(lab, qs), naive.phone(lab.contexts))
        np.testing.assert_allclose(linguistic_features(lab, qs, frame_level=True, subphone_features="phone"),
                                   naive.frame(lab), rtol=1e-6)
    phones = sum(len(load_labels(p)) for p in paths)
    frames = sum(load_labels(p).num_frames() for p in paths)

    def ours_phone(p):
        lab = load_labels(p)
        linguistic_features(lab, qs)
        duration_features(lab)

    results = [
        ("sps phone", len(paths), rate(ours_phone, paths, args.repeat)),
        ("sps frame", len(paths), rate(lambda p: linguistic_features(load_labels(p), qs, frame_level=True),
                                       paths, args.repeat)),
        ("naive phone", len(sub), rate(lambda p: naive.phone(load_labels(p).contexts), sub, args.repeat)),
        ("naive frame", len(sub), rate(lambda p: naive.frame(load_labels(p)), sub, args.repeat)),
    ]
    print(f"labels: {source}: {len(paths)} utterances, {phones / len(paths):.1f} phones and "
          f"{frames / len(paths):.0f} frames per utterance on average")
    print(f"questions: {DEFAULT_QUESTION_FILE.name}: {len(qs.binary)} QS "
          f"({sum(len(q.patterns) for q in qs.binary)} patterns) + {len(qs.numeric)} CQS")
    print(f"{'method':<12} {'utts':>5} {'utt/s':>9}")
    for name, n, r in results:
        print(f"{name:<12} {n:>5} {r:>9.1f}")
    print(f"speed-up phone level: {results[0][2] / results[2][2]:.1f}x, "
          f"frame level: {results[1][2] / results[3][2]:.1f}x")
    tmp.cleanup()


if __name__ == "__main__":
    main()
