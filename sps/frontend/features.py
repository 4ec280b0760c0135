"""Linguistic (input) and duration (output) features from labels and questions.

Phone level: one row per phone, the answers of all binary questions in file order,
then all numeric questions in file order (:meth:`QuestionSet.evaluate`).

Frame level (5 ms frames by default): phone ``t`` covers frames
``round(start_t / fs) .. round(end_t / fs) - 1``; its phone-level row is repeated
on each of them and positional (sub-phone) features are appended. For a frame with
index ``i`` (0-based) inside a phone of ``n`` frames, and, for state-aligned labels,
index ``j`` inside state ``s`` (1-based, of ``S``) of ``m`` frames:

=====================  ==============================================  ==========
name                   value                                           set
=====================  ==============================================  ==========
phone_pos_fwd          (i + 1) / n                                     phone
phone_pos_bwd          (n - i) / n                                     phone
phone_frames           n                                               phone
phone_coarse_0         N(i / n; 0.0, 0.4)                              phone
phone_coarse_1         N(i / n; 0.5, 0.4)                              phone
phone_coarse_2         N(i / n; 1.0, 0.4)                              phone
state_index_fwd        s                                               state
state_index_bwd        S + 1 - s                                       state
state_pos_fwd          (j + 1) / m                                     state
state_pos_bwd          (m - j) / m                                     state
state_frames           m                                               state
state_phone_fraction   m / n                                           state
=====================  ==============================================  ==========

``N(x; mu, sigma)`` is the Gaussian density ``exp(-(x-mu)^2 / (2 sigma^2)) /
(sigma sqrt(2 pi))``: Merlin's coarse coding of the position in the phone with
three Gaussians. ``subphone_features`` selects the sets: ``"none"``, ``"phone"``
(6 columns), ``"state"`` (12 columns, state-aligned labels only) or ``"auto"``
("state" for state-aligned labels, else "phone").
"""
from __future__ import annotations

import math

import numpy as np

from sps.frontend.labels import FRAME_SHIFT, Labels
from sps.frontend.questions import QuestionSet

PHONE_FEATURES = ("phone_pos_fwd", "phone_pos_bwd", "phone_frames",
                  "phone_coarse_0", "phone_coarse_1", "phone_coarse_2")
STATE_FEATURES = ("state_index_fwd", "state_index_bwd", "state_pos_fwd", "state_pos_bwd",
                  "state_frames", "state_phone_fraction")
SUBPHONE_MODES = ("none", "phone", "state", "auto")
COARSE_MEANS = (0.0, 0.5, 1.0)
COARSE_SIGMA = 0.4


def resolve_subphone(mode: str | None, labels: Labels | None = None) -> str:
    """``"auto"`` -> ``"state"`` or ``"phone"`` for ``labels``; check the mode is known."""
    mode = "none" if mode is None else str(mode)
    if mode not in SUBPHONE_MODES:
        raise ValueError(f"subphone_features must be one of {SUBPHONE_MODES}, got {mode!r}")
    if mode == "auto":
        if labels is None:
            raise ValueError("subphone_features='auto' needs labels to decide")
        mode = "state" if labels.is_state_aligned else "phone"
    if mode == "state" and labels is not None and not labels.is_state_aligned:
        raise ValueError(f"{labels.path or 'labels'}: subphone_features='state' needs state-aligned labels")
    return mode


def positional_feature_names(mode: str | None) -> list[str]:
    """Column names of the positional features of a mode ("none", "phone" or "state")."""
    mode = resolve_subphone(mode, None)
    return {"none": [], "phone": list(PHONE_FEATURES), "state": list(PHONE_FEATURES + STATE_FEATURES)}[mode]


def _positions(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For segments of ``counts`` frames: per frame (segment index, index inside segment)."""
    seg = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    return seg, np.arange(int(counts.sum())) - first[seg]


def positional_features(labels: Labels, mode: str | None = "auto", frame_shift: int = FRAME_SHIFT) -> np.ndarray:
    """Positional features per frame (see the module docstring for exact definitions).

    Returns
    -------
    ndarray [shape=(N, P), dtype=float32]
        N = ``labels.num_frames(frame_shift)``; P = 0, 6 or 12.
    """
    mode = resolve_subphone(mode, labels)
    frames = np.diff(labels.frame_boundaries(frame_shift), axis=1)  # (T, S)
    n_phone = frames.sum(axis=1)
    phone, i = _positions(n_phone)
    n = n_phone[phone].astype(np.float64)
    cols: list[np.ndarray] = []
    if mode != "none":
        r = i / n
        cols += [(i + 1) / n, (n - i) / n, n]
        cols += [np.exp(-((r - mu) ** 2) / (2 * COARSE_SIGMA ** 2)) / (COARSE_SIGMA * math.sqrt(2 * math.pi))
                 for mu in COARSE_MEANS]
    if mode == "state":
        S = labels.num_states
        state, j = _positions(frames.ravel())
        m = frames.ravel()[state].astype(np.float64)
        s = state % S + 1
        cols += [s, S + 1 - s, (j + 1) / m, (m - j) / m, m, m / n]
    if not cols:
        return np.zeros((len(phone), 0), dtype=np.float32)
    return np.stack(cols, axis=1).astype(np.float32)


def linguistic_features(labels: Labels, questions: QuestionSet, frame_level: bool = False,
                        subphone_features: str | None = "auto",
                        frame_shift: int = FRAME_SHIFT) -> np.ndarray:
    """Linguistic feature matrix of one utterance.

    Parameters
    ----------
    labels : Labels
        From :func:`load_labels` (times needed for ``frame_level``; for synthesis use
        ``labels.with_durations(predicted_frames)``).
    questions : QuestionSet
        From :func:`load_questions`.
    frame_level : bool
        False: one row per phone. True: one row per frame, with positional features.
    subphone_features : {"auto", "phone", "state", "none"}
        Positional features appended at frame level (ignored at phone level).
    frame_shift : int
        Frame shift in 100 ns units (50000 = 5 ms).

    Returns
    -------
    ndarray [shape=(T, Q) or (N, Q + P), dtype=float32]
        T phones, Q questions (binary then numeric), N =
        ``labels.num_frames(frame_shift)`` frames, P positional features.
    """
    phone = questions.evaluate(labels.contexts)
    if not frame_level:
        return phone
    pos = positional_features(labels, subphone_features, frame_shift)
    counts = np.diff(labels.frame_boundaries(frame_shift)[:, [0, -1]], axis=1)[:, 0]
    return np.concatenate([np.repeat(phone, counts, axis=0), pos], axis=1)


def duration_features(labels: Labels, frame_shift: int = FRAME_SHIFT) -> np.ndarray:
    """Durations in frames: the duration model's target.

    Returns
    -------
    ndarray [shape=(T, 1) or (T, S), dtype=float32]
        Integer-valued frames per phone, or per state for state-aligned labels.
    """
    d = labels.durations(frame_shift)
    return (d[:, None] if d.ndim == 1 else d).astype(np.float32)


def feature_names(questions: QuestionSet, frame_level: bool = False, subphone_features: str = "phone") -> list[str]:
    """Column names matching :func:`linguistic_features` (``subphone_features`` resolved)."""
    names = questions.names
    if frame_level:
        names = names + positional_feature_names(subphone_features)
    return names
