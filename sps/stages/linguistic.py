"""Recipe stage ``linguistic``: labels -> linguistic and duration features.

For every utterance of each split listed in ``<exp>/data/{train,dev,eval}.list``
(label paths from ``<exp>/data/lab.scp``) it writes::

    dump/<split>/in_duration/<utt>.npy    (T_phones, Q)      phone-level linguistic features
    dump/<split>/out_duration/<utt>.npy   (T_phones, S)      frames per phone (S=1) or per state
    dump/<split>/in_acoustic/<utt>.npy    (N_frames, Q + P)  frame-level features + positional ones

and the stream specs ``dump/in_duration.json``, ``dump/in_acoustic.json``,
``dump/out_duration.json``. ``N_frames = round(end_last / frame_shift)``, the
length the acoustic feature stage uses. Config (section ``frontend``)::

    question_file: festival_slt      # a shipped name (festival_slt, arctic_hts) or a path
    question_semantics: nnmnkwii     # nnmnkwii | merlin | hts: how patterns are anchored
    subphone_features: auto   # auto | phone | state | none
    frame_shift: 50000        # 100 ns units (5 ms)
    voice: cmu_us_slt_arctic_hts   # Festival voice for text input at synthesis time
"""
from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sps.config import bind
from sps.frontend import load_labels, load_questions, question_file
from sps.frontend.features import duration_features, feature_names, linguistic_features, resolve_subphone
from sps.frontend.questions import DEFAULT_SEMANTICS, SEMANTICS, QuestionSet
from sps.io import audio_length, read_json, save_array, write_json
from sps.stages.experiment import STAGE_KINDS, Experiment
from sps.stages.runner import StageContext, run_utterances
from sps.stages.stamps import Stamps, digest, file_digest

logger = logging.getLogger(__name__)

KINDS = STAGE_KINDS["linguistic"]


@dataclass(frozen=True)
class FrontendConfig:
    """Section ``frontend`` of ``conf/linguistic.yaml``."""
    question_file: str | None = None
    #: how question patterns are anchored (sps.frontend.questions): "nnmnkwii" (Merlin's rule,
    #: LL patterns anchored at the label start), "merlin" or "hts" (whole-label match)
    question_semantics: Literal["nnmnkwii", "merlin", "hts"] = DEFAULT_SEMANTICS
    subphone_features: Literal["auto", "phone", "state", "none"] = "auto"
    frame_shift: int = 50000          # 100 ns units (5 ms)
    #: not used here: the Festival voice of ``text_to_labels`` at synthesis time
    voice: str = "cmu_us_slt_arctic_hts"
    #: labels longer or shorter than their audio by more than this many frames are rejected
    #: (the same tolerance as the features stage's ``max_frame_mismatch``)
    max_frame_mismatch: int = 50

    def __post_init__(self):
        if self.frame_shift <= 0:
            raise ValueError(f"frame_shift must be positive (100 ns units), got {self.frame_shift}")
        if self.max_frame_mismatch < 0:
            raise ValueError(f"max_frame_mismatch must be >= 0, got {self.max_frame_mismatch}")


@dataclass(frozen=True)
class LinguisticConfig:
    frontend: FrontendConfig = field(default_factory=FrontendConfig)


#: the semantics of specs written before the option existed
LEGACY_SEMANTICS = "merlin"


@functools.lru_cache(maxsize=4)
def _cached_questions(path: str, mtime: float, semantics: str) -> QuestionSet:
    return load_questions(path, semantics=semantics)


def check_audio_length(labels, wav_path: str, frame_shift: int, max_mismatch: int) -> None:
    """Labels must cover their audio to within ``max_mismatch`` frames (ValueError otherwise)."""
    frames, sr = audio_length(wav_path)
    audio_frames = int(round(frames / (sr * frame_shift * 1e-7)))
    label_frames = labels.num_frames(frame_shift)
    if abs(audio_frames - label_frames) > max_mismatch:
        raise ValueError(f"{labels.path}: labels cover {label_frames} frames, the audio {wav_path} "
                         f"{audio_frames} (|diff| > max_frame_mismatch {max_mismatch})")


def process_utterance(utt: str, *, exp: Experiment, split: str, question_file: Path,
                      subphone: str, num_states: int, frame_shift: int, max_mismatch: int,
                      semantics: str = DEFAULT_SEMANTICS) -> None:
    """Write the three feature files of one utterance (atomically).

    Takes paths, not loaded tables, so that the picklable ``functools.partial`` sent to
    worker processes stays small; each worker loads the scp and questions once.
    """
    table = exp.scp("lab")
    if utt not in table:
        raise ValueError(f"{exp.data_dir / 'lab.scp'}: no entry for utterance {utt!r}")
    questions = _cached_questions(str(question_file), question_file.stat().st_mtime, semantics)
    labels = load_labels(table[utt])
    if not labels.has_times:
        raise ValueError(f"{labels.path}: training labels need times")
    if labels.num_states != num_states:
        raise ValueError(f"{labels.path}: {labels.num_states} states per phone, but the corpus has "
                         f"{num_states} (from its first utterance)")
    wavs = exp.scp("wav") if (exp.data_dir / "wav.scp").exists() else {}
    if utt in wavs:
        check_audio_length(labels, wavs[utt], frame_shift, max_mismatch)
    phone_feats = linguistic_features(labels, questions, frame_shift=frame_shift)
    problems = questions.check_contexts(labels.contexts, phone_feats)
    if problems["unknown_phones"] or problems["damaged"]:
        unknown = problems["unknown_phones"]
        logger.warning("%s: %d labels with phones the question file does not know (%s), %d damaged "
                       "contexts", labels.path, sum(unknown.values()),
                       ", ".join(f"{p!r} x{n}" for p, n in sorted(unknown.items())[:5]) or "none",
                       problems["damaged"])
    outputs = {
        "in_duration": phone_feats,
        "out_duration": duration_features(labels, frame_shift=frame_shift),
        "in_acoustic": linguistic_features(labels, questions, frame_level=True,
                                           subphone_features=subphone, frame_shift=frame_shift),
    }
    for kind, array in outputs.items():
        save_array(exp.dump_path(split, kind, utt), array)


