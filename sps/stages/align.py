"""Recipe stage ``align``: recordings + transcripts -> time-aligned HTS full-context labels.

Interface with ``sps ingest`` (which writes the inputs) and the later stages (which read
the outputs). Inputs, under the experiment directory::

    data/wav.scp            utt path     16 kHz mono audio (any rate is resampled)
    data/text               utt text     Kaldi style transcript, one line each
    data/lab_untimed.scp    utt path     optional: HTS full-context labels given instead of
                                         text (times, if any, are ignored)
    data/textgrid.scp       utt path     optional: a TextGrid per utterance used as the
                                         alignment instead of aligning
    data/{train,dev,eval}.list           the utterances

Outputs::

    align/lab/<utt>.lab             phone-aligned full-context labels (100 ns, 5 ms grid)
    align/lab_state/<utt>.lab       state-aligned labels (HTS convention, states [2]..[S+1])
    align/textgrid/<utt>.TextGrid   words and phones tiers, for Praat
    align/model.pt                  the trained aligner (torch.load(weights_only=True))
    align/report.json, report.txt   per-utterance log-likelihood per frame, pauses, failures
    data/lab.scp                    utt -> align/lab/<utt>.lab (labels=state: lab_state/<utt>.lab),
                                    for every aligned utterance
    data/{train,dev,eval}.list      rewritten without the utterances that failed
    data/rejected/align.txt         those utterances with their reasons

Each utterance's phone sequence comes from, in order of preference: its TextGrid
(mapped onto Festival's sequence: :mod:`sps.align.textgrid`; no state-level labels), its
untimed labels, or Festival's front end on its transcript (``voice``). Utterances that
fail (empty transcript, nothing speakable, a Festival failure, unreadable audio, audio
shorter than its states need, no path within the beam, a TextGrid that does not fit)
are left out of every list, named with their reason, and counted in the summary; the
others go on.

The aligner is trained on the corpus itself from a flat start (:mod:`sps.align.train`;
options in section ``aligner``), unless ``model`` names a trained one (``sps align ...
model=other/align/model.pt``), which then aligns without training.

Steps (option ``step``). ``all`` (default) runs them in order in this process, with
``--jobs`` worker processes for the E-step; on a cluster they run one by one, the
per-utterance ones as ``--shard K/N`` jobs, all communicating through files::

    prepare     --shard K/N   front end + features    -> align/front/, align/feats/
    update                    flat start the first time, else merge the statistics of
                              the current pass and re-estimate -> align/train/pass_<k>.pt
                              (align/model.pt after the last pass)
    accumulate  --shard K/N   E-step of the current pass -> align/train/stats_<k>/<K>of<N>.pt
    align       --shard K/N   Viterbi -> align/lab/, lab_state/, textgrid/, results/
    finish                    report, data/lab.scp, lists

    sps align step=update                            # after all prepare shards
    while [ ! -e $exp/align/model.pt ]; do
        $cmd JOB=1:N ... sps align --shard JOB/N step=accumulate
        sps align step=update
    done

Rerunning resumes (existing outputs and passes are kept); ``--force`` starts afresh.
Every step first compares each utterance's inputs (audio, transcript, labels, TextGrid
content) with the digests recorded when its files were made (``align/inputs.json``) and
refuses, naming the changed utterances, when any differ: a resumed alignment never mixes
files made from other inputs.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from sps.align import Aligner, AlignerConfig, HmmSet, Stats
from sps.align.context import PAUSE, merge_pauses, phone_of
from sps.align.features import align_features
from sps.align.textgrid import labels_from_textgrid, read_textgrid_phones, write_textgrid
from sps.align.train import EStep, Example, estep, initial_model, schedule
from sps.config import bind, to_dict
from sps.frontend import load_labels
from sps.frontend.festival import texts_to_labels
from sps.io import check_id, read_json, read_list, read_scp, read_wav, save_array, write_json, write_list, \
    write_scp, write_text
from sps.stages.experiment import SPLITS, Experiment
from sps.stages.runner import StageContext, StageFailed, select_shard
from sps.stages.stamps import digest, file_digest

logger = logging.getLogger(__name__)

STEPS = ("all", "prepare", "update", "accumulate", "align", "finish")


@dataclass(frozen=True)
class AlignStageConfig:
    """Options of ``sps align`` (``conf/align.yaml``)."""
    aligner: AlignerConfig = field(default_factory=AlignerConfig)
    model: str | None = None                 # a trained aligner: align with it, no training
    step: Literal["all", "prepare", "update", "accumulate", "align", "finish"] = "all"
    voice: str = "cmu_us_slt_arctic_hts"     # Festival voice of the front end
    festival_timeout: float = 60.0           # seconds per Festival call
    max_mismatch: float = 0.2                # TextGrid input: largest fraction of differing phones
    textgrids: bool = True                   # write align/textgrid/<utt>.TextGrid
    labels: Literal["phone", "state"] = "phone"   # the labels data/lab.scp names (align/lab or lab_state)
    backend: Literal["auto", "torch", "native"] = "auto"


# ------------------------------------------------------------------------------- paths
class AlignDir:
    """The files of the stage under ``<exp>/align``."""

    def __init__(self, exp: Experiment):
        self.exp = exp
        self.root = exp.root / "align"

    def front(self, utt: str) -> Path:
        return self.root / "front" / f"{utt}.lab"

    def words(self, utt: str) -> Path:
        return self.root / "front" / f"{utt}.words"

    def feats(self, utt: str) -> Path:
        return self.root / "feats" / f"{utt}.npy"

    def result(self, utt: str) -> Path:
        return self.root / "results" / f"{utt}.json"

    def lab(self, utt: str) -> Path:
        return self.root / "lab" / f"{utt}.lab"

    def lab_state(self, utt: str) -> Path:
        return self.root / "lab_state" / f"{utt}.lab"

    def textgrid(self, utt: str) -> Path:
        return self.root / "textgrid" / f"{utt}.TextGrid"

    def pass_model(self, k: int) -> Path:
        return self.root / "train" / f"pass_{k:02d}.pt"

    def stats(self, k: int, shard: tuple[int, int]) -> Path:
        return self.root / "train" / f"stats_{k:02d}" / f"{shard[0]}of{shard[1]}.pt"

    @property
    def model(self) -> Path:
        return self.root / "model.pt"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def inputs(self) -> Path:
        """Digest of each utterance's inputs (audio, transcript, labels, TextGrid content)."""
        return self.root / "inputs.json"

    def passes_done(self) -> int:
        """Passes whose model exists (-1: not even the flat start)."""
        done = -1
        while self.pass_model(done + 1).exists():
            done += 1
        return done


