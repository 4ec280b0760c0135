"""The HMM of one utterance: a chain of states with self-loops and skips around optional units.

Each unit (a phone model, :class:`sps.align.context.Unit`) contributes ``S`` emitting
states, left to right; with a minimum duration of ``d`` frames per state, every state is
``d`` chained copies sharing one output distribution, of which only the last has a
self-loop (so a state lasts at least ``d`` frames). An optional unit (a pause) can be
skipped: the last state before it has a second exit that jumps to the first state after
it (HTK's tee transition).

Every state ``j`` is entered in at most three ways, which keeps all recursions banded
(no ``N x N`` matrix anywhere): from itself (self-loop), from ``j - 1``, and from
``skip[j]`` (the state before a skipped unit). :class:`Graph` holds the structure;
:meth:`Graph.log_transitions` turns the model's parameters into the ``(N, 3)`` table
of log probabilities of these three ways in.

Transition parameters: a self-loop probability ``a`` per model state (shared by every
occurrence of the model), and an entry probability ``q`` per pause kind: the last state
before an optional unit leaves with ``1 - a`` and then enters the unit with ``q`` or
skips it with ``1 - q``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sps.align.context import Unit

NEG_INF = float("-inf")


@dataclass(frozen=True, eq=False)
class Graph:
    """The state chain of one utterance (N states).

    Attributes
    ----------
    pdf : ndarray [shape=(N,), int64]
        Output distribution of each state: ``model * S + s``.
    loop : ndarray [shape=(N,), int64]
        Index of the state's self-loop parameter (``model * S + s``) for the last copy of a
        model state, -1 for the other copies (no self-loop).
    skip : ndarray [shape=(N,), int64]
        Source of the skip transition into each state, -1 for none.
    enter_kind, skip_kind : ndarray [shape=(N,), int64]
        Pause kind of the optional unit a state is the first state of (entered with
        ``q``), resp. of the unit its skip transition jumps over (``1 - q``); -1 for none.
    unit, state : ndarray [shape=(N,), int64]
        Unit index and model state (0 .. S-1) of each state.
    earliest : ndarray [shape=(N,), int64]
        First frame at which a state can be occupied (shortest path from state 0).
    rest : ndarray [shape=(N,), int64]
        Frames that must follow a frame in the state (shortest path to the last state).
    units : list of Unit
    num_states : int
        S, emitting states per model.
    """
    pdf: np.ndarray
    loop: np.ndarray
    skip: np.ndarray
    enter_kind: np.ndarray
    skip_kind: np.ndarray
    unit: np.ndarray
    state: np.ndarray
    earliest: np.ndarray
    rest: np.ndarray
    units: list
    num_states: int

    def __len__(self) -> int:
        return int(self.pdf.shape[0])

    @property
    def min_frames(self) -> int:
        """Frames the shortest path through the chain takes."""
        return int(self.rest[0]) + 1

    def log_transitions(self, log_loop: np.ndarray, log_enter: np.ndarray) -> np.ndarray:
        """Log probabilities of the three ways into every state.

        Parameters
        ----------
        log_loop : ndarray [shape=(L, 2)]
            ``log a`` and ``log (1 - a)`` of every model state (``L = models * S``).
        log_enter : ndarray [shape=(K, 2)]
            ``log q`` and ``log (1 - q)`` of every pause kind.

        Returns
        -------
        ndarray [shape=(N, 3), float64]
            Columns: self-loop, from ``j - 1``, from ``skip[j]``; -inf where there is none.
        """
        N = len(self)
        out = np.full((N, 3), NEG_INF)
        has_loop = self.loop >= 0
        out[has_loop, 0] = log_loop[self.loop[has_loop], 0]
        # from j - 1: probability 1 between copies, 1 - a out of a last copy, times q into a pause
        prev_loop = np.concatenate([[-1], self.loop[:-1]])
        out[1:, 1] = np.where(prev_loop[1:] >= 0, log_loop[np.maximum(prev_loop[1:], 0), 1], 0.0)
        entering = self.enter_kind >= 0
        out[entering, 1] += log_enter[self.enter_kind[entering], 0]
        skipped = self.skip >= 0
        out[skipped, 2] = (log_loop[self.loop[self.skip[skipped]], 1]
                           + log_enter[self.skip_kind[skipped], 1])
        return out


def build_graph(units: Sequence[Unit], models: dict[str, int], num_states: int,
                min_duration: int = 1) -> Graph:
    """The state chain of a unit sequence.

    Parameters
    ----------
    units : sequence of Unit
        From :func:`sps.align.context.pause_options`.
    models : dict
        Model name -> model index.
    num_states : int
        S, emitting states per model.
    min_duration : int
        Frames each state lasts at least.

    Raises
    ------
    ValueError
        A unit whose model is unknown, or a chain that starts or ends with an optional
        unit or holds two adjacent ones.
    """
    if min_duration < 1:
        raise ValueError(f"min_duration must be >= 1 frame, got {min_duration}")
    if not units:
        raise ValueError("no units to align")
    for k, u in enumerate(units):
        if u.phone not in models:
            raise ValueError(f"phone {u.phone!r} is not in the aligner's phone set")
        if u.optional is not None and (k == 0 or k == len(units) - 1 or units[k - 1].optional is not None):
            raise ValueError(f"optional unit {k} ({u.phone}) at an edge or next to another optional unit")
    S, d = num_states, min_duration
    per_unit = S * d
    N = len(units) * per_unit
    unit = np.repeat(np.arange(len(units)), per_unit)
    state = np.tile(np.repeat(np.arange(S), d), len(units))
    model = np.array([models[u.phone] for u in units], dtype=np.int64)[unit]
    pdf = model * S + state
    last_copy = np.tile(np.arange(d) == d - 1, len(units) * S)
    loop = np.where(last_copy, pdf, -1)
    skip = np.full(N, -1, dtype=np.int64)
    enter_kind = np.full(N, -1, dtype=np.int64)
    skip_kind = np.full(N, -1, dtype=np.int64)
    for k, u in enumerate(units):
        if u.optional is not None:
            first = k * per_unit
            enter_kind[first] = u.optional
            after = first + per_unit
            skip[after] = first - 1
            skip_kind[after] = u.optional
    # shortest paths (in states = frames) from the start and to the end
    earliest = np.arange(N, dtype=np.int64)
    for j in np.flatnonzero(skip >= 0):   # skips only shorten what lies behind them
        earliest[j:] = np.minimum(earliest[j:], earliest[skip[j]] + 1 + np.arange(N - j))
    rest = np.arange(N - 1, -1, -1, dtype=np.int64)
    for j in np.flatnonzero(skip >= 0)[::-1]:
        src = skip[j]
        rest[:src + 1] = np.minimum(rest[:src + 1], rest[j] + 1 + np.arange(src, -1, -1))
    return Graph(pdf=pdf, loop=loop, skip=skip, enter_kind=enter_kind, skip_kind=skip_kind,
                 unit=unit, state=state, earliest=earliest, rest=rest, units=list(units), num_states=S)


def segments(graph: Graph, path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit and state boundaries of a state path.

    Parameters
    ----------
    graph : Graph
    path : ndarray [shape=(T,)]
        Chain state of every frame (from :func:`sps.align.hmm.viterbi`).

    Returns
    -------
    used : ndarray [shape=(U,), bool]
        Whether each unit is on the path.
    bounds : ndarray [shape=(U_used, S + 1), int64]
        Frame boundaries of the states of every used unit: state ``s`` of the ``k``-th
        used unit spans frames ``bounds[k, s] .. bounds[k, s + 1]``.
    """
    path = np.asarray(path, dtype=np.int64)
    T, S = path.shape[0], graph.num_states
    unit_of = graph.unit[path]
    state_of = graph.state[path]
    used = np.zeros(len(graph.units), dtype=bool)
    used[unit_of] = True
    # frames where the (unit, state) changes
    key = unit_of * S + state_of
    change = np.flatnonzero(np.diff(key)) + 1
    starts = np.concatenate([[0], change])
    seg_key = key[starts]
    order = {int(k): i for i, k in enumerate(seg_key)}
    used_units = np.flatnonzero(used)
    bounds = np.empty((used_units.size, S + 1), dtype=np.int64)
    ends = np.concatenate([change, [T]])
    for r, u in enumerate(used_units):
        for s in range(S):
            i = order[int(u) * S + s]
            bounds[r, s] = starts[i]
        bounds[r, S] = ends[order[int(u) * S + S - 1]]
    return used, bounds
