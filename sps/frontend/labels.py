"""HTS full-context label files: phone-aligned, state-aligned, or without times.

Formats (one label per line, times in HTK units of 100 ns)::

    0 1650000 x^x-pau+hh=ax@x_x/A:...          phone-aligned
    0  250000 x^x-pau+hh=ax@x_x/A:...[2]       state-aligned: one line per HMM state,
    250000 450000 x^x-pau+hh=ax@x_x/A:...[3]   states 2..S+1 of each phone in order
    x^x-pau+hh=ax@x_x/A:...                    no times (labels for synthesis)

:func:`load_labels` returns a :class:`Labels` with one row per phone. Frame counts
follow one rule everywhere: a boundary at time ``t`` falls on frame
``round(t / frame_shift)`` (round half to even, like Python's ``round``), so a
segment ``[start, end)`` has ``round(end/fs) - round(start/fs)`` frames and the
frame counts of an utterance sum exactly to ``round(end_last / fs)``, the length
the acoustic feature stage uses.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from sps.io import LabelLine, read_label_file

#: default frame shift: 5 ms in HTK units of 100 ns
FRAME_SHIFT = 50000
_STATE_RE = re.compile(r"^(.*)\[(\d+)\]$")


@dataclass(frozen=True, eq=False)
class Labels:
    """The labels of one utterance, one row per phone.

    Attributes
    ----------
    contexts : list of str, length T
        Full-context label of each phone (state suffix ``[k]`` removed).
    times : ndarray [shape=(T, S+1), dtype=int64] or None
        Boundaries in 100 ns units: phone ``t`` spans ``times[t, 0]..times[t, S]``,
        its state ``s`` (0-based) spans ``times[t, s]..times[t, s+1]``. S is
        ``num_states`` (1 for phone-aligned labels). None for labels without times.
    num_states : int
        States per phone in a state-aligned file, 1 otherwise.
    path : str or None
        Where the labels came from (for messages).
    predicted_times : bool
        True when the times are predictions (e.g. Festival's duration model), not
        an alignment.
    """
    contexts: list[str]
    times: np.ndarray | None = None
    num_states: int = 1
    path: str | None = None
    predicted_times: bool = False

    def __len__(self) -> int:
        return len(self.contexts)

    @property
    def has_times(self) -> bool:
        return self.times is not None

    @property
    def is_state_aligned(self) -> bool:
        return self.num_states > 1

    @property
    def start(self) -> np.ndarray | None:
        """Phone start times [shape=(T,), int64, 100 ns], or None."""
        return None if self.times is None else self.times[:, 0]

    @property
    def end(self) -> np.ndarray | None:
        """Phone end times [shape=(T,), int64, 100 ns], or None."""
        return None if self.times is None else self.times[:, -1]

    def _require_times(self) -> np.ndarray:
        if self.times is None:
            raise ValueError(f"{self.path or 'labels'}: labels have no times "
                             "(predict durations and use Labels.with_durations first)")
        return self.times

    def frame_boundaries(self, frame_shift: int = FRAME_SHIFT) -> np.ndarray:
        """Boundaries in frames, ``round(times / frame_shift)`` [shape=(T, S+1), int64]."""
        return np.rint(self._require_times() / frame_shift).astype(np.int64)

    def num_frames(self, frame_shift: int = FRAME_SHIFT) -> int:
        """Frames of the utterance, ``round(end_last / frame_shift)``.

        The acoustic feature stage uses the same number as the reference length, and
        the frame-level linguistic features have exactly this many rows.
        """
        times = self._require_times()
        return int(np.rint(times[-1, -1] / frame_shift)) if len(times) else 0

    def durations(self, frame_shift: int = FRAME_SHIFT) -> np.ndarray:
        """Frames per phone [shape=(T,)] or per state [shape=(T, S)] when state-aligned, int64."""
        frames = np.diff(self.frame_boundaries(frame_shift), axis=1)
        return frames[:, 0] if self.num_states == 1 else frames

    def with_durations(self, durations, frame_shift: int = FRAME_SHIFT) -> "Labels":
        """Copy with times set from frame counts (e.g. a duration model's output).

        Parameters
        ----------
        durations : array [shape=(T,), (T, 1) or (T, S)]
            Non-negative frames per phone (or per state); rounded to integers.
        frame_shift : int
            In 100 ns units.
        """
        d = np.rint(np.asarray(durations, dtype=np.float64)).astype(np.int64)
        if d.ndim == 1:
            d = d[:, None]
        if d.ndim != 2 or d.shape != (len(self), self.num_states):
            raise ValueError(f"{self.path or 'labels'}: durations of shape {np.shape(durations)} do not fit "
                             f"{len(self)} phones x {self.num_states} states")
        if (d < 0).any():
            raise ValueError(f"{self.path or 'labels'}: negative duration")
        bounds = np.concatenate([[0], np.cumsum(d.ravel())])
        idx = np.arange(len(self))[:, None] * self.num_states + np.arange(self.num_states + 1)
        return replace(self, times=bounds[idx] * int(frame_shift), predicted_times=True)

    def without_times(self) -> "Labels":
        """Copy with the times dropped (labels for synthesis)."""
        return replace(self, times=None, predicted_times=False)

    def to_text(self) -> str:
        """HTS label text: one ``[start end] context`` line per phone (or per state)."""
        out = []
        for t, c in enumerate(self.contexts):
            for s in range(self.num_states):
                ctx = f"{c}[{s + 2}]" if self.num_states > 1 else c
                if self.times is None:
                    out.append(ctx)
                else:
                    out.append(f"{self.times[t, s]} {self.times[t, s + 1]} {ctx}")
        return "".join(line + "\n" for line in out)


def _line_numbers(path: Path, count: int) -> list:
    """1-based line numbers of the non-blank lines (the ones ``read_label_file`` keeps)."""
    nums = [n for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1) if raw.strip()]
    return nums if len(nums) == count else [f"label {i + 1}" for i in range(count)]


def labels_from_lines(lines: Sequence[LabelLine], source: str = "labels",
                      line_numbers: Sequence | None = None) -> Labels:
    """Build :class:`Labels` from parsed lines, checking phone/state structure and times.

    Parameters
    ----------
    lines : sequence of LabelLine
        ``(start, end, context)`` with times in 100 ns units, or None.
    source : str
        File name used in error messages.
    line_numbers : sequence, optional
        Line number of each entry of ``lines`` (for messages); default 1, 2, ...
    """
    if line_numbers is None:
        line_numbers = range(1, len(lines) + 1)
    where = [f"{source}:{n}" for n in line_numbers]
    if not lines:
        raise ValueError(f"{source}: no labels")
    timed = lines[0].start is not None
    for i, ln in enumerate(lines):
        if (ln.start is not None) != timed or (ln.end is not None) != timed:
            raise ValueError(f"{where[i]}: mixes lines with and without times")

    # --- group state-aligned lines into phones -------------------------------------
    m0 = _STATE_RE.match(lines[0].context)
    if m0 is None:
        num_states = 1
        for i, ln in enumerate(lines):
            if _STATE_RE.match(ln.context):
                raise ValueError(f"{where[i]}: state suffix {ln.context[ln.context.rfind('['):]!r} in a "
                                 f"phone-aligned file (line {where[0]} has none)")
        contexts = [ln.context for ln in lines]
        phone_first = list(range(len(lines)))
    else:
        if int(m0.group(2)) != 2:
            raise ValueError(f"{where[0]}: state-aligned labels must start with state [2], got [{m0.group(2)}]")
        num_states = 1
        while num_states < len(lines):
            m = _STATE_RE.match(lines[num_states].context)
            if m is None or int(m.group(2)) != num_states + 2 or m.group(1) != m0.group(1):
                break
            num_states += 1
        contexts, phone_first = [], []
        for i in range(0, len(lines), num_states):
            base = None
            for s in range(num_states):
                k = i + s
                if k >= len(lines):
                    raise ValueError(f"{where[-1]}: incomplete state group at the end of the file: "
                                     f"{len(lines) - i} of {num_states} states (expected "
                                     f"[2]..[{num_states + 1}])")
                m = _STATE_RE.match(lines[k].context)
                if m is None:
                    raise ValueError(f"{where[k]}: missing state suffix [{s + 2}] in a state-aligned file")
                if int(m.group(2)) != s + 2:
                    raise ValueError(f"{where[k]}: incomplete state group: expected state [{s + 2}] "
                                     f"of [2]..[{num_states + 1}], got [{m.group(2)}]")
                if base is None:
                    base = m.group(1)
                elif m.group(1) != base:
                    raise ValueError(f"{where[k]}: state [{s + 2}] has a different context than state [2] "
                                     f"of the same phone ({where[i]})")
            contexts.append(base)
            phone_first.append(i)

    # --- times ------------------------------------------------------------------------
    times = None
    if timed:
        start = np.array([ln.start for ln in lines], dtype=np.int64)
        end = np.array([ln.end for ln in lines], dtype=np.int64)
        bad = np.flatnonzero(end < start)
        if bad.size:
            i = bad[0]
            raise ValueError(f"{where[i]}: end time {end[i]} before start time {start[i]}")
        if start[0] != 0:
            raise ValueError(f"{where[0]}: first label starts at {start[0]}, not 0")
        bad = np.flatnonzero(start[1:] != end[:-1])
        if bad.size:
            i = bad[0] + 1
            kind = "overlaps" if start[i] < end[i - 1] else "leaves a gap after"
            raise ValueError(f"{where[i]}: label starting at {start[i]} {kind} the previous label "
                             f"(ending at {end[i - 1]}); times must be monotonic and contiguous")
        bounds = start.reshape(-1, num_states)
        times = np.concatenate([bounds, end.reshape(-1, num_states)[:, -1:]], axis=1)
    for c, i in zip(contexts, phone_first):
        if not c:
            raise ValueError(f"{where[i]}: empty context")
    return Labels(contexts=contexts, times=times, num_states=num_states, path=source)


def load_labels(path: str | os.PathLike) -> Labels:
    """Read an HTS full-context label file (phone-aligned, state-aligned or untimed).

    Parameters
    ----------
    path : str or PathLike
        Label file; times in 100 ns units.

    Returns
    -------
    Labels
        One row per phone; see :class:`Labels`.

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Malformed line, times not monotonic/contiguous (overlap, gap, end before
        start, first label not at 0), mixed timed/untimed lines, state suffixes
        that do not form complete groups ``[2]..[S+1]``. Messages start with
        ``file:line``.
    """
    path = Path(path)
    lines = read_label_file(path)
    return labels_from_lines(lines, str(path), _line_numbers(path, len(lines)))