# ------------------------------------------------------------------------------- inputs
@dataclass
class Inputs:
    """What ``sps ingest`` wrote: utterances in list order and their sources."""
    utts: list
    split_of: dict
    wav: dict
    text: dict
    labels: dict
    textgrid: dict


def read_text(path: Path) -> dict[str, str]:
    """Kaldi ``text``: ``utt transcript`` lines (an empty transcript is kept, to be reported)."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        utt, _, text = line.strip().partition(" ")
        check_id(utt, f"{path}:{n}")
        if utt in out:
            raise ValueError(f"{path}:{n}: duplicate utterance id {utt!r}")
        out[utt] = text.strip()
    return out


def read_inputs(exp: Experiment) -> Inputs:
    data = exp.data_dir
    split_of = {}
    for s in SPLITS:
        if exp.list_path(s).exists():
            for u in read_list(exp.list_path(s)):
                split_of.setdefault(u, s)
    if not split_of:
        raise FileNotFoundError(f"{data}/train.list: not found (run the ingest stage first)")
    wav = read_scp(data / "wav.scp") if (data / "wav.scp").exists() else None
    if wav is None:
        raise FileNotFoundError(f"{data / 'wav.scp'}: not found (run the ingest stage first)")
    optional = {name: read_scp(data / f"{name}.scp") if (data / f"{name}.scp").exists() else {}
                for name in ("lab_untimed", "textgrid")}
    text = read_text(data / "text") if (data / "text").exists() else {}
    if not text and not optional["lab_untimed"]:
        raise FileNotFoundError(f"{data / 'text'}: not found, and no data/lab_untimed.scp either "
                                "(the aligner needs a transcript or untimed labels per utterance)")
    return Inputs(list(split_of), split_of, wav, text, optional["lab_untimed"], optional["textgrid"])


# ------------------------------------------------------------------------------- results
def _record(ad: AlignDir, utt: str, **fields) -> None:
    write_json(ad.result(utt), {"utt": utt, **fields})


def _fail(ad: AlignDir, utt: str, step: str, reason: str) -> None:
    reason = " ".join(str(reason).split())
    logger.warning("align: %s left out (%s): %s", utt, step, reason)
    _record(ad, utt, status="failed", step=step, reason=reason)


def _failed(ad: AlignDir, utt: str) -> bool:
    p = ad.result(utt)
    return p.exists() and read_json(p).get("status") == "failed"


# ------------------------------------------------------------------------------- prepare
def _front_end(ad: AlignDir, inputs: Inputs, utts: list[str], cfg: AlignStageConfig, jobs: int) -> None:
    """Festival's labels (or the given untimed labels) -> align/front/<utt>.lab (+ .words)."""
    from concurrent.futures import ThreadPoolExecutor
    texts = []
    for u in utts:
        if u in inputs.labels:
            try:
                lab = load_labels(inputs.labels[u])
                contexts = merge_pauses(lab.contexts)
                [phone_of(c) for c in contexts]
                write_text(ad.front(u), "".join(c + "\n" for c in contexts))
                words = inputs.text.get(u, "").split()
                write_text(ad.words(u), "".join(w + "\n" for w in words))
            except (OSError, ValueError) as err:
                _fail(ad, u, "labels", err)
        elif u in inputs.text:
            texts.append(u)
        else:
            _fail(ad, u, "front end", "no transcript in data/text and no untimed labels")
    if not texts:
        return
    batch = 40
    groups = [texts[i:i + batch] for i in range(0, len(texts), batch)]

    def run(group):
        return group, texts_to_labels([inputs.text[u] for u in group], voice=cfg.voice,
                                      timeout=cfg.festival_timeout, batch_size=batch)

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for group, results in pool.map(run, groups):
            for u, r in zip(group, results):
                if isinstance(r, Exception):
                    _fail(ad, u, "front end", f"{type(r).__name__}: {r}" if not isinstance(r, ValueError)
                          else f"transcript {inputs.text[u][:60]!r}: {r}")
                    continue
                labels, words = r
                contexts = merge_pauses(labels.contexts)
                write_text(ad.front(u), "".join(c + "\n" for c in contexts))
                write_text(ad.words(u), "".join(w + "\n" for w in words))


