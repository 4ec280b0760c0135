"""Stage ``ingest``: recordings + transcripts in a common layout -> the experiment's data.

::

    sps ingest --exp-dir E --config conf/ingest.yaml corpus=DIR [layout=auto] [key=value ...]

**Layouts** (``layout: auto`` takes the first that matches, in this order):

``ljspeech``
    ``DIR/metadata.csv`` with ``id|text|normalized text`` lines (the normalized text
    is preferred; two fields are enough); audio ``<id>.<ext>`` in ``DIR/wavs``,
    ``DIR/wav`` or ``DIR``.
``kaldi``
    ``DIR/wav.scp`` (``utt path``; a relative path is relative to ``DIR``) and
    ``DIR/text`` (``utt transcript``). A piped command (``utt sox ... |``) is refused
    for its utterance: it would reach a shell. A ``segments`` file is an error.
``folder``
    Audio files ``<id>.<ext>`` (any format soundfile reads: ``sps.io.AUDIO_EXTENSIONS``)
    anywhere under ``DIR``, each with partner files of the same name anywhere under
    ``DIR``: ``<id>.txt`` (transcript), ``<id>.lab`` (HTS full-context labels, timed or
    not; a ``.lab`` that is not HTS labels is a plain transcript, as in MFA corpora)
    and ``<id>.TextGrid`` (an alignment, e.g. from MFA). An utterance needs a transcript
    or labels; a TextGrid comes on top (the aligner maps its times onto the transcript's
    phones). The shipped corpora (``wav/`` + ``lab/``) are of this kind.

``textgrid_dir`` adds a folder of ``<id>.TextGrid`` files (e.g. MFA's output) to any
layout. The corpus's own ``train.list``, ``dev.list`` and ``eval.list`` are used where
all three exist, else the split of ``sps prepare`` (``sps.stages.prepare.corpus_splits``).

**Audio** (``sps.io.audio``): read in any format, rate, channel count and sample width
soundfile reads; the channels averaged to mono; resampled to ``sample_rate`` with soxr
(VHQ); with ``trim``, cut to the first and last 10 ms frame within ``trim_threshold_db``
of the loudest frame, keeping ``trim_margin`` seconds either side (not for utterances
with a TextGrid, whose times must stay valid); with ``loudness_db``, scaled so that the
RMS of the same active frames is ``loudness_db`` dBFS, less where the peak would pass
``peak_db`` dBFS; written as 16-bit PCM WAV.

**Outputs** (under ``E/data/``), the interface the ``align`` stage reads::

    wav/<utt>.wav           the conditioned audio (16-bit mono, sample_rate)
    wav.scp                 utt -> that wav (absolute path)
    text                    utt transcript (Kaldi style), for utterances with a transcript
    lab_untimed.scp         utt -> the given HTS label file (the aligner ignores its times)
    textgrid.scp            utt -> the given TextGrid (used as the alignment)
    {train,dev,eval}.list   the splits
    ingest/source.scp       utt -> the source audio file
    ingest/info/<utt>.json  what was done to the audio (rates, channels, trim, gain)
    ingest/audio.tsv        the same, one line per utterance
    ingest/report.txt       the summary and one line per rejected file

Every utterance of ``wav.scp`` has a line in ``text`` or ``lab_untimed.scp`` (or both),
and may have one in ``textgrid.scp``. ``sps align`` uses an utterance's TextGrid if it has one,
else its labels, else its transcript (Festival's front end), and writes
``data/lab.scp``, after which ``sps features`` and the rest run as on a labelled corpus.
An ``.scp`` file or list of a layout no longer given is removed.

**Bad input**: each rejected file gets one line naming it and the reason (invalid id,
duplicate id, missing partner file, empty transcript, transcript with no speakable word,
unreadable transcript or labels, missing/unreadable/corrupt/empty/silent audio, NaN
samples, piped command); the rest go on, and the summary counts the reasons. More than
``--max-failed`` (a fraction) of the utterances rejected fails the stage.

**Resume**: each utterance's wav is written atomically, then its ``info/<utt>.json``,
then its record (``data/ingest/.stamps/<utt>.json``, :mod:`sps.stages.stamps`); a rerun
skips utterances whose record names the same source content and settings and whose
outputs still have their recorded digests, and redoes (and counts) the stale ones
(``--force`` redoes them all). ``--shard K/N`` converts share K of the audio; the run that finds every
utterance converted writes the lists.
"""
from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from sps.config import bind
from sps.frontend import load_labels
from sps.frontend.festival import clean_text
from sps.io import (AUDIO_EXTENSIONS, audio_info, check_id, is_valid_id, loudness_gain, read_json, read_scp,
                    read_wav, trim_bounds, write_json, write_list, write_scp, write_text, write_wav)
