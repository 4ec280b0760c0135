"""The aligner's HMM set: one left-to-right model per phone, its E-step and M-step.

:class:`HmmSet` holds, for every phone of its phone set (``pau`` included), ``S``
emitting states (5 by default, 3 allowed), each with a diagonal Gaussian mixture
(:class:`sps.align.gmm.Gmm`) and a self-loop probability, plus one entry probability
per pause kind (:mod:`sps.align.graph`). Word-boundary pauses (``sp``) use the states
of ``pau``: an optional pause is an optional ``pau``.

* :func:`flat_start` makes a set whose every state is the global mean and variance of
  the training frames, with self-loops from the mean frames per state (HTK's
  HCompV).
* :func:`accumulate` is the E-step over a batch of utterances: embedded
  forward-backward over each whole utterance, sufficient statistics (mixture
  occupancies and moments, state visits, pause use) and the log-likelihood.
  :class:`Stats` from different utterances (or worker processes, or shards) add up.
* :meth:`HmmSet.update` is the M-step; :meth:`HmmSet.split` grows the mixtures.

A saved set (:meth:`HmmSet.state_dict`) holds tensors and plain types only and loads
with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from sps.align.context import PAUSE, PAUSE_KINDS
from sps.align.features import FeatureSettings
from sps.align.gmm import Gmm, GmmStats, accumulate as accumulate_gmm
from sps.align.graph import Graph
from sps.align.hmm import batch_graphs, forward_backward

FORMAT = "sps-aligner-1"
#: self-loop and pause-entry probabilities are kept within these bounds
PROB_FLOOR = 1e-3


@dataclass
class Stats:
    """Sufficient statistics of one E-step (they add up over utterances).

    gmm : GmmStats
    loop_self, loop_exits : Tensor [shape=(L,), float64]
        Expected self-loop transitions of, and exits from, the self-looping copy of every
        model state (the last state of an utterance never exits).
    enter_used, enter_total : Tensor [shape=(K,), float64]
        Expected uses and opportunities of every pause kind.
    loglik : float
        Total log-likelihood of the utterances that aligned.
    frames : int
        Their frames.
    utterances : int
        How many aligned.
    failed : dict
        ``utt -> reason`` of those that did not (beam failure, too short).
    """
    gmm: GmmStats
    loop_self: torch.Tensor
    loop_exits: torch.Tensor
    enter_used: torch.Tensor
    enter_total: torch.Tensor
    loglik: float = 0.0
    frames: int = 0
    utterances: int = 0
    failed: dict = field(default_factory=dict)

    @classmethod
    def zeros(cls, P: int, M: int, D: int) -> "Stats":
        K = len(PAUSE_KINDS)
        z = torch.zeros
        return cls(GmmStats.zeros(P, M, D), z(P, dtype=torch.float64), z(P, dtype=torch.float64),
                   z(K, dtype=torch.float64), z(K, dtype=torch.float64))

    def __iadd__(self, other: "Stats") -> "Stats":
        self.gmm += other.gmm
        self.loop_self += other.loop_self
        self.loop_exits += other.loop_exits
        self.enter_used += other.enter_used
        self.enter_total += other.enter_total
        self.loglik += other.loglik
        self.frames += other.frames
        self.utterances += other.utterances
        self.failed.update(other.failed)
        return self

    def state_dict(self) -> dict:
        return {"occ": self.gmm.occ, "first": self.gmm.first, "second": self.gmm.second,
                "loop_self": self.loop_self, "loop_exits": self.loop_exits,
                "enter_used": self.enter_used, "enter_total": self.enter_total,
                "loglik": float(self.loglik), "frames": int(self.frames), "utterances": int(self.utterances),
                "failed": dict(self.failed)}

    @classmethod
    def from_state_dict(cls, d: dict) -> "Stats":
        return cls(GmmStats(d["occ"], d["first"], d["second"]), d["loop_self"], d["loop_exits"],
                   d["enter_used"], d["enter_total"], float(d["loglik"]), int(d["frames"]),
                   int(d["utterances"]), dict(d["failed"]))

    @property
    def loglik_per_frame(self) -> float:
        return self.loglik / max(1, self.frames)


def log_sum(x: torch.Tensor) -> torch.Tensor:
    """``log sum exp`` over the last axis (-inf where all terms are -inf)."""
    if x.shape[-1] == 1:
        return x[..., 0]
    m = x.max(dim=-1).values
    safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return safe + torch.log(torch.exp(x - safe.unsqueeze(-1)).sum(-1))


@dataclass
class HmmSet:
    """Phone HMMs (see the module docstring).

    phones : list of str
        Model names; model ``i`` has distributions ``i * S .. i * S + S - 1``.
    num_states : int
        S.
    gmm : Gmm
        ``P = len(phones) * S`` mixtures.
    self_loop : Tensor [shape=(P,), float64]
        Self-loop probability of every model state.
    enter : Tensor [shape=(K,), float64]
        Entry probability of every pause kind (:data:`sps.align.context.PAUSE_KINDS`).
    var_floor : Tensor [shape=(D,), float64]
        Variance floor.
    features : FeatureSettings
    """
    phones: list
    num_states: int
    gmm: Gmm
    self_loop: torch.Tensor
    enter: torch.Tensor
    var_floor: torch.Tensor
    features: FeatureSettings = field(default_factory=FeatureSettings)

    @property
    def models(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.phones)}

    @property
    def mixtures(self) -> int:
        """Live components of the largest mixture."""
        return int(torch.isfinite(self.gmm.log_weights).sum(1).max())

    def log_loop(self) -> np.ndarray:
        """``[P, 2]``: ``log a``, ``log (1 - a)``."""
        a = self.self_loop.double().numpy()
        return np.stack([np.log(a), np.log1p(-a)], axis=1)

    def log_enter(self) -> np.ndarray:
        """``[K, 2]``: ``log q``, ``log (1 - q)``."""
        q = self.enter.double().numpy()
        return np.stack([np.log(q), np.log1p(-q)], axis=1)

    def state_log_likelihood(self, x: torch.Tensor, graph: Graph) -> tuple:
        """Output log-likelihoods of an utterance's chain states.

        Returns ``log_b [T, N]`` (float64), the distinct distributions ``pdfs [U]``, the
        chain state -> distinct distribution map ``local [N]`` and the component
        posteriors ``[T, U, M]`` (float32; None for single Gaussians)."""
        pdfs, local = np.unique(graph.pdf, return_inverse=True)
        pdfs, local = torch.from_numpy(pdfs), torch.from_numpy(local.reshape(-1))
        comp = self.gmm.component_log_likelihood(x, pdfs)
        log_b = log_sum(comp)
        post = None if comp.shape[-1] == 1 else torch.exp(comp - log_b.unsqueeze(-1)).nan_to_num_(nan=0.0)
        return log_b[:, local].double(), pdfs, local, post

    def update(self, stats: Stats, min_occ: float = 3.0, update_transitions: bool = True) -> None:
        """M-step from the statistics of the whole training set."""
        self.gmm.update(stats.gmm, self.var_floor, min_occ)
        if update_transitions:
            seen = stats.loop_self + stats.loop_exits > min_occ
            a = stats.loop_self / (stats.loop_self + stats.loop_exits).clamp(min=1e-10)
            self.self_loop = torch.where(seen, a.clamp(PROB_FLOOR, 1 - PROB_FLOOR), self.self_loop)
            seen = stats.enter_total > 0
            q = stats.enter_used / stats.enter_total.clamp(min=1e-10)
            self.enter = torch.where(seen, q.clamp(PROB_FLOOR, 1 - PROB_FLOOR), self.enter)

    def split(self, mixtures: int) -> None:
        """Grow every state's mixture to ``mixtures`` components (no-op when it has them)."""
        self.gmm.split(mixtures)

    # ---------------------------------------------------------------- saving
    def state_dict(self) -> dict:
        """Tensors and plain types only (``torch.load(weights_only=True)`` reads it)."""
        return {"format": FORMAT, "phones": list(self.phones), "num_states": int(self.num_states),
                "means": self.gmm.means, "variances": self.gmm.variances, "log_weights": self.gmm.log_weights,
                "self_loop": self.self_loop, "enter": self.enter, "var_floor": self.var_floor,
                "features": self.features.to_dict()}

    @classmethod
    def from_state_dict(cls, d: dict, where: str = "model") -> "HmmSet":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"{where}: not an sps aligner model (format {found!r}, expected {FORMAT!r})")
        try:
            gmm = Gmm(d["means"].double(), d["variances"].double(), d["log_weights"].double())
            model = cls(phones=list(d["phones"]), num_states=int(d["num_states"]), gmm=gmm,
                        self_loop=d["self_loop"].double(), enter=d["enter"].double(),
                        var_floor=d["var_floor"].double(), features=FeatureSettings(**d["features"]))
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{where}: damaged aligner model ({type(err).__name__}: {err})") from None
        P = len(model.phones) * model.num_states
        if gmm.means.shape[0] != P or model.self_loop.shape != (P,) or gmm.means.shape[2] != model.features.dim:
            raise ValueError(f"{where}: damaged aligner model (parameter shapes {tuple(gmm.means.shape)} do not "
                             f"fit {len(model.phones)} phones x {model.num_states} states x "
                             f"{model.features.dim} dims)")
        return model


