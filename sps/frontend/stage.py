"""Recipe stage ``linguistic``: labels -> linguistic and duration features.

For every utterance of each split listed in ``<exp>/data/{train,dev,eval}.list``
(label paths from ``<exp>/data/lab.scp``) it writes::

    dump/<split>/in_duration/<utt>.npy    (T_phones, Q)      phone-level linguistic features
    dump/<split>/out_duration/<utt>.npy   (T_phones, S)      frames per phone (S=1) or per state
    dump/<split>/in_acoustic/<utt>.npy    (N_frames, Q + P)  frame-level features + positional ones

and the stream specs ``dump/in_duration.json``, ``dump/in_acoustic.json``,
``dump/out_duration.json``. ``N_frames = round(end_last / frame_shift)``, the
length the acoustic feature stage uses. Config (section ``frontend``)::

    question_file: data/questions/questions_festival_slt.hed
    subphone_features: auto   # auto | phone | state | none
    frame_shift: 50000        # 100 ns units (5 ms)
    voice: cmu_us_slt_arctic_hts   # Festival voice for text input at synthesis time
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

from sps.frontend import DEFAULT_QUESTION_FILE
from sps.frontend.features import (duration_features, feature_names, linguistic_features,
                                   resolve_subphone)
from sps.frontend.labels import load_labels
from sps.frontend.questions import QuestionSet, load_questions
from sps.io import read_list, read_scp, save_array, write_json
from sps.stage import StageContext, run_utterances

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "eval")
KINDS = ("in_duration", "out_duration", "in_acoustic")
#: ``voice`` is not used here: it is the Festival voice of ``text_to_labels`` at synthesis time
DEFAULTS = {"question_file": str(DEFAULT_QUESTION_FILE), "subphone_features": "auto", "frame_shift": 50000,
            "voice": "cmu_us_slt_arctic_hts"}


def resolve_question_file(name: str | Path) -> Path:
    """A question file path as given, or relative to the repository root."""
    path = Path(name)
    if not path.exists() and not path.is_absolute():
        candidate = DEFAULT_QUESTION_FILE.parents[2] / path
        if candidate.exists():
            return candidate
    if not path.exists():
        raise FileNotFoundError(f"{path}: question file not found (config frontend.question_file)")
    return path.resolve()


@functools.lru_cache(maxsize=4)
def _cached_scp(path: str, mtime: float) -> dict[str, str]:
    return read_scp(path)


@functools.lru_cache(maxsize=4)
def _cached_questions(path: str, mtime: float) -> QuestionSet:
    return load_questions(path)


def process_utterance(utt: str, *, lab_scp: Path, out_dir: Path, question_file: Path,
                      subphone: str, num_states: int, frame_shift: int) -> None:
    """Write the three feature files of one utterance (atomically).

    Takes paths, not loaded tables, so that the picklable ``functools.partial`` sent to
    worker processes stays small; each worker loads the scp and questions once.
    """
    table = _cached_scp(str(lab_scp), lab_scp.stat().st_mtime)
    if utt not in table:
        raise ValueError(f"{lab_scp}: no entry for utterance {utt!r}")
    questions = _cached_questions(str(question_file), question_file.stat().st_mtime)
    labels = load_labels(table[utt])
    if not labels.has_times:
        raise ValueError(f"{labels.path}: training labels need times")
    if labels.num_states != num_states:
        raise ValueError(f"{labels.path}: {labels.num_states} states per phone, but the corpus has "
                         f"{num_states} (from its first utterance)")
    outputs = {
        "in_duration": linguistic_features(labels, questions, frame_shift=frame_shift),
        "out_duration": duration_features(labels, frame_shift=frame_shift),
        "in_acoustic": linguistic_features(labels, questions, frame_level=True,
                                           subphone_features=subphone, frame_shift=frame_shift),
    }
    for kind, array in outputs.items():
        save_array(out_dir / kind / f"{utt}.npy", array)


def _first_readable(lab_scp: dict[str, str], utts: list[str]):
    """Labels of the first utterance that loads: it fixes states per phone and "auto"."""
    first_error = None
    for utt in utts:
        try:
            return load_labels(lab_scp[utt])
        except (KeyError, ValueError, OSError) as err:
            first_error = first_error or err
    raise ValueError(f"no readable label file among {len(utts)} utterances (first error: {first_error})")


def _done(utt: str, out_dir: Path) -> bool:
    return all((out_dir / kind / f"{utt}.npy").exists() for kind in KINDS)


def run(ctx: StageContext) -> dict:
    """Stage entry point (``sps linguistic``); see the module docstring.

    Returns
    -------
    summaries : dict split -> sps.stage.StageSummary
        A summary per split is also written to ``dump/<split>/linguistic_report.txt``.
    """
    cfg = {**DEFAULTS, **(ctx.config.get("frontend") or {})}
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown frontend config keys: {sorted(unknown)} (known: {sorted(DEFAULTS)})")
    frame_shift = int(cfg["frame_shift"])
    if frame_shift <= 0:
        raise ValueError(f"frontend.frame_shift must be positive (100 ns units), got {frame_shift}")
    qfile = resolve_question_file(cfg["question_file"])
    questions = load_questions(qfile)
    data = Path(ctx.exp_dir) / "data"
    lab_scp = read_scp(data / "lab.scp")
    splits = {s: read_list(data / f"{s}.list") for s in SPLITS if (data / f"{s}.list").exists()}
    if not any(splits.values()):
        raise FileNotFoundError(f"{data}: no utterances in {', '.join(s + '.list' for s in SPLITS)}")
    reference = _first_readable(lab_scp, [u for utts in splits.values() for u in utts])
    subphone = resolve_subphone(cfg["subphone_features"], reference)
    num_states = reference.num_states

    dump = Path(ctx.exp_dir) / "dump"
    common = {"question_file": str(qfile), "frame_shift_ms": frame_shift / 10000.0,
              "num_binary": len(questions.binary), "num_numeric": len(questions.numeric)}
    names_phone = feature_names(questions)
    names_frame = feature_names(questions, frame_level=True, subphone_features=subphone)
    write_json(dump / "in_duration.json", {"kind": "in_duration", "dim": len(names_phone),
                                           "level": "phone", **common, "names": names_phone})
    write_json(dump / "in_acoustic.json", {"kind": "in_acoustic", "dim": len(names_frame),
                                           "level": "frame", "subphone_features": subphone,
                                           **common, "names": names_frame})
    dur_names = ["phone_frames"] if num_states == 1 else [f"state{s}_frames" for s in range(2, num_states + 2)]
    write_json(dump / "out_duration.json", {"kind": "out_duration", "dim": num_states, "level": "phone",
                                            "unit": "frames", "frame_shift_ms": frame_shift / 10000.0,
                                            "names": dur_names})
    summaries = {}
    suffix = "" if ctx.shard is None else f".{ctx.shard[0]}of{ctx.shard[1]}"
    for split, utts in splits.items():
        out_dir = dump / split
        process = functools.partial(process_utterance, lab_scp=data / "lab.scp", out_dir=out_dir,
                                    question_file=qfile, subphone=subphone, num_states=num_states,
                                    frame_shift=frame_shift)
        done = None if ctx.force else functools.partial(_done, out_dir=out_dir)
        summaries[split] = run_utterances(
            utts, process, desc=f"linguistic {split}", jobs=ctx.jobs, shard=ctx.shard, done=done,
            report=out_dir / f"linguistic_report{suffix}.txt")
    return summaries
