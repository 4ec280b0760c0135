"""``sps speak``: a voice file speaks text or labels, no experiment directory needed.

::

    sps speak --text "Any sentence." --out x.wav                  # the shipped voice, its default vocoder
    sps speak --voice V.voice.pt --text "..." --out x.wav --vocoder wavenet
    sps speak --voice V --text-file sentences.txt --out wavs/     # one sentence per line -> wavs/0001.wav ...
    sps speak --voice V --labels a.lab b.lab --out wavs/          # full-context labels, no Festival
    sps speak --voice V --text "..." --out x.wav --stream         # sentence by sentence, time to first audio
    sps speak --voice V --info                                    # what the voice file holds

Options ``--speed``, ``--pitch`` (semitones), ``--postfilter`` / ``--no-postfilter``,
``--seed``, ``--batch-size``. A line or label file that cannot be spoken is reported and
skipped; the summary at the end names it. Without ``--voice`` the voice shipped with
the repository (``data/pretrained/``) speaks.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

#: the voice shipped with the repository (used when --voice is not given)
PRETRAINED = Path(__file__).resolve().parents[2] / "data" / "pretrained" / "slt_festival.voice.pt"


def add_arguments(p) -> None:
    """The options of ``sps speak`` on an argparse parser."""
    p.add_argument("--voice", type=Path, help=f"voice file (sps pack; default: the shipped {PRETRAINED.name})")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--text", help="text to speak (Festival makes the labels)")
    what.add_argument("--text-file", type=Path, help="one sentence per line -> one wav per line in the --out folder")
    what.add_argument("--labels", type=Path, nargs="+", help="full-context label file(s): no Festival")
    what.add_argument("--info", action="store_true", help="describe the voice file and exit")
    p.add_argument("--out", type=Path, help="output wav (a folder for --text-file or several --labels)")
    p.add_argument("--vocoder", help="world, source_filter, wavenet, wavernn ... (default: the voice's best-scored)")
    p.add_argument("--speed", type=float, default=1.0, help="speaking rate (> 1 faster; default 1)")
    p.add_argument("--pitch", type=float, default=0.0, help="pitch shift in semitones (default 0)")
    pf = p.add_mutually_exclusive_group()
    pf.add_argument("--postfilter", nargs="?", const=True, default=None, type=float, metavar="BETA",
                    help="mel-cepstral post-filter on (optionally its factor; default: as packed)")
    pf.add_argument("--no-postfilter", dest="postfilter", action="store_false", help="post-filter off")
    p.add_argument("--seed", type=int, default=0, help="seed of the neural vocoders' draws (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="utterances per neural-vocoder call (default 8)")
    p.add_argument("--stream", action="store_true",
                   help="speak sentence by sentence (chunk by chunk for neural vocoders) and report the time to "
                        "the first audio")


def _voice_path(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    if not PRETRAINED.exists():
        raise FileNotFoundError(f"no --voice given and the shipped voice {PRETRAINED} is missing")
    return PRETRAINED


def run(args) -> int:
    """Entry point of ``sps speak`` (``args``: the parsed options of :func:`add_arguments`)."""
    from sps.io import write_wav
    from sps.synthesis import Voice
    path = _voice_path(args.voice)
    voice = Voice.load(path)
    if args.info:
        m = voice.info.get("manifest", {})
        print(f"{path}: voice {voice.name!r}, {voice.sample_rate} Hz; sps {m.get('sps_version', '?')}, "
              f"created {m.get('created', '?')}")
        for key, value in (voice.info.get("models") or {}).items():
            if key != "vocoders":
                print(f"  {key} model: {value}")
        print(f"  vocoders: {', '.join(voice.vocoders)} (default {voice.default_vocoder}: "
              f"{(voice.info.get('defaults') or {}).get('vocoder', '')})")
        print(f"  Festival voice: {voice.festival_voice}")
        scores = voice.info.get("scores") or {}
        for what, row in (("acoustic model (natural durations)", scores.get("acoustic")),
                          ("full TTS (predicted durations, DTW)", scores.get("full_tts")),
                          *((f"vocoder {n} (copy synthesis)", r) for n, r in (scores.get("vocoders") or {}).items())):
            if row:
                mean = row.get("mean", {})
                print(f"  {what}, {scores.get('split', 'eval')} split: " + ", ".join(
                    f"{k} {mean[k]:.3g}" for k in ("mcd_db", "bap_db", "f0_rmse_hz", "f0_corr", "vuv_error_pct",
                                                    "duration_rmse_frames") if k in mean))
        return 0
    if args.text is None and args.text_file is None and args.labels is None:
        raise ValueError("nothing to speak: give --text, --text-file or --labels")
    if args.out is None:
        raise ValueError("--out is required (a wav file, or a folder for --text-file / several --labels)")
    if args.labels is not None and not (len(args.labels) == 1 and args.out.suffix.lower() == ".wav"):
        seen: dict[str, Path] = {}
        for p in args.labels:          # two files of one name would overwrite each other's audio
            if p.stem in seen:
                raise ValueError(f"{seen[p.stem]} and {p}: both would be written to "
                                 f"{args.out / (p.stem + '.wav')} (give label files distinct names)")
            seen[p.stem] = p
    name = args.vocoder or voice.default_vocoder
    runner = voice.vocoder(name)     # an unknown vocoder fails here, before any work
    why = "named" if args.vocoder else (voice.info.get("defaults") or {}).get("vocoder", "the voice's default")
    print(f"speak: voice {voice.name}, vocoder {runner.name} ({why})", file=sys.stderr)
    options = dict(speed=args.speed, pitch=args.pitch, postfilter=args.postfilter, seed=args.seed)
    if args.text is not None:
        if args.stream:
            return _stream(voice, args.text, name, args.out, options)
        wav, sr = voice.speak(args.text, name, **options)
        write_wav(args.out, wav, sr)
        print(f"speak: wrote {args.out} ({len(wav) / sr:.2f} s)")
        return 0
    if args.labels is not None and len(args.labels) == 1 and args.out.suffix.lower() == ".wav":
        wav, sr = voice.speak_labels(args.labels[0], name, **options)
        write_wav(args.out, wav, sr)
        print(f"speak: wrote {args.out} ({len(wav) / sr:.2f} s)")
        return 0
    if args.text_file is not None:
        if not args.text_file.is_file():
            raise FileNotFoundError(f"{args.text_file}: text file not found")
        lines = args.text_file.read_text(errors="replace").splitlines()
        width = max(4, len(str(len(lines))))
        items = [(f"{n:0{width}d}", f"{args.text_file}:{n}", line) for n, line in enumerate(lines, 1) if line.strip()]
    else:
        items = [(p.stem, str(p), p) for p in args.labels]
    return _many(voice, items, name, args.out, options, args.batch_size)


def _many(voice, items: list, vocoder: str, out_dir: Path, options: dict, batch_size: int) -> int:
    """Speak many sentences or label files into ``out_dir`` with a progress bar; a bad one is
    reported and skipped."""
    from tqdm import tqdm

    from sps.frontend import load_labels
    from sps.io import write_wav
    from sps.stages.runner import StageSummary
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = options.pop("seed")
    runner = voice.vocoder(vocoder)
    summary = StageSummary(desc=f"speak {out_dir}")
    bar = tqdm(total=len(items), desc="speak", unit="utt", disable=None)
    for start in range(0, len(items), max(1, batch_size)):
        ready, group = [], items[start:start + batch_size]
        texts = [item for _, _, item in group if isinstance(item, str)]
        festival = iter(voice.labels_many(texts) if texts else [])
        for stem, where, item in group:
            try:
                labels = next(festival) if isinstance(item, str) else load_labels(item)
                if isinstance(labels, Exception):
                    raise labels
                ready.append((stem, voice.parameters(labels, **options)))
            except (ValueError, FileNotFoundError, RuntimeError) as err:
                summary.failed[where] = " ".join(str(err).split())
                logger.error("%s: %s", where, summary.failed[where])
                bar.update(1)
        if ready:
            for (stem, _), wav in zip(ready, runner.waveforms([s for _, s in ready], seed=seed, batch_size=batch_size)):
                write_wav(out_dir / f"{stem}.wav", wav, voice.sample_rate)
                summary.ok += 1
            bar.update(len(ready))
    bar.close()
    print(str(summary).replace("FAILED ", ""))
    return 1 if summary.failed and not summary.ok else 0


def _stream(voice, text: str, vocoder: str, out: Path, options: dict) -> int:
    """Speak piece by piece, timing the first piece (what a player would start on)."""
    from sps.io import write_wav
    t0 = time.perf_counter()
    pieces, first = [], None
    for piece in voice.stream(text, vocoder, **options):
        if first is None:
            first = time.perf_counter() - t0
        pieces.append(piece)
    total = time.perf_counter() - t0
    wav = np.concatenate(pieces) if pieces else np.zeros(0)
    write_wav(out, wav, voice.sample_rate)
    print(f"speak: wrote {out} ({len(wav) / voice.sample_rate:.2f} s of audio in {len(pieces)} pieces); "
          f"first audio after {first:.2f} s, all after {total:.2f} s")
    return 0