def flat_start(phones: Sequence[str], num_states: int, features: Sequence[np.ndarray], frames_per_state: float,
               settings: FeatureSettings, var_floor: float = 0.01) -> HmmSet:
    """Every state the global mean and variance of ``features`` (list of ``[T, D]``); self-loops
    ``1 - 1 / frames_per_state``; pause entry 0.5; variance floor ``var_floor`` x the global
    variance."""
    phones = sorted(set(phones) | {PAUSE})
    n = sum(f.shape[0] for f in features)
    s1 = sum(f.astype(np.float64).sum(0) for f in features)
    s2 = sum((f.astype(np.float64) ** 2).sum(0) for f in features)
    mean = torch.from_numpy(s1 / n)
    var = torch.from_numpy(s2 / n) - mean ** 2
    P = len(phones) * num_states
    a = min(1 - PROB_FLOOR, max(PROB_FLOOR, 1.0 - 1.0 / max(frames_per_state, 1.0)))
    return HmmSet(phones=phones, num_states=num_states, gmm=Gmm.single(P, mean, var),
                  self_loop=torch.full((P,), a, dtype=torch.float64),
                  enter=torch.full((len(PAUSE_KINDS),), 0.5, dtype=torch.float64),
                  var_floor=var * var_floor, features=settings)


