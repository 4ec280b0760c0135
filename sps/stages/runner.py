"""Running one stage over many utterances: workers, shards, resume, bad-input reports.

Every per-utterance stage (features, linguistic features, synthesis, ...) calls
:func:`run_utterances` with a picklable ``process(utt)`` that writes its outputs
atomically (``sps.io.atomic_path``). The runner

* skips utterances that are done: with ``stamps`` (:mod:`sps.stages.stamps`), those
  whose record shows outputs made from the current inputs and settings (the others
  are *stale*: redone and counted); else those ``done(utt)`` says exist. So an
  interrupted run resumes where it stopped and produces the same files, and a run
  after a change of inputs or settings redoes exactly what the change made stale;
* splits the list for ``--shard K/N`` (K in 1..N, round-robin), so array jobs of any
  scheduler can share a corpus;
* fans out to ``--jobs N`` worker processes (spawned, so torch/OpenMP state is not
  forked);
* catches every exception per utterance, logs it with the utterance id, and goes on:
  one bad file never stops a run over thousands; a summary lists the failures;
* records the failed utterances in ``data/rejected/<stage>[.<shard>].txt`` of the
  experiment, so that every later stage leaves them out
  (:meth:`sps.stages.experiment.Experiment.utterances`);
* fails the stage (:class:`StageFailed`, exit status 1 of ``sps``) when every
  utterance failed or more than ``--max-failed`` of them (a fraction, default 0.2);
* kills its workers when it dies (they never outlive a killed stage).
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

from sps.io import write_text
from sps.stages.experiment import Experiment
from sps.stages.stamps import Stamps

logger = logging.getLogger(__name__)


@dataclass
class StageSummary:
    """What a run did: counts, and ``failed`` mapping utterance id -> error message."""
    desc: str = ""
    ok: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    #: utterances redone because their outputs were stale (made from other inputs or settings)
    stale: int = 0

    def __str__(self) -> str:
        redone = f" ({self.stale} stale: redone)" if self.stale else ""
        text = (f"{self.desc}: {self.ok} ok{redone}, {self.skipped} skipped (already done), "
                f"{len(self.failed)} failed")
        for utt, msg in self.failed.items():
            text += f"\n  FAILED {utt}: {msg}"
        return text


class StageFailed(RuntimeError):
    """Too many utterances failed: the stage's outputs are not fit for the next stage."""


#: default of ``--max-failed``: the fraction of failed utterances a stage tolerates
MAX_FAILED = 0.2


@dataclass
class StageContext:
    """Everything a stage function receives from the command line."""
    exp_dir: Path
    config: dict
    jobs: int = 1
    shard: tuple[int, int] | None = None
    force: bool = False
    max_failed: float = MAX_FAILED

    @property
    def exp(self) -> Experiment:
        """The experiment directory ``exp_dir``."""
        return Experiment(self.exp_dir)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> ``(K, N)`` with 1 <= K <= N (None passes through)."""
    if text is None:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 2/8), got {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard {text}: need 1 <= K <= N")
    return k, n


def select_shard(utts: list[str], shard: tuple[int, int] | None) -> list[str]:
    """Round-robin share ``K`` of ``N`` of ``utts`` (all of them when shard is None)."""
    if shard is None:
        return list(utts)
    k, n = shard
    return list(utts)[k - 1::n]


def _die_with_parent(parent: int) -> None:
    """Worker initializer: the kernel kills this worker when its parent dies (Linux), and
    a watcher thread exits it when the parent has gone (elsewhere)."""
    import ctypes
    import os
    import signal
    import threading
    import time
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _kill_workers(pool: cf.ProcessPoolExecutor) -> None:
    """Stop a pool at once: queued work is cancelled and the workers are killed (waiting
    for them would finish the whole queue)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    for proc in procs:
        proc.join(timeout=5)


def _call(process: Callable[[str], object], utt: str) -> tuple[str, str | None]:
    try:
        process(utt)
        return utt, None
    except Exception as err:  # noqa: BLE001 - reported per utterance by design
        msg = str(err) or type(err).__name__
        return utt, f"{type(err).__name__}: {msg}"