def _features_one(utt: str, wav_path: str, out: str, settings_dict: dict) -> str | None:
    """Aligner features of one file (worker function); the error message, or None."""
    from sps.align.features import FeatureSettings
    try:
        x, sr = read_wav(wav_path)
        save_array(out, align_features(x, sr, FeatureSettings(**settings_dict)))
        return None
    except (OSError, ValueError, RuntimeError) as err:
        return str(err)


def prepare(ad: AlignDir, inputs: Inputs, utts: list[str], cfg: AlignStageConfig, jobs: int, force: bool) -> None:
    """Front end and features of ``utts`` (those not done yet unless ``force``)."""
    todo = [u for u in utts if force or not (_failed(ad, u) or ad.front(u).exists())]
    if force:
        for u in todo:
            ad.result(u).unlink(missing_ok=True)
    _front_end(ad, inputs, todo, cfg, jobs)   # TextGrid input too: it times Festival's sequence
    feat_todo = [u for u in utts if u not in inputs.textgrid and not _failed(ad, u)
                 and (force or not ad.feats(u).exists())]
    missing = [u for u in feat_todo if u not in inputs.wav]
    for u in missing:
        _fail(ad, u, "features", "no audio in data/wav.scp")
    feat_todo = [u for u in feat_todo if u in inputs.wav]
    settings = cfg.aligner.features.to_dict()
    args = [(u, inputs.wav[u], str(ad.feats(u)), settings) for u in feat_todo]
    if jobs > 1 and len(args) > 1:
        import concurrent.futures as cf
        import multiprocessing as mp
        with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            errors = list(pool.map(_features_one, *zip(*args), chunksize=8))
    else:
        errors = [_features_one(*a) for a in args]
    for (u, *_), err in zip(args, errors):
        if err is not None:
            _fail(ad, u, "features", err)