def accumulate(model: HmmSet, batch: Sequence[tuple[str, torch.Tensor, Graph]], beam: float = math.inf,
               backend: str | None = "auto") -> Stats:
    """E-step over a batch of utterances.

    Parameters
    ----------
    model : HmmSet
    batch : sequence of (utt, features [T, D], Graph)
    beam : float
        Forward-backward pruning beam (natural log); utterances with no path within it
        are left out and named in ``Stats.failed``.
    backend : {"auto", "torch", "native"}
    """
    P, M, D = model.gmm.shape
    stats = Stats.zeros(P, M, D)
    items, parts = [], []
    for utt, x, graph in batch:
        if x.shape[0] < graph.min_frames:
            stats.failed[utt] = (f"audio too short: {x.shape[0]} frames for {graph.min_frames} states "
                                 f"({len(graph.units)} phones)")
            continue
        parts.append(model.state_log_likelihood(x, graph))
        items.append((utt, x, graph))
    if not items:
        return stats
    graphs = [g for _, _, g in items]
    inputs = batch_graphs(graphs, [p[0] for p in parts], model.log_loop(), model.log_enter())
    gamma, entries, loglik = forward_backward(**inputs, beam=beam, backend=backend)
    for b, ((utt, x, graph), (_, pdfs, local, post)) in enumerate(zip(items, parts)):
        if not math.isfinite(float(loglik[b])):
            stats.failed[utt] = f"no path within the beam ({beam:g})"
            continue
        T, N = x.shape[0], len(graph)
        g = gamma[b, :T, :N]
        occ = torch.zeros(pdfs.numel(), T, dtype=torch.float64).index_add_(0, local, g.T.contiguous())
        accumulate_gmm(stats.gmm, x, pdfs, occ.T, post)
        e = entries[b, :N].clone()
        e[0] += 1.0                      # the path starts in state 0
        exits = e.clone()
        exits[N - 1] -= 1.0              # ... and ends in the last state without leaving it
        has_loop = torch.from_numpy(graph.loop >= 0)
        loop_ids = torch.from_numpy(graph.loop[graph.loop >= 0])
        stats.loop_self.index_add_(0, loop_ids, (g.sum(0) - e)[has_loop])
        stats.loop_exits.index_add_(0, loop_ids, exits[has_loop])
        first = torch.from_numpy(np.flatnonzero(graph.enter_kind >= 0))
        kinds = torch.from_numpy(graph.enter_kind[graph.enter_kind >= 0])
        stats.enter_used.index_add_(0, kinds, e[first])
        stats.enter_total.index_add_(0, kinds, torch.ones(kinds.numel(), dtype=torch.float64))
        stats.loglik += float(loglik[b])
        stats.frames += T
        stats.utterances += 1
    return stats
