"""Training the aligner from a flat start: the schedule, and E-steps spread over worker processes.

Schedule (:func:`schedule`), HTK style:

1. flat start (:func:`sps.align.model.flat_start`);
2. ``flat_iterations`` passes of embedded Baum-Welch re-estimation with single
   Gaussians on Festival's phone sequences as they are (its pauses mandatory, no
   word-boundary pauses);
3. for every entry ``M`` of ``mixtures``: grow every state to ``M`` components and run
   ``iterations`` passes, now with optional pauses (``word_pauses``: between words;
   ``phrase_pauses``: Festival's pauses inside the utterance become optional).

Each pass is one E-step over all training utterances (:class:`EStep`: in this process,
or in ``jobs`` worker processes that each keep a share of the utterances in memory)
followed by one M-step. The E-step prunes with ``beam``; an utterance with no path
within it is tried again with ``retry_beam`` and is left out of the pass (and named)
when that fails too.
"""
from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from sps.align.context import pause_options
from sps.align.features import FeatureSettings
from sps.align.graph import Graph, build_graph
from sps.align.model import HmmSet, Stats, accumulate, flat_start

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlignerConfig:
    """Options of the aligner: model, training schedule, pruning (section ``aligner``)."""
    num_states: int = 5                  # emitting states per phone model (HTS: 5; 3 allowed)
    min_duration: int = 1                # frames each state lasts at least
    flat_iterations: int = 3             # single-Gaussian passes, Festival's pauses fixed
    mixtures: tuple[int, ...] = (1, 2, 4, 8)   # mixture sizes grown in turn ...
    iterations: int = 2                  # ... with this many passes each (optional pauses on)
    word_pauses: bool = True             # optional pause (sp) between words
    phrase_pauses: bool = True           # Festival's pauses inside an utterance optional
    #: options where inf is a meaningful value (no pruning: exact)
    ALLOW_INF = ("beam", "retry_beam")
    beam: float = 300.0                  # pruning beam, natural log
    retry_beam: float = 3000.0           # second try for utterances that fail the beam
    var_floor: float = 0.01              # variance floor, fraction of the global variance
    min_occ: float = 3.0                 # frames a mixture component needs to be re-estimated
    batch_states: int = 4_000_000        # frames x states per forward-backward batch
    features: FeatureSettings = field(default_factory=FeatureSettings)

    def __post_init__(self):
        if self.num_states not in (3, 5):
            raise ValueError(f"num_states must be 3 or 5, got {self.num_states}")
        if self.min_duration < 1:
            raise ValueError(f"min_duration must be >= 1, got {self.min_duration}")
        if not self.mixtures or any(m < 1 for m in self.mixtures) or list(self.mixtures) != sorted(self.mixtures):
            raise ValueError(f"mixtures must be increasing positive sizes, got {list(self.mixtures)}")
        if self.flat_iterations < 1 or self.iterations < 1:
            raise ValueError("flat_iterations and iterations must be >= 1")
        if not (self.beam > 0 and self.retry_beam >= self.beam):
            raise ValueError(f"need 0 < beam <= retry_beam, got {self.beam}, {self.retry_beam}")


@dataclass(frozen=True)
class Pass:
    """One re-estimation pass: the mixture size before it and whether pauses are optional."""
    mixtures: int
    pauses: bool


def schedule(config: AlignerConfig) -> list[Pass]:
    """The training passes of ``config`` (module docstring)."""
    passes = [Pass(1, False)] * config.flat_iterations
    for m in config.mixtures:
        passes += [Pass(m, True)] * config.iterations
    return passes


@dataclass
class Example:
    """One training utterance: features ``[T, D]`` and Festival's labels (contexts)."""
    utt: str
    features: np.ndarray
    contexts: list


def make_graph(contexts: Sequence[str], phones: dict, config: AlignerConfig, pauses: bool) -> Graph:
    units = pause_options(contexts, word_pauses=pauses and config.word_pauses,
                          phrase_pauses=pauses and config.phrase_pauses)
    return build_graph(units, phones, config.num_states, config.min_duration)


def batches(sizes: Sequence[tuple[int, int]], budget: int) -> list[list[int]]:
    """Indices grouped by length so that each padded batch holds about ``budget`` frames x states."""
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    out, cur, tmax, nmax = [], [], 0, 0
    for i in order:
        t, n = sizes[i]
        if cur and (len(cur) + 1) * max(tmax, t) * max(nmax, n) > budget:
            out.append(cur)
            cur, tmax, nmax = [], 0, 0
        cur.append(i)
        tmax, nmax = max(tmax, t), max(nmax, n)
    if cur:
        out.append(cur)
    return out