def run_utterances(utts: Iterable[str], process: Callable[[str], object], *, desc: str,
                   jobs: int = 1, shard: tuple[int, int] | None = None,
                   done: Callable[[str], bool] | None = None,
                   report: str | Path | None = None, rejected: str | Path | None = None,
                   max_failed: float | None = MAX_FAILED, stamps: Stamps | None = None,
                   force: bool = False) -> StageSummary:
    """Run ``process(utt)`` for every utterance, robustly.

    Parameters
    ----------
    utts : iterable of str
        Utterance ids.
    process : callable
        Picklable (module-level function or ``functools.partial``) when ``jobs > 1``.
        Writes its outputs atomically; raises on bad input with a message naming the file.
    desc : str
        Name for the progress bar and the summary.
    jobs : int
        Worker processes (1 runs in this process).
    shard : (K, N), optional
        Process only share K of N.
    done : callable, optional
        ``done(utt)`` True means the outputs exist: skip (resume). Pass None to force.
        Not used with ``stamps``.
    stamps : Stamps, optional
        The records of what made each utterance's outputs: an utterance is skipped when
        its record is current, and recorded after it succeeds (its record dropped when
        it fails).
    force : bool
        With ``stamps``: redo every utterance.
    report : path, optional
        Where to write the summary text (atomically) in addition to logging it.
    rejected : path, optional
        Registry of this stage's failed utterances (``utt<TAB>reason`` lines): this run's
        failures are added, utterances that succeeded now are removed.
    max_failed : float or None
        Raise :class:`StageFailed` (after writing the report) when no utterance is done
        or more than this fraction of them failed; None never raises.
    """
    todo, summary, keys, stale = [], StageSummary(desc=desc), {}, set()
    for utt in select_shard(list(utts), shard):
        if stamps is not None:
            state, keys[utt] = stamps.state(utt)
            if state == "done" and not force:
                summary.skipped += 1
                continue
            if state == "stale" and not force:
                stale.add(utt)
            todo.append(utt)
        elif done is not None and done(utt):
            summary.skipped += 1
        else:
            todo.append(utt)
    if stale:
        logger.warning("%s: %d utterances have stale outputs (made from other inputs or settings, or of "
                       "unknown origin): redone", desc, len(stale))
    bar = tqdm(total=len(todo), desc=desc, unit="utt", disable=None, file=sys.stderr)

    def record(utt: str, err: str | None) -> None:
        bar.update(1)
        if err is None:
            if stamps is not None:
                stamps.write(utt, keys[utt])
            summary.ok += 1
            summary.stale += utt in stale
        else:
            if stamps is not None:
                stamps.forget(utt)
            summary.failed[utt] = err
            logger.error("%s: %s failed: %s", desc, utt, err)

    if jobs <= 1 or len(todo) <= 1:
        for utt in todo:
            record(*_call(process, utt))
    else:
        ctx = mp.get_context("spawn")
        pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_die_with_parent,
                                      initargs=(os.getpid(),))
        try:
            futures = [pool.submit(_call, process, utt) for utt in todo]
            for fut in cf.as_completed(futures):
                record(*fut.result())
        except BaseException:   # interrupted (Ctrl-C, SIGTERM) or broken: the workers go now
            _kill_workers(pool)
            raise
        pool.shutdown(wait=True)
    bar.close()
    summary.failed = dict(sorted(summary.failed.items()))
    (logger.warning if summary.failed else logger.info)("%s", summary)
    print(str(summary).splitlines()[0], file=sys.stderr)
    if report is not None:
        write_text(report, str(summary) + "\n")
    if rejected is not None:
        update_rejected(Path(rejected), summary, [u for u in todo if u not in summary.failed])
    total = summary.ok + summary.skipped + len(summary.failed)
    if max_failed is not None and summary.failed and (
            not summary.ok + summary.skipped or len(summary.failed) > max_failed * total):
        where = f"; see {report}" if report is not None else ""
        raise StageFailed(f"{desc}: {len(summary.failed)} of {total} utterances failed (more than "
                          f"--max-failed {max_failed:g}){where}; first: "
                          f"{next(iter(summary.failed))}: {next(iter(summary.failed.values()))}")
    return summary


def read_rejected(path: Path) -> dict[str, str]:
    """``utt -> reason`` of a rejection registry (empty when the file does not exist)."""
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        utt, _, reason = line.partition("\t")
        if utt:
            out[utt] = reason
    return out


def update_rejected(path: Path, summary: StageSummary, succeeded: list[str]) -> None:
    """Merge a run's outcome into the registry at ``path`` (written atomically)."""
    entries = read_rejected(path)
    for utt in succeeded:
        entries.pop(utt, None)
    entries.update({utt: " ".join(msg.split()) for utt, msg in summary.failed.items()})
    if entries or path.exists():
        write_text(path, "".join(f"{u}\t{r}\n" for u, r in sorted(entries.items())))
