"""Low-level reader for HTS label files (``start end context`` lines).

``sps.frontend.load_labels`` builds phone/state structure on top of this; here we
only split lines, parse times and check them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class LabelLine(NamedTuple):
    """One label line; times in units of 100 ns (HTK), or None when absent."""
    start: int | None
    end: int | None
    context: str


def read_label_file(path: str | os.PathLike) -> list[LabelLine]:
    """Parse an HTS label file.

    Accepts ``start end context`` lines (aligned labels) or ``context`` lines
    (labels for synthesis, without times); one file must use one form.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Empty file, malformed line, negative or non-integer time, end before start,
        non-monotonic or overlapping segments, mixed timed/untimed lines. The message
        is ``file:line: problem``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: label file not found")
    lines: list[LabelLine] = []
    timed: bool | None = None
    prev_end = None
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        text = raw.strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) == 3:
            try:
                start, end = int(parts[0]), int(parts[1])
            except ValueError:
                raise ValueError(f"{path}:{n}: start/end times must be integers (100 ns units): {raw!r}") from None
            if start < 0 or end <= start:
                raise ValueError(f"{path}:{n}: bad segment times {start} {end} (need 0 <= start < end)")
            if prev_end is not None and start < prev_end:
                raise ValueError(f"{path}:{n}: segment starts at {start}, before the previous one ends ({prev_end})")
            prev_end = end
            line = LabelLine(start, end, parts[2])
        elif len(parts) == 1:
            line = LabelLine(None, None, parts[0])
        else:
            raise ValueError(f"{path}:{n}: expected 'start end context' or 'context', got {len(parts)} fields: {raw!r}")
        is_timed = line.start is not None
        if timed is None:
            timed = is_timed
        elif timed != is_timed:
            raise ValueError(f"{path}:{n}: mixes lines with and without times")
        lines.append(line)
    if not lines:
        raise ValueError(f"{path}: empty label file")
    return lines