@contextlib.contextmanager
def one_thread():
    """Torch on one thread meanwhile: the aligner's tensors are small (an utterance at a
    time), where more threads cost more than they bring, above all on a busy machine;
    it runs in parallel over utterances instead (``--jobs`` worker processes)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def estep(model: HmmSet, examples: Sequence[Example], config: AlignerConfig, pauses: bool,
          backend: str | None = "auto") -> Stats:
    """E-step over ``examples`` in this process, on one thread (beam, then retry beam for
    failures)."""
    with one_thread():
        return _estep(model, examples, config, pauses, backend)


def _estep(model, examples, config, pauses, backend) -> Stats:
    P, M, D = model.gmm.shape
    total = Stats.zeros(P, M, D)
    items = []
    for ex in examples:
        try:
            items.append((ex.utt, torch.from_numpy(ex.features), make_graph(ex.contexts, model.models, config, pauses)))
        except ValueError as err:
            total.failed[ex.utt] = str(err)
    # the native kernel aligns one utterance at a time: any grouping; torch pads a batch
    for idx in batches([(x.shape[0], len(g)) for _, x, g in items], config.batch_states):
        group = [items[i] for i in idx]
        stats = accumulate(model, group, beam=config.beam, backend=backend)
        retry = [it for it in group if it[0] in stats.failed and stats.failed[it[0]].startswith("no path")]
        if retry:
            for utt, _, _ in retry:
                del stats.failed[utt]
            stats += accumulate(model, retry, beam=config.retry_beam, backend=backend)
        total += stats
    return total


# ------------------------------------------------------------------------------- workers
def _worker(conn, examples: list[Example], config: AlignerConfig, backend):
    torch.set_num_threads(1)
    while True:
        msg = conn.recv()
        if msg is None:
            break
        state, pauses = msg
        try:
            model = HmmSet.from_state_dict(state)
            conn.send(("ok", estep(model, examples, config, pauses, backend).state_dict()))
        except Exception as err:  # noqa: BLE001 - handed to the parent, which raises it
            conn.send(("error", f"{type(err).__name__}: {err}"))
    conn.close()


class EStep:
    """E-steps over a fixed training set, in this process (``jobs=1``) or in ``jobs``
    worker processes that each keep every ``jobs``-th utterance and return their
    statistics, which add up. Use as a context manager (the workers stop on exit)."""

    def __init__(self, examples: Sequence[Example], config: AlignerConfig, jobs: int = 1,
                 backend: str | None = "auto"):
        self.examples, self.config, self.backend = list(examples), config, backend
        self.jobs = max(1, min(int(jobs), len(self.examples)))
        self._workers = []
        if self.jobs > 1:
            ctx = mp.get_context("spawn")
            by_length = sorted(self.examples, key=lambda e: e.features.shape[0])
            for k in range(self.jobs):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, args=(child, by_length[k::self.jobs], config, backend),
                                   daemon=True)
                proc.start()
                child.close()
                self._workers.append((proc, parent))

    def __call__(self, model: HmmSet, pauses: bool) -> Stats:
        if not self._workers:
            return estep(model, self.examples, self.config, pauses, self.backend)
        state = model.state_dict()
        for _, conn in self._workers:
            conn.send((state, pauses))
        P, M, D = model.gmm.shape
        total = Stats.zeros(P, M, D)
        for proc, conn in self._workers:
            try:
                status, payload = conn.recv()
            except EOFError:
                raise RuntimeError(f"aligner worker {proc.pid} died (exit code {proc.exitcode})") from None
            if status != "ok":
                raise RuntimeError(f"aligner worker {proc.pid}: {payload}")
            total += Stats.from_state_dict(payload)
        return total

    def close(self) -> None:
        for proc, conn in self._workers:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        self._workers = []

    def __enter__(self) -> "EStep":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------ training
def initial_model(examples: Sequence[Example], config: AlignerConfig) -> HmmSet:
    """The flat start of :func:`sps.align.model.flat_start` for ``examples``."""
    from sps.align.context import phone_of
    phones = {phone_of(c) for ex in examples for c in ex.contexts}
    frames = sum(ex.features.shape[0] for ex in examples)
    states = sum(len(ex.contexts) for ex in examples) * config.num_states
    return flat_start(sorted(phones), config.num_states, [ex.features for ex in examples],
                      frames / max(states, 1), config.features, config.var_floor)


def run_pass(model: HmmSet, step: Callable[[HmmSet, bool], Stats], p: Pass, config: AlignerConfig) -> Stats:
    """One pass: grow the mixtures to ``p.mixtures``, E-step, M-step. Returns the statistics."""
    if p.mixtures > model.mixtures:
        model.split(p.mixtures)
    stats = step(model, p.pauses)
    if stats.utterances == 0:
        first = next(iter(stats.failed.items()), ("-", "no utterances"))
        raise ValueError(f"no training utterance aligned (e.g. {first[0]}: {first[1]})")
    model.update(stats, config.min_occ)
    return stats


def train(examples: Sequence[Example], config: AlignerConfig = AlignerConfig(), jobs: int = 1,
          backend: str | None = "auto", log: Callable[[int, Pass, Stats, float], None] | None = None) -> HmmSet:
    """Train an :class:`HmmSet` from a flat start on ``examples`` (the module's schedule).

    Parameters
    ----------
    examples : sequence of Example
    config : AlignerConfig
    jobs : int
        Worker processes for the E-step.
    backend : {"auto", "torch", "native"}
        Forward-backward implementation.
    log : callable, optional
        ``log(pass_index, pass, stats, seconds)`` after every pass.
    """
    if not examples:
        raise ValueError("no training utterances")
    model = initial_model(examples, config)
    with EStep(examples, config, jobs, backend) as step:
        for i, p in enumerate(schedule(config)):
            t0 = time.perf_counter()
            stats = run_pass(model, step, p, config)
            seconds = time.perf_counter() - t0
            logger.info("pass %d: %d mixtures%s, log-likelihood %.3f per frame over %d utterances "
                        "(%d left out), %.1f s", i + 1, p.mixtures, ", optional pauses" if p.pauses else "",
                        stats.loglik_per_frame, stats.utterances, len(stats.failed), seconds)
            if log is not None:
                log(i, p, stats, seconds)
    return model