# ------------------------------------------------------------------------------- training
def _examples(ad: AlignDir, utts: list[str], inputs: Inputs) -> list[Example]:
    out = []
    for u in utts:
        if u in inputs.textgrid or _failed(ad, u) or not ad.feats(u).exists():
            continue
        contexts = [c for c in ad.front(u).read_text().splitlines() if c.strip()]
        out.append(Example(u, np.load(ad.feats(u)), contexts))
    return out


def _save_model(model: HmmSet, path: Path, cfg: AlignerConfig) -> None:
    Aligner(model, cfg).save(path)


def _load_pass(ad: AlignDir, k: int) -> HmmSet:
    return Aligner.load(ad.pass_model(k)).model


def _check_config(ad: AlignDir, cfg: AlignStageConfig, force: bool) -> None:
    """Refuse to resume with other aligner settings than those of the existing files."""
    current = to_dict(cfg.aligner)
    if ad.config.exists() and not force:
        old = read_json(ad.config)
        if old != current:
            changed = sorted(k for k in set(old) | set(current) if old.get(k) != current.get(k))
            raise ValueError(f"{ad.config}: the aligner settings changed ({', '.join(changed)}); rerun with "
                             "--force to redo the alignment, or use a new experiment directory")
    write_json(ad.config, current)


def input_digests(inputs: Inputs) -> dict[str, str]:
    """utt -> digest of the content of its audio, labels and TextGrid and of its transcript
    (a missing file digests as missing: the steps report it)."""
    out = {}
    for u in inputs.utts:
        parts: dict = {"text": inputs.text.get(u)}
        for name, table in (("wav", inputs.wav), ("labels", inputs.labels), ("textgrid", inputs.textgrid)):
            if u in table:
                try:
                    parts[name] = file_digest(table[u])
                except OSError:
                    parts[name] = "missing"
        out[u] = digest(parts)
    return out


def _check_inputs(ad: AlignDir, inputs: Inputs, fresh: bool, record: bool) -> None:
    """Refuse to go on from files made from other inputs: an utterance whose audio,
    transcript, labels or TextGrid changed since its files were made (re-ingested, edited
    in place) would keep its old features and alignment, and the aligner was trained on
    them. ``fresh``: the old files are gone (``--force``); ``record``: add this run's
    utterances to the record (the steps that make per-utterance files)."""
    current = input_digests(inputs)
    old = {} if fresh or not ad.inputs.exists() else read_json(ad.inputs)
    changed = sorted(u for u in old if u in current and old[u] != current[u])
    if changed:
        raise ValueError(f"{ad.inputs}: the inputs of {len(changed)} utterance(s) changed since they were "
                         f"aligned ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}); rerun with "
                         "--force to redo the alignment, or use a new experiment directory")
    if record and current.keys() - old.keys():
        write_json(ad.inputs, {**old, **current})