from sps.stages.experiment import SPLITS, Experiment
from sps.stages.prepare import corpus_splits
from sps.stages.runner import StageContext, StageFailed, run_utterances
from sps.stages.stamps import Stamps, digest, file_digest

logger = logging.getLogger(__name__)

#: reasons of rejection, in the summary's order: a message counts under the first phrase it holds
REASONS = (("invalid utterance id", "invalid id"), ("duplicate id", "duplicate id"),
           ("piped command", "piped command"), ("no audio file", "missing partner file"),
           ("no transcript", "missing partner file"), ("audio file not found", "missing audio file"),
           ("empty transcript", "empty transcript"), ("no speakable text", "no speakable word"),
           ("not UTF-8", "unreadable transcript"), ("bad labels", "bad labels"), ("bad TextGrid", "bad TextGrid"),
           ("corrupt or unreadable audio", "unreadable audio"), ("empty audio", "empty audio"),
           ("silent audio", "silent audio"), ("NaN or inf", "NaN samples"))
_HTS_CONTEXT = re.compile(r"^[^-\s]*-[^+\s]+\+")


@dataclass(frozen=True)
class IngestConfig:
    """``conf/ingest.yaml`` (``corpus=DIR`` on the command line)."""
    corpus: str | None = None           # the corpus directory
    layout: Literal["auto", "ljspeech", "kaldi", "folder"] = "auto"
    textgrid_dir: str | None = None     # a folder of <id>.TextGrid (e.g. MFA's output), any layout
    sample_rate: int = 16000            # Hz, the recipe's rate (features.sample_rate)
    trim: bool = True                   # cut leading and trailing silence
    trim_threshold_db: float = 40.0     # speech: frames within this of the loudest 10 ms frame
    trim_margin: float = 0.1            # seconds kept before and after the speech
    loudness_db: float | None = -26.0   # active speech level (dBFS) to scale to; null keeps the level
    peak_db: float = -1.0               # the loudness gain never lifts the peak above this (dBFS)
    dev_fraction: float = 0.05          # used only when the corpus has no split lists
    eval_fraction: float = 0.05
    max_utts: int | None = None         # cap per split (quick experiments, tests)

    def __post_init__(self):
        if self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be at least 1000 Hz, got {self.sample_rate}")
        if self.trim_threshold_db <= 0 or self.trim_margin < 0:
            raise ValueError(f"trim_threshold_db must be > 0 and trim_margin >= 0, got "
                             f"{self.trim_threshold_db}, {self.trim_margin}")
        if self.peak_db > 0:
            raise ValueError(f"peak_db must be <= 0 dBFS, got {self.peak_db}")
        for name in ("dev_fraction", "eval_fraction"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {getattr(self, name)}")
        if self.max_utts is not None and self.max_utts < 1:
            raise ValueError(f"max_utts must be >= 1 or null, got {self.max_utts}")

    def audio_settings(self) -> dict:
        """The settings an utterance's audio depends on (recorded in its info file)."""
        keys = ("sample_rate", "trim", "trim_threshold_db", "trim_margin", "loudness_db", "peak_db")
        return {k: getattr(self, k) for k in keys}


@dataclass
class Utterance:
    """What the corpus gives for one utterance (paths absolute, text as read)."""
    audio: str | None = None
    text: str | None = None
    text_file: str | None = None
    lab: str | None = None
    textgrid: str | None = None
    files: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ scanning
def detect_layout(root: Path) -> str:
    """The layout of the corpus at ``root`` (see the module docstring)."""
    if (root / "metadata.csv").is_file():
        return "ljspeech"
    if (root / "wav.scp").is_file() and (root / "text").is_file():
        return "kaldi"
    return "folder"


def _files(root: Path) -> list[Path]:
    """Files under ``root``, sorted, leaving out hidden files and folders."""
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _read_text_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: transcript is not UTF-8 ({err.reason} at byte {err.start})") from None


def _is_hts_labels(path: Path) -> bool:
    """True when the first non-blank line of ``path`` holds a full-context label."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    return _HTS_CONTEXT.match(line.split()[-1]) is not None
    except OSError:
        return False
    return False


def _add(utts: dict[str, Utterance], rejected: dict[str, str], utt: str, path: Path, kind: str,
         value=None) -> None:
    """Record ``path`` as the ``kind`` partner of ``utt``; a second one is a duplicate."""
    if utt in rejected:
        return
    entry = utts.setdefault(utt, Utterance())
    if getattr(entry, kind) is not None:
        rejected[utt] = f"{path}: duplicate id {utt!r} (also {getattr(entry, kind)})"
        utts.pop(utt)
        return
    setattr(entry, kind, str(value if value is not None else path))
    entry.files.append(str(path))


def scan_folder(root: Path) -> tuple[dict[str, Utterance], dict[str, str]]:
    """``<id>.<audio ext>`` with ``<id>.txt`` / ``.lab`` / ``.TextGrid`` partners under ``root``."""
    utts: dict[str, Utterance] = {}
    rejected: dict[str, str] = {}
    for path in _files(root):
        ext = path.suffix.lower()
        utt = path.stem
        if ext in AUDIO_EXTENSIONS:
            _add(utts, rejected, utt, path.resolve(), "audio")
        elif ext == ".txt" or (ext == ".lab" and not _is_hts_labels(path)):
            _add(utts, rejected, utt, path.resolve(), "text_file")
        elif ext == ".lab":
            _add(utts, rejected, utt, path.resolve(), "lab")
        elif ext == ".textgrid":
            _add(utts, rejected, utt, path.resolve(), "textgrid")
    return utts, rejected


def _audio_in(dirs: list[Path], utt: str) -> Path | None:
    for d in dirs:
        for ext in AUDIO_EXTENSIONS:
            for p in (d / f"{utt}{ext}", d / f"{utt}{ext.upper()}"):
                if p.is_file():
                    return p.resolve()
    return None


def scan_ljspeech(root: Path) -> tuple[dict[str, Utterance], dict[str, str]]:
    """``metadata.csv`` (``id|text|normalized text``) with audio in ``wavs/``, ``wav/`` or ``root``."""
    meta = root / "metadata.csv"
    utts: dict[str, Utterance] = {}
    rejected: dict[str, str] = {}
    dirs = [root / "wavs", root / "wav", root]
    for n, line in enumerate(_read_text_file(meta).splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        utt = fields[0].strip()
        where = f"{meta}:{n}"
        if len(fields) < 2:
            rejected[utt or where] = f"{where}: no transcript (expected 'id|text|normalized text')"
            continue
        text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
        if utt in utts or utt in rejected:
            rejected[utt] = f"{where}: duplicate id {utt!r}"
            utts.pop(utt, None)
            continue
        utts[utt] = Utterance(text=text, text_file=where, files=[where])
        audio = _audio_in(dirs, utt) if is_valid_id(utt) else None
        if audio is not None:
            utts[utt].audio = str(audio)
            utts[utt].files.append(str(audio))
    return utts, rejected


def scan_kaldi(root: Path) -> tuple[dict[str, Utterance], dict[str, str]]:
    """``wav.scp`` (paths only) + ``text``."""
    if (root / "segments").exists():
        raise ValueError(f"{root / 'segments'}: Kaldi segments are not supported; cut the recordings "
                         "into one file per utterance first")
    utts: dict[str, Utterance] = {}
    rejected: dict[str, str] = {}
    for name, kind in (("wav.scp", "audio"), ("text", "text")):
        path = root / name
        for n, line in enumerate(_read_text_file(path).splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split(maxsplit=1)
            utt, value = parts[0], parts[1].strip() if len(parts) > 1 else ""
            where = f"{path}:{n}"
            if kind == "audio":
                if value.endswith("|") or value.startswith("|"):
                    rejected[utt] = (f"{where}: piped command refused (it would run in a shell); "
                                     "convert the audio to files first")
                    utts.pop(utt, None)
                    continue
                if not value:
                    rejected[utt] = f"{where}: no audio file given"
                    continue
                audio = Path(value) if Path(value).is_absolute() else root / value
                _add(utts, rejected, utt, audio.resolve(), "audio")
            else:
                if utt in rejected:
                    continue
                entry = utts.setdefault(utt, Utterance())
                if entry.text is not None:
                    rejected[utt] = f"{where}: duplicate id {utt!r} (also at {entry.text_file})"
                    utts.pop(utt)
                    continue
                entry.text, entry.text_file = value, where
                entry.files.append(where)
    return utts, rejected


def scan(root: Path, layout: str, textgrid_dir: Path | None = None
         ) -> tuple[dict[str, Utterance], dict[str, str]]:
    """All utterances of the corpus and the rejected names with their reasons."""
    scanner = {"ljspeech": scan_ljspeech, "kaldi": scan_kaldi, "folder": scan_folder}[layout]
    utts, rejected = scanner(root)
    if textgrid_dir is not None:
        if not textgrid_dir.is_dir():
            raise FileNotFoundError(f"{textgrid_dir}: TextGrid folder not found")
        for path in _files(textgrid_dir):
            if path.suffix.lower() == ".textgrid" and path.stem in utts:
                _add(utts, rejected, path.stem, path.resolve(), "textgrid")
    return utts, rejected


def check_utterance(utt: str, entry: Utterance) -> None:
    """Validate everything but the audio samples; fill ``entry.text``. ValueError naming the file."""
    names = ", ".join(entry.files)
    if not is_valid_id(utt):
        raise ValueError(f"{names}: invalid utterance id {utt!r} (allowed: letters, digits, '_', '.', '-'; "
                         "no spaces or separators, no leading dot)")
    if entry.audio is None:
        raise ValueError(f"{names}: no audio file for {utt!r}")
    if entry.text is None and entry.text_file is not None:
        entry.text = _read_text_file(Path(entry.text_file))
    if entry.text is None and entry.lab is None:
        raise ValueError(f"{entry.audio}: no transcript or labels for {utt!r} (expected {utt}.txt or {utt}.lab"
                         + ("; a TextGrid needs the transcript too" if entry.textgrid else "") + ")")
    if entry.text is not None:
        where = entry.text_file or entry.audio
        if not entry.text.strip():
            raise ValueError(f"{where}: empty transcript")
        try:
            clean_text(entry.text)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        entry.text = " ".join(entry.text.split())
    if entry.lab is not None:
        try:
            labels = load_labels(entry.lab)
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(f"bad labels: {err}") from None
        bad = [c for c in labels.contexts if not _HTS_CONTEXT.match(c)]
        if bad:
            raise ValueError(f"bad labels: {entry.lab}: {bad[0][:40]!r} is not an HTS full-context label")
    if entry.textgrid is not None:
        head = Path(entry.textgrid).read_bytes()[:200]
        if b"TextGrid" not in head and b"T\x00e\x00x\x00t\x00G" not in head:
            raise ValueError(f"bad TextGrid: {entry.textgrid}: not a Praat TextGrid file")
    if not Path(entry.audio).is_file():
        raise FileNotFoundError(f"{entry.audio}: audio file not found")


def reason(message: str) -> str:
    """The summary's name for the reason of a rejection message."""
    for phrase, name in REASONS:
        if phrase in message:
            return name
    return "other"


# ------------------------------------------------------------------------------ audio
def condition_audio(path: str | Path, cfg: IngestConfig, trim: bool = True) -> tuple[np.ndarray, dict]:
    """Read, mono, resample, trim and level one file; return the signal and what was done."""
    info = audio_info(path)
    x, sr = read_wav(path, cfg.sample_rate, resample=True)
    start, end = trim_bounds(x, sr, cfg.trim_threshold_db, cfg.trim_margin) if cfg.trim and trim else (0, x.size)
    x = x[start:end]
    gain, limited = (0.0, False)
    if cfg.loudness_db is not None:
        gain, limited = loudness_gain(x, sr, cfg.loudness_db, cfg.peak_db, cfg.trim_threshold_db)
        x = x * 10.0 ** (gain / 20.0)
    record = {"source_rate": info.sample_rate, "source_channels": info.channels,
              "source_subtype": info.subtype, "source_seconds": round(info.seconds, 6),
              "trim_start": round(start / sr, 6), "trim_end": round(end / sr, 6),
              "gain_db": round(gain, 3), "limited": limited, "seconds": round(x.size / sr, 6)}
    return x, record


def _info_path(exp: Experiment, utt: str) -> Path:
    return exp.data_dir / "ingest" / "info" / f"{check_id(utt)}.json"


def _wav_path(exp: Experiment, utt: str) -> Path:
    return exp.data_dir / "wav" / f"{check_id(utt)}.wav"


@functools.lru_cache(maxsize=4)
def _sources(path: str, mtime: float) -> dict[str, str]:
    return read_scp(path)


def _source_table(exp: Experiment) -> dict[str, str]:
    path = exp.data_dir / "ingest" / "source.scp"
    return _sources(str(path), path.stat().st_mtime)


def process_utterance(utt: str, *, exp: Experiment, cfg: IngestConfig, keep: frozenset) -> None:
    """Condition the audio of ``utt`` into ``data/wav/<utt>.wav`` and record it (picklable)."""
    source = _source_table(exp)[utt]
    x, record = condition_audio(source, cfg, trim=utt not in keep)
    write_wav(_wav_path(exp, utt), x, cfg.sample_rate)
    write_json(_info_path(exp, utt), {"utt": utt, "source": source, "settings": cfg.audio_settings(),
                                      "trimmed": utt not in keep and cfg.trim, **record})


def stamps(exp: Experiment, cfg: IngestConfig, keep: frozenset) -> Stamps:
    """The records of this stage (:mod:`sps.stages.stamps`): an utterance's key is the
    content of its source audio and the audio settings, so a source re-recorded in place
    or a damaged wav or info file is converted again."""
    sources = _source_table(exp)
    settings = cfg.audio_settings()
    return Stamps(exp.root, exp.data_dir / "ingest" / ".stamps",
                  outputs=lambda utt: [_wav_path(exp, utt), _info_path(exp, utt)],
                  key=lambda utt: digest({"source": file_digest(sources[utt]), "settings": settings,
                                          "trimmed": utt not in keep and cfg.trim}))


# ------------------------------------------------------------------------------ the stage
def run(ctx: StageContext) -> dict:
    """Stage entry point (``sps ingest``).

    Returns
    -------
    summary : dict
        ``utterances`` (ingested), ``rejected`` (name -> message), ``reasons`` (counts),
        ``splits`` (name -> count), ``layout``.
    """
    cfg = bind(IngestConfig, ctx.config, "ingest")
    if not cfg.corpus:
        raise ValueError("ingest: no corpus given (corpus=DIR)")
    root = Path(cfg.corpus)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: corpus directory not found")
    layout = detect_layout(root) if cfg.layout == "auto" else cfg.layout
    utts, rejected = scan(root, layout, Path(cfg.textgrid_dir) if cfg.textgrid_dir else None)
    for utt, entry in list(utts.items()):
        try:
            check_utterance(utt, entry)
        except (ValueError, FileNotFoundError, OSError) as err:
            rejected[utt] = str(err)
            del utts[utt]
    if not utts:
        raise ValueError(f"{root}: no usable utterance in the {layout} layout"
                         + (f" ({len(rejected)} rejected; first: {next(iter(rejected.values()))})"
                            if rejected else " (no audio files found)"))
    exp = ctx.exp
    data = exp.data_dir
    ids = sorted(utts)
    total = len(ids) + len(rejected)
    planned = corpus_splits(root, ids, cfg.dev_fraction, cfg.eval_fraction, cfg.max_utts)
    ids = sorted({u for s in planned.values() for u in s})
    write_scp(data / "ingest" / "source.scp", {u: utts[u].audio for u in ids})
    keep = frozenset(u for u in ids if utts[u].textgrid is not None)
    if keep and cfg.trim:
        logger.warning("%d utterances have a TextGrid: their audio is not trimmed (its times must stay valid)",
                       len(keep))
    process = functools.partial(process_utterance, exp=exp, cfg=cfg, keep=keep)
    summary = run_utterances(ids, process, desc="ingest audio", jobs=ctx.jobs, shard=ctx.shard,
                             stamps=stamps(exp, cfg, keep), force=ctx.force, max_failed=None)
    for utt, msg in summary.failed.items():
        rejected[utt] = msg.split(": ", 1)[1] if msg.startswith(("ValueError: ", "FileNotFoundError: ")) else msg
    ok = [u for u in ids if u not in summary.failed]
    if ctx.shard is not None and not all(_info_path(exp, u).exists() for u in ok):
        print(f"ingest: shard {ctx.shard[0]}/{ctx.shard[1]} done; the lists are written by the run that "
              "finds every utterance converted")
        return {"utterances": len(ok), "rejected": rejected, "layout": layout}

    infos = {u: read_json(_info_path(exp, u)) for u in ok}
    splits = {s: [u for u in planned[s] if u not in summary.failed] for s in SPLITS}
    used = ok
    reasons = Counter(reason(m) for m in rejected.values())
    report = _report(root, layout, used, infos, rejected, reasons, total)
    write_text(data / "ingest" / "report.txt", report + "\n")
    for name, msg in sorted(rejected.items()):
        print(f"ingest: rejected {name}: {' '.join(msg.split())}")
    if rejected and len(rejected) > ctx.max_failed * total:
        raise StageFailed(f"ingest: {len(rejected)} of {total} utterances rejected (more than --max-failed "
                          f"{ctx.max_failed:g}); see {data / 'ingest' / 'report.txt'}")
    _write_tables(exp, utts, infos, used, splits)
    print(report.splitlines()[0])
    return {"utterances": len(used), "rejected": rejected, "reasons": dict(reasons),
            "splits": {s: len(v) for s, v in splits.items()}, "layout": layout}


def _report(root: Path, layout: str, used: list[str], infos: dict, rejected: dict[str, str],
            reasons: Counter, total: int) -> str:
    minutes = sum(infos[u]["seconds"] for u in used) / 60.0
    head = (f"ingest: {root} ({layout} layout): {len(used)} utterances ({minutes:.1f} min) ingested, "
            f"{len(rejected)} of {total} rejected"
            + (" (" + ", ".join(f"{n} {r}" for r, n in reasons.most_common()) + ")" if rejected else ""))
    lines = [head]
    rates = Counter(infos[u]["source_rate"] for u in used)
    channels = Counter(infos[u]["source_channels"] for u in used)
    lines.append("  source rates: " + ", ".join(f"{r} Hz x {n}" for r, n in sorted(rates.items()))
                 + "; channels: " + ", ".join(f"{c} x {n}" for c, n in sorted(channels.items())))
    if used:
        cut = sum(infos[u]["source_seconds"] - infos[u]["seconds"] for u in used)
        gains = [infos[u]["gain_db"] for u in used]
        limited = sum(infos[u]["limited"] for u in used)
        lines.append(f"  trimmed: {cut:.1f} s in all; gain {min(gains):+.1f} to {max(gains):+.1f} dB"
                     f" ({limited} limited by the peak)")
    lines += [f"  rejected {name}: {' '.join(msg.split())}" for name, msg in sorted(rejected.items())]
    return "\n".join(lines)


def _write_tables(exp: Experiment, utts: dict[str, Utterance], infos: dict, used: list[str],
                  splits: dict[str, list[str]]) -> None:
    data = exp.data_dir
    for s in SPLITS:
        write_list(data / f"{s}.list", splits[s])
    write_scp(data / "wav.scp", {u: str(_wav_path(exp, u).resolve()) for u in used})
    text = {u: utts[u].text for u in used if utts[u].text is not None}
    for name, table in (("lab_untimed.scp", {u: utts[u].lab for u in used if utts[u].lab}),
                        ("textgrid.scp", {u: utts[u].textgrid for u in used if utts[u].textgrid})):
        if table:
            write_scp(data / name, table)
        elif (data / name).exists():
            (data / name).unlink()
    if text:
        write_text(data / "text", "".join(f"{check_id(u)} {t}\n" for u, t in text.items()))
    elif (data / "text").exists():
        (data / "text").unlink()
    columns = ("source_rate", "source_channels", "source_subtype", "source_seconds", "trim_start", "trim_end",
               "gain_db", "limited", "seconds")
    write_text(data / "ingest" / "audio.tsv", "utt\t" + "\t".join(columns) + "\tsource\n" + "".join(
        f"{u}\t" + "\t".join(str(infos[u][c]) for c in columns) + f"\t{infos[u]['source']}\n" for u in used))
    lab = data / "lab.scp"
    if lab.exists() and set(read_scp(lab)) != set(used):
        logger.warning("%s holds other utterances than this ingestion: run the align stage again", lab)
