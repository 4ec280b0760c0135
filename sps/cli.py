"""The ``sps`` command: one subcommand per recipe stage.

Every stage takes the same options::

    sps <stage> --exp-dir exp/slt --config conf/<stage>.yaml [--jobs N] [--shard K/N]
                [--force] [--debug] [key=value | section.key=value ...]

and calls the function named in :data:`STAGES` with a
:class:`sps.stages.runner.StageContext`. Stage modules are imported only when their
stage runs, so ``sps --help`` works without the audio libraries.

Errors end the command with one line on stderr that names the problem (exit status 1);
``--debug`` shows the traceback instead. SIGTERM and SIGHUP end a stage as Ctrl-C does
(exit status 128 + the signal): temporary files are removed and the lock is released.

Every stage holds the experiment's lock (:mod:`sps.io.lock`) while it runs: the stages
of :data:`SHARED_STAGES` share it between their ``--shard`` jobs, as do the shard jobs of
:data:`SHARD_SHARED_STAGES` (``sps align``'s per-utterance steps); every other stage, and
any stage run unsharded, holds it alone. A second writer is refused with one line naming the holder.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
from pathlib import Path

from sps.interrupt import signals_interrupt
from sps.vocoders import names_help

#: subcommand -> ("module:function", one-line help)
STAGES: dict[str, tuple[str, str]] = {
    "prepare": ("sps.stages.prepare:run", "stage 0: corpus -> data/{train,dev,eval}.list, wav.scp, lab.scp"),
    "ingest": ("sps.stages.ingest:run", "recordings + transcripts (any layout, rate, format) -> data/wav/, "
               "wav.scp, text, lists"),
    "align": ("sps.stages.align:run", "HMM forced alignment of recordings + transcripts -> align/, data/lab.scp"),
    "features": ("sps.stages.features:run", "WORLD/SPTK acoustic features, log-mel, waveform -> dump/<split>/"),
    "linguistic": ("sps.stages.linguistic:run", "HTS labels + questions -> in_acoustic, in_duration, out_duration"),
    "stats": ("sps.stages.stats:run", "normalisation statistics over the train split -> stats/<kind>.npz"),
    "train": ("sps.stages.train:train", "train a duration or acoustic model (MSE or MGE) -> models/<name>/"),
    "synth": ("sps.stages.synth:run", "labels -> durations -> acoustic -> MLPG -> WORLD waveform -> synth/<name>/<split>/"),
    "eval": ("sps.stages.evaluate:run", "objective metrics (MCD, BAP, F0, V/UV) -> eval/<system>/<split>/metrics.json"),
    "report": ("sps.stages.report:run", "HTML report with metrics, audio players and plots -> eval/report.html"),
    "train-vocoder": ("sps.stages.vocoder:train", "train a neural vocoder (conf/<name>.yaml; names below) -> models/<name>/"),
    "vocode": ("sps.stages.vocoder:vocode", "neural vocoding: copy synthesis + acoustic-model features -> synth/, metrics -> eval/"),
    "export-vocoder": ("sps.stages.vocoder:export", "a trained vocoder's weights as one small file (for init_from)"),
    "pack": ("sps.stages.pack:run", "one voice file: models, vocoders, statistics, questions, configs (for sps speak)"),
}
#: commands that need no experiment directory: name -> ("module", one-line help); the module
#: has add_arguments(parser) and run(args)
COMMANDS: dict[str, tuple[str, str]] = {
    "speak": ("sps.stages.speak", "a voice file (sps pack) speaks text or labels -> wav (no experiment needed)"),
}

#: per-utterance stages: their shard jobs share the experiment lock (the others hold it alone)
SHARED_STAGES = {"ingest", "features", "linguistic", "synth"}
#: stages whose ``--shard`` jobs share it too (align's per-utterance steps: prepare, accumulate,
#: align write per-utterance or per-shard files); run unsharded they hold it alone
SHARD_SHARED_STAGES = {"align"}
#: stages that may run in an experiment directory that does not exist yet
CREATES_EXPERIMENT = {"prepare", "ingest"}

#: extra options some stages accept: stage -> list of (flags, kwargs); each sets the config key of its name
EXTRA_OPTIONS: dict[str, list[tuple[tuple[str, ...], dict]]] = {
    "synth": [(("--text",), dict(help="synthesize this text (Festival front end) instead of a split")),
              (("--out",), dict(help="output wav for --text (default: synth/text.wav in the exp dir)"))],
    "export-vocoder": [(("--out",), dict(help="output .pt (default: models/<name>/<name>.pt in the exp dir)"))],
    "pack": [(("--out",), dict(help="output voice file (default: <exp-dir>/<name>.voice.pt)"))],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sps", description="sps: statistical parametric speech synthesis, stage by stage.",
        epilog="Run 'sps <stage> --help' for a stage. Overrides are key=value or section.key=value, "
               "parsed as YAML scalars.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="stage", metavar="<stage>")
    for name, (_, help_text) in STAGES.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           epilog=names_help() if name in ("train-vocoder", "vocode", "pack") else None)
        p.add_argument("--exp-dir", type=Path, required=True, help="experiment directory")
        p.add_argument("--config", type=Path, help="YAML config file")
        p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
        p.add_argument("--shard", help="process share K of N of the utterances (e.g. 2/8)")
        p.add_argument("--force", action="store_true", help="redo outputs that already exist")
        p.add_argument("--max-failed", type=float, default=0.2, metavar="FRACTION",
                       help="fail when more than this fraction of the utterances fails (default 0.2)")
        p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
        p.add_argument("--debug", action="store_true", help="show the traceback of an error")
        for flags, kwargs in EXTRA_OPTIONS.get(name, []):
            p.add_argument(*flags, **kwargs)
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
        p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def resolve(target: str):
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def error_line(err: BaseException) -> str:
    """One line that names the problem (the exception's message, else its type)."""
    msg = " ".join(str(err).split())
    if isinstance(err, OSError) and err.strerror and not isinstance(err, FileNotFoundError):
        msg = " ".join(f"{err.strerror}{': ' + str(err.filename) if err.filename else ''}".split())
        return msg if err.filename or ":" in err.strerror else f"{type(err).__name__}: {msg}"
    if isinstance(err, (FileNotFoundError, ValueError, MemoryError, OSError)) and msg:
        return msg
    return f"{type(err).__name__}: {msg}" if msg else type(err).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from sps import __version__
        print(__version__)
        return 0
    if args.stage is None:
        parser.print_help()
        return 2
    level = logging.getLevelName(args.log_level.upper())
    if not isinstance(level, int):
        print(f"sps {args.stage}: error: --log-level {args.log_level!r}: not a level (DEBUG, INFO, WARNING, "
              "ERROR or CRITICAL)", file=sys.stderr)
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with signals_interrupt():
        try:
            if args.stage in COMMANDS:       # no experiment directory
                result = importlib.import_module(COMMANDS[args.stage][0]).run(args)
                return int(result or 0)
            from sps.config import load_config
            from sps.io.lock import experiment_lock
            from sps.stages.runner import StageContext, parse_shard
            config = load_config(args.config, args.overrides)
            if not 0.0 <= args.max_failed <= 1.0:
                raise ValueError(f"--max-failed must be a fraction in [0, 1], got {args.max_failed}")
            if args.jobs < 1:
                raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
            shard = parse_shard(args.shard)
            if args.stage not in CREATES_EXPERIMENT and not args.exp_dir.is_dir():
                raise FileNotFoundError(f"{args.exp_dir}: experiment directory not found (run 'sps prepare' first)")
            for flags, _ in EXTRA_OPTIONS.get(args.stage, []):
                name = flags[0].lstrip("-").replace("-", "_")
                if getattr(args, name) is not None:
                    config[name] = getattr(args, name)
            ctx = StageContext(exp_dir=args.exp_dir, config=config, jobs=args.jobs,
                               shard=shard, force=args.force, max_failed=args.max_failed)
            # under torchrun only rank 0 writes, so only it takes the lock
            shared = args.stage in SHARED_STAGES or (shard is not None and args.stage in SHARD_SHARED_STAGES)
            lock = experiment_lock(args.exp_dir, args.stage, shared=shared, shard=shard) \
                if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()
            with lock:
                result = resolve(STAGES[args.stage][0])(ctx)
        except KeyboardInterrupt as err:
            signum = getattr(err, "signum", signal.SIGINT)
            print(f"sps {args.stage}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
            return 128 + int(signum)
        except Exception as err:  # noqa: BLE001 - one line per error, the traceback with --debug
            if args.debug:
                raise
            print(f"sps {args.stage}: error: {error_line(err)}", file=sys.stderr)
            return 1
    return int(result) if isinstance(result, int) and not isinstance(result, bool) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