def update(ad: AlignDir, inputs: Inputs, cfg: AlignStageConfig) -> bool:
    """Flat start, or merge the current pass's shard statistics and re-estimate.
    Returns True when training is complete."""
    passes = schedule(cfg.aligner)
    k = ad.passes_done()
    if k < 0:
        examples = _examples(ad, inputs.utts, inputs)
        if not examples:
            raise ValueError("no utterance to train the aligner on (see align/results)")
        _save_model(initial_model(examples, cfg.aligner), ad.pass_model(0), cfg.aligner)
        print(f"align: flat start on {len(examples)} utterances -> {ad.pass_model(0)}")
        return False
    if k >= len(passes):
        return True
    stat_dir = ad.stats(k, (1, 1)).parent
    files = sorted(stat_dir.glob("*of*.pt"))
    counts = {int(p.stem.split("of")[1]) for p in files}
    if len(counts) != 1:
        raise FileNotFoundError(f"{stat_dir}: no statistics, or shards of different counts "
                                f"({sorted(counts)}): run step=accumulate for every shard first")
    n = counts.pop()
    missing = [i for i in range(1, n + 1) if not ad.stats(k, (i, n)).exists()]
    if missing:
        raise FileNotFoundError(f"{stat_dir}: statistics of shards {missing} of {n} are missing")
    model = _load_pass(ad, k)
    p = passes[k]
    if p.mixtures > model.mixtures:
        model.split(p.mixtures)
    stats = None
    for i in range(1, n + 1):
        s = Stats.from_state_dict(torch.load(ad.stats(k, (i, n)), weights_only=True))
        stats = s if stats is None else stats.__iadd__(s)
    _finish_pass(ad, model, stats, k, cfg)
    return k + 1 >= len(passes)


def _finish_pass(ad: AlignDir, model: HmmSet, stats: Stats, k: int, cfg: AlignStageConfig) -> None:
    if stats.utterances == 0:
        raise ValueError(f"pass {k + 1}: no training utterance aligned")
    model.update(stats, cfg.aligner.min_occ)
    _save_model(model, ad.pass_model(k + 1), cfg.aligner)
    history = ad.root / "train" / "history.jsonl"
    entry = {"pass": k + 1, "mixtures": model.mixtures, "pauses": schedule(cfg.aligner)[k].pauses,
             "loglik_per_frame": stats.loglik_per_frame, "utterances": stats.utterances,
             "left_out": dict(sorted(stats.failed.items()))}
    with open(history, "a") as f:
        f.write(json.dumps(entry) + "\n")
    logger.info("align: pass %d: %d mixtures, log-likelihood %.3f per frame, %d utterances, %d left out",
                k + 1, model.mixtures, stats.loglik_per_frame, stats.utterances, len(stats.failed))
    if k + 1 == len(schedule(cfg.aligner)):
        shutil.copyfile(ad.pass_model(k + 1), ad.model)


