#!/usr/bin/env python3
"""Regenerate the shipped corpora: our sentences -> a Festival voice -> FLAC + HTS labels.

For each ``<id><TAB><text>`` line of the sentence file(s), a Festival voice
synthesises the text, the waveform is resampled to 16 kHz where needed and written as
16-bit mono FLAC to ``wav/<id>.flac``, and Festival's HTS full-context labels
(``hts_dump_feats``: one ``start end context`` line per phone, times in 100 ns) go to
``lab/<id>.lab``. ``metadata.csv`` (LJSpeech style, ``id|text|text``) holds the
transcripts, so ``sps ingest`` reads the corpus from wav + text alone. Split lists
``train.list``, ``dev.list`` and ``eval.list`` are rewritten every run: the last
``--held-out`` fraction of the ids (in file order, at least ``2 * --min-held-out``)
alternates between dev and eval; the rest is train.

``--voice`` picks the voice (:data:`VOICES`):

``slt`` (default, ``data/slt_festival``)
    CMU US SLT ARCTIC HTS voice (female, statistical parametric, 32 kHz); its label
    times lie on the 5 ms frame grid (snapped, checked).
``kal`` (``data/kal_festival``, ids ``kal_<n>`` for ``slt_<n>``)
    The kal diphone voice (``festvox-kallpc16k``: male US English, residual-excited LPC
    from recorded diphones, 16 kHz). The HTS voice is loaded first because its files
    define ``hts_dump_feats``, then ``(voice_kal_diphone)``: the dump carries the diphone
    voice's own timings, which are not on the 5 ms grid (kept to 100 ns). Its waveform
    runs 20-35 ms past the last label (the overlap-add tail of the final silence): the
    final pause is extended to the waveform's end.

Needs Festival and the voices (Debian/Ubuntu: ``apt-get install festival
festvox-us-slt-hts festvox-kallpc16k``) plus numpy, scipy, soundfile and sps (for
the Scheme quoting of the text). Typical use::

    python data/slt_festival/make_corpus.py --jobs 2            # make what is missing
    python data/slt_festival/make_corpus.py --force             # redo everything
    python data/slt_festival/make_corpus.py --voice kal --jobs 2 # the diphone corpus
    python data/slt_festival/make_corpus.py \\
        --sentences data/slt_festival/sentences.txt more.txt     # enlarge

Utterances whose FLAC and label both exist are skipped unless ``--force``.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from typing import NamedTuple

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

HERE = Path(__file__).resolve().parent
try:
    from sps.frontend.festival import scheme_string
except ImportError:                     # run from a checkout without installing sps
    sys.path.insert(0, str(HERE.parents[1]))
    from sps.frontend.festival import scheme_string

logger = logging.getLogger("make_corpus")


class Voice(NamedTuple):
    """A corpus voice: the Festival voices to load (in order), id prefix, default folder,
    whether its label times lie on the 5 ms grid, and the apt package that has it."""
    festival: tuple[str, ...]
    prefix: str
    out: Path
    on_grid: bool
    package: str


VOICES = {
    "slt": Voice(("cmu_us_slt_arctic_hts",), "slt", HERE, True, "festvox-us-slt-hts"),
    # the HTS voice first: its files define hts_dump_feats
    "kal": Voice(("cmu_us_slt_arctic_hts", "kal_diphone"), "kal", HERE.parent / "kal_festival", False,
                 "festvox-kallpc16k"),
}
SAMPLE_RATE = 16000
FRAME_100NS = 50000          # one 5 ms frame in HTK 100 ns units
#: how far (s) the diphone voice's waveform may run past its last label (its final overlap-add tail)
MAX_TAIL = 0.05
ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def install_hint(voice: Voice) -> str:
    return ("Install Festival and the voices, e.g. on Debian/Ubuntu:\n"
            f"    sudo apt-get install festival festvox-us-slt-hts {voice.package}")


def corpus_id(utt: str, voice: Voice) -> str:
    """The corpus id of sentence ``utt`` for ``voice``: ``slt_0005`` -> ``kal_0005``."""
    stem = utt[4:] if utt.startswith("slt_") else utt
    return utt if voice.prefix == "slt" else f"{voice.prefix}_{stem}"


def read_sentences(paths: list[Path]) -> dict[str, str]:
    """Read ``id<TAB>text`` lines from one or more files, in order.

    Blank lines and lines starting with ``#`` are ignored. Raises ValueError naming
    ``file:line`` for a malformed line, a bad or duplicated id, or empty text.
    """
    sentences: dict[str, str] = {}
    origin: dict[str, str] = {}
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: sentence file not found")
        for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            where = f"{path}:{n}"
            if "\t" not in raw:
                raise ValueError(f"{where}: expected '<id><TAB><text>', got {raw!r}")
            utt, text = raw.split("\t", 1)
            utt, text = utt.strip(), " ".join(text.split())
            if not ID_PATTERN.match(utt):
                raise ValueError(f"{where}: bad utterance id {utt!r} (letters, digits, '_', '.', '-')")
            if not text:
                raise ValueError(f"{where}: empty text for {utt}")
            if utt in sentences:
                raise ValueError(f"{where}: duplicate id {utt} (first at {origin[utt]})")
            sentences[utt], origin[utt] = text, where
    if not sentences:
        raise ValueError(f"no sentences in {', '.join(map(str, paths))}")
    return sentences


def check_festival(voice: Voice) -> str:
    """Return the festival executable; exit with an install hint if it or a voice is missing."""
    exe = shutil.which("festival")
    if exe is None:
        sys.exit(f"error: 'festival' not found on PATH.\n{install_hint(voice)}")
    for name in voice.festival:
        probe = f"(if (member '{name} (voice.list)) (format t \"voice-ok\\n\") (format t \"voice-missing\\n\"))"
        result = subprocess.run([exe, "--batch", probe], capture_output=True, text=True, timeout=120)
        if "voice-ok" not in result.stdout:
            sys.exit(f"error: Festival has no voice {name} ({result.stdout.strip() or result.stderr.strip()}).\n"
                     f"{install_hint(voice)}")
    return exe


def festival_script(items: list[tuple[str, str]], tmp: Path, voice: Voice = VOICES["slt"]) -> str:
    """Scheme program synthesising ``items`` into ``tmp/<id>.wav`` and ``tmp/<id>.lab``.

    Each sentence is wrapped in ``unwind-protect`` so one failure does not stop the
    batch. ``Utterance`` does not evaluate its arguments, hence the ``eval``. Ids,
    text and paths reach Scheme only as quoted strings.
    """
    lines = [f"(voice_{name})" for name in voice.festival] + [
             "(define (sps_synth id text wavfile labfile)",
             "  (unwind-protect",
             "    (let ((utt (eval (list 'Utterance 'Text text))))",  # Utterance quotes its arguments
             "      (utt.synth utt)",
             "      (utt.save.wave utt wavfile 'riff)",
             "      (hts_dump_feats utt hts_feats_list labfile))",
             "    (format stderr \"sps-failed %s\\n\" id)))"]
    for utt, text in items:
        lines.append(f"(sps_synth {scheme_string(utt)} {scheme_string(text)} "
                     f"{scheme_string(str(tmp / (utt + '.wav')))} {scheme_string(str(tmp / (utt + '.lab')))})")
    return "\n".join(lines) + "\n"


def phone_of(context: str) -> str:
    """Current phone of an HTS full-context label (``pp^p-c+n=nn@...``)."""
    match = re.match(r"^[^-]*-([^+]+)\+", context)
    return match.group(1) if match else ""


def snap_to_frame(t: float) -> int:
    """Round a time in 100 ns to the 5 ms frame grid of the HTS voice.

    Festival prints ``seconds * 1e7`` computed in floating point, so frame boundaries
    come out a few units (< 1 us) off; anything further off is an error.
    """
    snapped = int(round(t / FRAME_100NS)) * FRAME_100NS
    if abs(t - snapped) > 100:
        raise ValueError(f"time {t:.0f} (100 ns) is not on the 5 ms frame grid")
    return snapped


def convert_labels(src: Path, num_samples: int, sample_rate: int,
                   on_grid: bool = True) -> list[tuple[int, int, str]]:
    """Parse Festival's label dump and check it against the waveform.

    Returns ``(start, end, context)`` with integer times in 100 ns, snapped to the
    5 ms frame grid (``on_grid``), else rounded to 100 ns with the last pause extended
    to the waveform's end. Raises ValueError naming the file for malformed lines, times
    off the grid, gaps or overlaps, a first/last phone that is not ``pau``, or an end
    time off the waveform duration by more than 5 ms (on the grid), or before it or more
    than :data:`MAX_TAIL` after it (off the grid).
    """
    rows = []
    for n, raw in enumerate(src.read_text().splitlines(), 1):
        if not raw.strip():
            continue
        parts = raw.split()
        if len(parts) != 3:
            raise ValueError(f"{src.name}:{n}: expected 'start end context', got {raw!r}")
        try:
            start, end = (snap_to_frame(float(t)) if on_grid else int(round(float(t))) for t in parts[:2])
        except ValueError as err:
            raise ValueError(f"{src.name}:{n}: {err}") from None
        if end <= start or (rows and start != rows[-1][1]) or (not rows and start != 0):
            raise ValueError(f"{src.name}:{n}: segment {start} {end} does not continue the previous one")
        rows.append((start, end, parts[2]))
    if not rows:
        raise ValueError(f"{src.name}: empty label dump")
    for where, row in (("first", rows[0]), ("last", rows[-1])):
        if phone_of(row[2]) != "pau":
            raise ValueError(f"{src.name}: {where} phone is {phone_of(row[2])!r}, expected 'pau'")
    duration = num_samples / sample_rate * 1e7
    tail = duration - rows[-1][1]
    if (abs(tail) > FRAME_100NS) if on_grid else not -FRAME_100NS <= tail <= MAX_TAIL * 1e7:
        raise ValueError(f"{src.name}: labels end at {rows[-1][1] * 1e-7:.4f} s "
                         f"but the waveform lasts {num_samples / sample_rate:.4f} s")
    if not on_grid:
        rows[-1] = (rows[-1][0], int(round(duration)), rows[-1][2])
    return rows


def replace_atomically(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def store(utt: str, tmp: Path, out: Path, voice: Voice = VOICES["slt"]) -> float:
    """Resample ``tmp/<utt>.wav``, check and store wav + labels; return the duration in s."""
    x, sr = sf.read(str(tmp / f"{utt}.wav"), dtype="float64")
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{utt}: Festival wrote audio of shape {x.shape}, expected mono")
    g = math.gcd(sr, SAMPLE_RATE)
    y = resample_poly(x, SAMPLE_RATE // g, sr // g) if sr != SAMPLE_RATE else x
    rows = convert_labels(tmp / f"{utt}.lab", y.size, SAMPLE_RATE, voice.on_grid)
    replace_atomically(out / "wav" / f"{utt}.flac",
                       lambda p: sf.write(str(p), np.clip(y, -1.0, 1.0), SAMPLE_RATE,
                                          subtype="PCM_16", format="FLAC"))
    text = "".join(f"{s} {e} {c}\n" for s, e, c in rows)
    replace_atomically(out / "lab" / f"{utt}.lab", lambda p: p.write_text(text))
    return y.size / SAMPLE_RATE


def run_batch(exe: str, items: list[tuple[str, str]], out: Path, voice: Voice = VOICES["slt"]) -> dict[str, str]:
    """Synthesise one batch in one Festival process; return {utt: error} for failures."""
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="sps_festival_") as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "batch.scm"
        script.write_text(festival_script(items, tmp, voice))
        try:
            result = subprocess.run([exe, "-b", str(script)], capture_output=True, text=True,
                                    timeout=120 + 20 * len(items))
            log = (result.stderr + result.stdout).strip()
        except subprocess.TimeoutExpired:
            log = "festival timed out"
        for utt, _ in items:
            if not (tmp / f"{utt}.wav").exists() or not (tmp / f"{utt}.lab").exists():
                failed[utt] = f"Festival produced no output ({log[-300:] or 'no message'})"
                continue
            try:
                store(utt, tmp, out, voice)
            except (ValueError, RuntimeError, OSError) as err:
                failed[utt] = str(err)
    return failed


def write_splits(ids: list[str], out: Path, held_out: float, min_held_out: int) -> dict[str, list[str]]:
    """Write train/dev/eval lists: the last ids (in order) alternate dev/eval, the rest is train."""
    n_held = max(2 * min_held_out, math.ceil(held_out * len(ids)))
    n_held += n_held % 2
    if n_held >= len(ids):
        raise ValueError(f"{len(ids)} utterances are too few for {n_held} held-out ones "
                         f"(--held-out {held_out}, --min-held-out {min_held_out})")
    held = ids[-n_held:]
    splits = {"train": ids[:-n_held], "dev": held[0::2], "eval": held[1::2]}
    for name, members in splits.items():
        replace_atomically(out / f"{name}.list", lambda p, m=members: p.write_text("".join(u + "\n" for u in m)))
    return splits


def write_metadata(sentences: dict[str, str], out: Path) -> None:
    """``metadata.csv``, LJSpeech style (``id|text|text``): the transcripts for ``sps ingest``."""
    for utt, text in sentences.items():
        if "|" in text:
            raise ValueError(f"{utt}: text holds '|', the metadata.csv separator: {text!r}")
    replace_atomically(out / "metadata.csv",
                       lambda p: p.write_text("".join(f"{u}|{t}|{t}\n" for u, t in sentences.items())))


def summary(splits: dict[str, list[str]], out: Path) -> str:
    """Counts and durations per split, measured from the FLAC files."""
    lines = [f"{'split':6s} {'utts':>5s} {'minutes':>8s}"]
    total_n, total_s = 0, 0.0
    for name, members in splits.items():
        seconds = sum(sf.info(str(out / "wav" / f"{u}.flac")).duration for u in members)
        total_n, total_s = total_n + len(members), total_s + seconds
        lines.append(f"{name:6s} {len(members):5d} {seconds / 60:8.2f}")
    lines.append(f"{'total':6s} {total_n:5d} {total_s / 60:8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=Path, nargs="+", default=[HERE / "sentences.txt"],
                        help="'<id><TAB><text>' files, read in order (default: sentences.txt beside this script)")
    parser.add_argument("--voice", choices=sorted(VOICES), default="slt",
                        help="slt: the SLT HTS voice (default); kal: the kal diphone voice")
    parser.add_argument("--out", type=Path, help="corpus directory (default: beside this script for slt, "
                        "data/kal_festival for kal)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel Festival processes")
    parser.add_argument("--batch-size", type=int, default=20, help="sentences per Festival process")
    parser.add_argument("--held-out", type=float, default=0.1, help="fraction of ids for dev + eval")
    parser.add_argument("--min-held-out", type=int, default=15, help="minimum utterances in dev and in eval")
    parser.add_argument("--force", action="store_true", help="resynthesise utterances that already exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    voice = VOICES[args.voice]
    sentences = {corpus_id(u, voice): t for u, t in read_sentences(args.sentences).items()}
    out = args.out or voice.out
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "lab").mkdir(parents=True, exist_ok=True)
    todo = [(u, t) for u, t in sentences.items()
            if args.force or not ((out / "wav" / f"{u}.flac").exists() and (out / "lab" / f"{u}.lab").exists())]
    stale = sorted({p.stem for p in (out / "wav").glob("*.flac")} - set(sentences))
    if stale:
        logger.warning("%d files in %s/wav have no sentence (e.g. %s); left alone", len(stale), out, stale[0])

    failed: dict[str, str] = {}
    t0 = time.time()
    if todo:
        exe = check_festival(voice)
        batches = [todo[i:i + args.batch_size] for i in range(0, len(todo), args.batch_size)]
        logger.info("synthesising %d of %d sentences in %d batches with %d jobs",
                    len(todo), len(sentences), len(batches), args.jobs)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = [pool.submit(run_batch, exe, batch, out, voice) for batch in batches]
            for done, future in enumerate(as_completed(futures), 1):
                failed.update(future.result())
                logger.info("batch %d/%d done (%.0f s)", done, len(batches), time.time() - t0)
    logger.info("%d synthesised, %d skipped (done), %d failed",
                len(todo) - len(failed), len(sentences) - len(todo), len(failed))
    for utt, message in sorted(failed.items()):
        logger.error("%s: %s", utt, message)
    if failed:
        return 1
    splits = write_splits(list(sentences), out, args.held_out, args.min_held_out)
    write_metadata(sentences, out)
    print(summary(splits, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