def _semantics_changed(old_spec: dict, questions: QuestionSet, semantics: str) -> bool:
    """Whether features recorded in ``old_spec`` were made with a question semantics that
    answers differently from ``semantics`` for this question file (a spec without the key
    was made with Merlin's rule, the only one before the option existed)."""
    old = old_spec.get("question_semantics", LEGACY_SEMANTICS)
    if old == semantics:
        return False
    return old not in SEMANTICS or not questions.same_answers(old, semantics)


def _first_readable(lab_scp: dict[str, str], utts: list[str]):
    """Labels of the first utterance that loads: it fixes states per phone and "auto"."""
    first_error = None
    for utt in utts:
        try:
            return load_labels(lab_scp[utt])
        except (KeyError, ValueError, OSError) as err:
            first_error = first_error or err
    raise ValueError(f"no readable label file among {len(utts)} utterances (first error: {first_error})")


def stamps(exp: Experiment, split: str, lab_scp: dict[str, str]) -> Stamps:
    """The records of this stage over a split: an utterance's key is the content of its
    labels and the three stream specs (question file digest, semantics, positional
    features, frame shift)."""
    specs = exp.spec_digests(KINDS)
    return Stamps(exp.root, exp.stamp_dir("linguistic", split),
                  outputs=lambda utt: [exp.dump_path(split, kind, utt) for kind in KINDS],
                  key=lambda utt: digest({"specs": specs, "lab": file_digest(lab_scp[utt])}), specs=specs)


def run(ctx: StageContext) -> dict:
    """Stage entry point (``sps linguistic``); see the module docstring.

    Returns
    -------
    summaries : dict split -> sps.stages.runner.StageSummary
        A summary per split is also written to ``dump/<split>/linguistic_report.txt``.
    """
    cfg = bind(LinguisticConfig, ctx.config, "linguistic").frontend
    frame_shift = cfg.frame_shift
    qfile = question_file(cfg.question_file)
    semantics = cfg.question_semantics
    questions = load_questions(qfile, semantics=semantics)
    exp = ctx.exp
    lab_scp = exp.scp("lab")
    splits = {s: exp.utterances(s, stage="linguistic") for s in exp.splits()}
    if not any(splits.values()):
        raise FileNotFoundError(f"{exp.data_dir}: no utterances in train.list, dev.list or eval.list")
    reference = _first_readable(lab_scp, [u for utts in splits.values() for u in utts])
    subphone = resolve_subphone(cfg.subphone_features, reference)
    num_states = reference.num_states

    common = {"question_file": str(qfile), "question_file_sha1": hashlib.sha1(qfile.read_bytes()).hexdigest(),
              "question_semantics": semantics, "frame_shift_ms": frame_shift / 10000.0,
              "num_binary": len(questions.binary), "num_numeric": len(questions.numeric)}
    names_phone = feature_names(questions)
    names_frame = feature_names(questions, frame_level=True, subphone_features=subphone)
    dur_names = ["phone_frames"] if num_states == 1 else [f"state{s}_frames" for s in range(2, num_states + 2)]
    specs = {
        "in_duration": {"kind": "in_duration", "dim": len(names_phone), "level": "phone", **common,
                        "names": names_phone},
        "in_acoustic": {"kind": "in_acoustic", "dim": len(names_frame), "level": "frame",
                        "subphone_features": subphone, **common, "names": names_frame},
        "out_duration": {"kind": "out_duration", "dim": num_states, "level": "phone", "unit": "frames",
                         "frame_shift_ms": frame_shift / 10000.0, "names": dur_names},
    }
    for kind, spec in specs.items():   # resuming with another question file would mix layouts
        path = exp.spec_path(kind)
        if path.exists() and not ctx.force:
            old = read_json(path)
            changed = [k for k in ("dim", "question_file_sha1", "subphone_features", "frame_shift_ms", "names")
                       if old.get(k) != spec.get(k)]
            if "question_semantics" in spec and _semantics_changed(old, questions, semantics):
                changed.append("question_semantics")
            if changed:
                raise ValueError(f"{path}: existing features were made with another question file or settings "
                                 f"({', '.join(changed)} differ); rerun with --force to redo them all")
            if "question_file" in spec:   # the same content elsewhere (a moved checkout or another
                spec["question_file"] = old.get("question_file", spec["question_file"])   # copy) changes nothing
        write_json(path, spec)
    summaries = {}
    suffix = "" if ctx.shard is None else f".{ctx.shard[0]}of{ctx.shard[1]}"
    for split, utts in splits.items():
        process = functools.partial(process_utterance, exp=exp, split=split, question_file=qfile,
                                    subphone=subphone, num_states=num_states, frame_shift=frame_shift,
                                    max_mismatch=cfg.max_frame_mismatch, semantics=semantics)
        summaries[split] = run_utterances(
            utts, process, desc=f"linguistic {split}", jobs=ctx.jobs, shard=ctx.shard,
            stamps=stamps(exp, split, lab_scp), force=ctx.force,
            report=exp.dump_dir / split / f"linguistic_report{suffix}.txt",
            rejected=exp.rejected_path("linguistic", ctx.shard), max_failed=ctx.max_failed)
    return summaries