def accumulate_shard(ad: AlignDir, inputs: Inputs, cfg: AlignStageConfig, shard: tuple[int, int]) -> None:
    k = ad.passes_done()
    passes = schedule(cfg.aligner)
    if k < 0:
        raise FileNotFoundError(f"{ad.pass_model(0)}: no flat start yet (run step=update after step=prepare)")
    if k >= len(passes):
        print("align: training is complete; nothing to accumulate")
        return
    model = _load_pass(ad, k)
    p = passes[k]
    if p.mixtures > model.mixtures:
        model.split(p.mixtures)
    examples = _examples(ad, select_shard(inputs.utts, shard), inputs)
    stats = estep(model, examples, cfg.aligner, p.pauses, cfg.backend)
    path = ad.stats(k, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    from sps.io import atomic_path
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(stats.state_dict(), tmp)
    print(f"align: pass {k + 1} statistics of shard {shard[0]}/{shard[1]}: {stats.utterances} utterances "
          f"-> {path}")


def train_all(ad: AlignDir, inputs: Inputs, cfg: AlignStageConfig, jobs: int) -> None:
    """Every remaining pass in this process (E-steps over ``jobs`` workers)."""
    passes = schedule(cfg.aligner)
    if ad.passes_done() < 0:
        update(ad, inputs, cfg)
    k = ad.passes_done()
    if k >= len(passes):
        if not ad.model.exists():
            shutil.copyfile(ad.pass_model(k), ad.model)
        return
    examples = _examples(ad, inputs.utts, inputs)
    model = _load_pass(ad, k)
    with EStep(examples, cfg.aligner, jobs, cfg.backend) as step:
        for k in range(k, len(passes)):
            t0 = time.perf_counter()
            p = passes[k]
            if p.mixtures > model.mixtures:
                model.split(p.mixtures)
            stats = step(model, p.pauses)
            _finish_pass(ad, model, stats, k, cfg)
            print(f"align: pass {k + 1}/{len(passes)}: {model.mixtures} mixtures, log-likelihood "
                  f"{stats.loglik_per_frame:.3f} per frame, {stats.utterances} utterances "
                  f"({len(stats.failed)} left out), {time.perf_counter() - t0:.1f} s", file=sys.stderr)


# ------------------------------------------------------------------------------- align
def _write_outputs(ad: AlignDir, utt: str, labels, state_labels, words, cfg: AlignStageConfig) -> None:
    write_text(ad.lab(utt), labels.to_text())
    if state_labels is not None:
        write_text(ad.lab_state(utt), state_labels.to_text())
    if cfg.textgrids:
        write_textgrid(ad.textgrid(utt), labels, words)


def _words(ad: AlignDir, utt: str) -> list[str] | None:
    p = ad.words(utt)
    return p.read_text().split() if p.exists() else None


def align_utts(ad: AlignDir, inputs: Inputs, utts: list[str], cfg: AlignStageConfig, force: bool) -> None:
    """Viterbi-align (or map the TextGrid of) every utterance of ``utts`` not done yet."""
    todo = [u for u in utts if not _failed(ad, u) and (force or not ad.result(u).exists())]
    if not todo:
        return
    fs = cfg.aligner.features.frame_shift_100ns
    audio = [u for u in todo if u not in inputs.textgrid]
    for u in todo:
        if u not in inputs.textgrid:
            continue
        try:
            contexts = [c for c in ad.front(u).read_text().splitlines() if c.strip()]
            entries, end = read_textgrid_phones(inputs.textgrid[u])
            labels, info = labels_from_textgrid(contexts, entries, end, fs, cfg.max_mismatch)
            _write_outputs(ad, u, labels, None, _words(ad, u), cfg)
            _record(ad, u, status="ok", source="textgrid", frames=int(labels.num_frames(fs)),
                    phones=len(labels), **info)
        except (OSError, ValueError) as err:
            _fail(ad, u, "textgrid", err)
    if not audio:
        return
    model_path = Path(cfg.model) if cfg.model else ad.model
    aligner = Aligner.load(model_path, **{k: v for k, v in to_dict(cfg.aligner).items()
                                          if k in ("beam", "retry_beam", "min_duration", "word_pauses",
                                                   "phrase_pauses", "batch_states")})
    examples = _examples(ad, audio, inputs)
    results = aligner.align_examples(examples, backend=cfg.backend)
    for ex in examples:
        r = results[ex.utt]
        if isinstance(r, str):
            _fail(ad, ex.utt, "align", r)
            continue
        _write_outputs(ad, ex.utt, r.labels, r.state_labels, _words(ad, ex.utt), cfg)
        source = "labels" if ex.utt in inputs.labels else "text"
        _record(ad, ex.utt, status="ok", source=source, frames=r.frames, phones=len(r.labels),
                loglik_per_frame=r.loglik_per_frame, pauses_added=r.pauses_added,
                pauses_dropped=r.pauses_dropped)


# ------------------------------------------------------------------------------- finish
def _lab_scp(ad: AlignDir, utts: list[str], labels: str) -> dict[str, str]:
    """utt -> the label file ``data/lab.scp`` names: phone level, or state level when asked
    for and every utterance has it (one kind per corpus: an utterance aligned from a TextGrid
    has phone-level labels only, and then all get theirs, with a warning)."""
    if labels == "state":
        missing = [u for u in utts if not ad.lab_state(u).exists()]
        if not missing:
            return {u: str(ad.lab_state(u).resolve()) for u in utts}
        logger.warning("align: labels=state, but %d utterances have phone-level labels only (e.g. %s, "
                       "from a TextGrid): data/lab.scp names the phone-level labels of all",
                       len(missing), missing[0])
    return {u: str(ad.lab(u).resolve()) for u in utts}


def finish(ad: AlignDir, inputs: Inputs, cfg: AlignStageConfig, max_failed: float) -> dict:
    """Report, ``data/lab.scp``, split lists without the failures, the rejection registry."""
    exp = ad.exp
    ok, failed, missing = {}, {}, []
    for u in inputs.utts:
        p = ad.result(u)
        if not p.exists():
            missing.append(u)
            continue
        r = read_json(p)
        (ok if r.get("status") == "ok" else failed)[u] = r
    if missing:
        raise FileNotFoundError(f"{ad.result(missing[0])}: no result for {len(missing)} utterances (e.g. "
                                f"{missing[0]}): run step=align for every shard first")
    ll = [r["loglik_per_frame"] for r in ok.values() if "loglik_per_frame" in r]
    history = ad.root / "train" / "history.jsonl"
    passes = [json.loads(line) for line in history.read_text().splitlines()] if history.exists() else []
    report = {
        "utterances": len(inputs.utts), "aligned": len(ok), "failed": len(failed),
        "sources": {s: sum(1 for r in ok.values() if r.get("source") == s) for s in ("text", "labels", "textgrid")},
        "loglik_per_frame": {"mean": float(np.mean(ll)) if ll else None,
                             "min": float(np.min(ll)) if ll else None},
        "pauses_added": int(sum(r.get("pauses_added", 0) for r in ok.values())),
        "pauses_dropped": int(sum(r.get("pauses_dropped", 0) for r in ok.values())),
        "model": str(Path(cfg.model) if cfg.model else ad.model),
        "training": passes,
        "failures": {u: {"step": r.get("step"), "reason": r.get("reason")} for u, r in sorted(failed.items())},
        "per_utterance": {u: {k: v for k, v in r.items() if k not in ("utt", "status")} for u, r in ok.items()},
    }
    write_json(ad.root / "report.json", report)
    write_text(ad.root / "report.txt", summary_text(report))
    write_scp(exp.data_dir / "lab.scp", _lab_scp(ad, [u for u in inputs.utts if u in ok], cfg.labels))
    for s in SPLITS:
        if exp.list_path(s).exists():
            write_list(exp.list_path(s), [u for u in read_list(exp.list_path(s)) if u not in failed])
    registry = exp.rejected_path("align")
    if failed or registry.exists():
        write_text(registry, "".join(f"{u}\t{r.get('step')}: {r.get('reason')}\n" for u, r in sorted(failed.items())))
    print(summary_text(report).split("\n\nper utterance")[0])
    total = len(inputs.utts)
    if not ok or len(failed) > max_failed * total:
        first = next(iter(sorted(failed.items())))
        raise StageFailed(f"align: {len(failed)} of {total} utterances failed (more than --max-failed "
                          f"{max_failed:g}); see {ad.root / 'report.txt'}; first: {first[0]}: "
                          f"{first[1].get('reason')}")
    return report


def summary_text(report: dict) -> str:
    """The readable summary of ``report.json``."""
    ll = report["loglik_per_frame"]
    lines = [f"align: {report['aligned']} of {report['utterances']} utterances aligned, {report['failed']} failed",
             "sources: " + ", ".join(f"{k} {v}" for k, v in report["sources"].items()),
             f"pauses: {report['pauses_added']} added between words, {report['pauses_dropped']} of Festival's "
             "dropped",
             "log-likelihood per frame: " + (f"mean {ll['mean']:.2f}, lowest {ll['min']:.2f}"
                                              if ll["mean"] is not None else "-"),
             f"model: {report['model']}"]
    if report["training"]:
        lines.append("training passes (mixtures, log-likelihood per frame, utterances, left out):")
        lines += [f"  {p['pass']:2d}: {p['mixtures']:2d} {p['loglik_per_frame']:9.3f} {p['utterances']:6d} "
                  f"{len(p['left_out']):4d}" for p in report["training"]]
    if report["failures"]:
        lines.append("failed:")
        lines += [f"  {u}: {f['step']}: {f['reason']}" for u, f in report["failures"].items()]
    per = report["per_utterance"]
    worst = sorted((r["loglik_per_frame"], u) for u, r in per.items() if "loglik_per_frame" in r)[:10]
    if worst:
        lines.append("\nper utterance: lowest log-likelihood per frame (look at these first):")
        lines += [f"  {u}: {v:.2f}" for v, u in worst]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- entry
def run(ctx: StageContext) -> dict | None:
    """Stage entry point (``sps align``)."""
    cfg = bind(AlignStageConfig, ctx.config, "align")
    exp = ctx.exp
    ad = AlignDir(exp)
    inputs = read_inputs(exp)
    shard = ctx.shard
    step = cfg.step
    if shard is not None and step in ("all", "update", "finish"):
        raise ValueError(f"--shard works with step=prepare, accumulate or align, not step={step}")
    if cfg.model and step in ("update", "accumulate"):
        raise ValueError(f"model={cfg.model} aligns with a trained aligner: step={step} does not apply")
    fresh = ctx.force and step in ("all", "prepare") and shard is None
    if fresh:
        for sub in ("train", "results", "front", "feats"):
            shutil.rmtree(ad.root / sub, ignore_errors=True)
        ad.model.unlink(missing_ok=True)
        ad.inputs.unlink(missing_ok=True)
    _check_inputs(ad, inputs, fresh, record=step in ("all", "prepare"))
    if step in ("all", "prepare"):
        _check_config(ad, cfg, ctx.force)
    elif ad.config.exists():
        _check_config(ad, cfg, False)
    utts = select_shard(inputs.utts, shard)
    if cfg.model and not Path(cfg.model).exists():
        raise FileNotFoundError(f"{cfg.model}: aligner model not found")
    if step in ("all", "prepare"):
        prepare(ad, inputs, utts, cfg, ctx.jobs, ctx.force)
    if step == "update":
        done = update(ad, inputs, cfg)
        print(f"align: {'training complete: ' + str(ad.model) if done else 'next: step=accumulate'}")
        return None
    if step == "accumulate":
        accumulate_shard(ad, inputs, cfg, shard or (1, 1))
        return None
    if step == "all":
        if cfg.model:
            if Path(cfg.model).resolve() != ad.model.resolve():
                shutil.copyfile(cfg.model, ad.model)
        elif any(u not in inputs.textgrid for u in inputs.utts):
            train_all(ad, inputs, cfg, ctx.jobs)
    if step in ("all", "align"):
        if not cfg.model and not ad.model.exists() and any(u not in inputs.textgrid for u in utts):
            raise FileNotFoundError(f"{ad.model}: no trained aligner yet (finish training first, or give model=)")
        align_utts(ad, inputs, utts, cfg, ctx.force)
    if step in ("all", "finish"):
        return finish(ad, inputs, cfg, ctx.max_failed)
    return None
