"""Dynamic-feature windows and stream specs: the one home of both (NumPy only).

Windows
-------
A window is a triple ``(left, right, coefficients)`` with ``len(coefficients) ==
left + right + 1``; applied at frame ``t`` it gives
``sum_k coefficients[k] * x[t - left + k]``. Feature vectors with dynamic features
are stored window-major: ``[window 0 (D) | window 1 (D) | ...]``, i.e.
``[static | delta | delta-delta]``. :mod:`sps.features` computes them
(:func:`sps.features.delta_features`), :mod:`sps.mlpg` inverts them.

Stream specs
------------
The JSON beside every feature kind (``dump/out_acoustic.json``) describes its columns::

    {"kind": "out_acoustic", "dim": 187, "sample_rate": 16000, "frame_shift_ms": 5.0,
     "windows": [[0, 0, [1.0]], [1, 1, [-0.5, 0.0, 0.5]], [1, 1, [1.0, -2.0, 1.0]]],
     "streams": [{"name": "mgc", "start": 0, "static_dim": 60, "num_windows": 3}, ...],
     "analysis": {...}}

Stream ``s`` occupies columns ``start .. start + static_dim * num_windows`` and is
generated with the first ``num_windows`` windows; a stream with one window (vuv)
passes through MLPG unchanged.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

Window = tuple[int, int, tuple[float, ...]]

#: static, delta and delta-delta windows
DEFAULT_WINDOWS: tuple[Window, ...] = (
    (0, 0, (1.0,)),
    (1, 1, (-0.5, 0.0, 0.5)),
    (1, 1, (1.0, -2.0, 1.0)),
)


def default_windows() -> list[tuple[int, int, list[float]]]:
    """The usual static, delta and delta-delta windows, as fresh lists.

    Returns
    -------
    list of (int, int, list of float)
        ``[(0, 0, [1.0]), (1, 1, [-0.5, 0.0, 0.5]), (1, 1, [1.0, -2.0, 1.0])]``.
    """
    return [(left, right, list(coef)) for left, right, coef in DEFAULT_WINDOWS]


def check_windows(windows: Sequence) -> tuple[Window, ...]:
    """Validate windows and return them as a hashable tuple of ``(left, right, coefficients)``.

    Raises
    ------
    ValueError
        No window, or a window that is not ``(left >= 0, right >= 0,
        left + right + 1 coefficients)``; the message names the window.
    """
    if windows is None or len(windows) == 0:
        raise ValueError("windows: need at least one (left, right, coefficients) window")
    out = []
    for i, win in enumerate(windows):
        try:
            left, right, coef = win
            left, right = int(left), int(right)
            coef = tuple(float(c) for c in coef)
        except (TypeError, ValueError):
            raise ValueError(f"window {i}: expected (left, right, coefficients), got {win!r}") from None
        if left < 0 or right < 0 or len(coef) != left + right + 1:
            raise ValueError(f"window {i}: need left, right >= 0 and left + right + 1 coefficients, "
                             f"got left={left}, right={right}, {len(coef)} coefficients")
        out.append((left, right, coef))
    return tuple(out)


class Stream(NamedTuple):
    """One stream of a spec: columns ``start .. start + static_dim * num_windows``."""
    name: str
    start: int
    static_dim: int
    num_windows: int


def make_spec(kind: str, streams, *, sample_rate: int, frame_shift_ms: float,
              windows=DEFAULT_WINDOWS, analysis: dict | None = None) -> dict:
    """Build a stream spec.

    Parameters
    ----------
    kind : str
        Feature kind (``"out_acoustic"``, ``"mel"`` ...).
    streams : sequence of (name, static_dim, num_windows)
        In column order; ``num_windows`` is 1 (static only) or ``len(windows)``.
    sample_rate : int
        Hz.
    frame_shift_ms : float
        Frame shift in ms.
    windows : sequence of (left, right, coefficients)
        Delta windows used for the streams with ``num_windows > 1``.
    analysis : dict, optional
        Settings that produced the features (stored verbatim).
    """
    windows = check_windows(windows)
    entries, start = [], 0
    for name, static_dim, num_windows in streams:
        if num_windows not in (1, len(windows)):
            raise ValueError(f"stream {name!r}: num_windows must be 1 or {len(windows)}, got {num_windows}")
        entries.append({"name": name, "start": start, "static_dim": int(static_dim),
                        "num_windows": int(num_windows)})
        start += int(static_dim) * int(num_windows)
    return {"kind": kind, "dim": start, "sample_rate": int(sample_rate),
            "frame_shift_ms": float(frame_shift_ms),
            "windows": [[left, right, list(coef)] for left, right, coef in windows],
            "streams": entries, "analysis": dict(analysis or {})}


def parse_spec(spec: dict, dim: int | None = None) -> tuple[tuple[Window, ...], list[Stream]]:
    """Checked windows and streams of a spec.

    Parameters
    ----------
    spec : dict
        Stream spec (see the module docstring).
    dim : int, optional
        Feature dimension the streams must fit in.

    Raises
    ------
    ValueError
        Missing keys, or a stream with bad or out-of-range columns (named).
    """
    if not isinstance(spec, dict) or "windows" not in spec or "streams" not in spec:
        found = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
        raise ValueError(f"stream spec needs 'windows' and 'streams' keys, got {found}")
    windows = check_windows(spec["windows"])
    streams = []
    for s in spec["streams"]:
        name = s.get("name", "?")
        try:
            start, sd, nw = int(s["start"]), int(s["static_dim"]), int(s["num_windows"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"stream {name!r}: needs integer start, static_dim, num_windows") from None
        if not 1 <= nw <= len(windows) or sd < 1 or start < 0:
            raise ValueError(f"stream {name!r}: bad start={start}, static_dim={sd}, "
                             f"num_windows={nw} ({len(windows)} windows in the spec)")
        if dim is not None and start + sd * nw > dim:
            raise ValueError(f"stream {name!r}: columns {start}..{start + sd * nw} exceed "
                             f"the feature dimension {dim}")
        streams.append(Stream(str(name), start, sd, nw))
    return windows, streams


def stream(spec: dict, name: str) -> Stream:
    """The stream ``name`` of ``spec`` (ValueError listing the names if absent)."""
    _, streams = parse_spec(spec)
    for s in streams:
        if s.name == name:
            return s
    raise ValueError(f"{spec.get('kind', 'spec')}: no stream {name!r} (has {[s.name for s in streams]})")


def static_dim(spec: dict) -> int:
    """Total static dimension (sum of the streams' ``static_dim``)."""
    return sum(s.static_dim for s in parse_spec(spec)[1])


def static_columns(spec: dict) -> list[int]:
    """Column indices of the static part of every stream, in stream order.

    ``features[..., static_columns(spec)]`` is the static part of an ``out_acoustic``
    array (``[mgc | lf0 | vuv | bap]``: at 16 kHz mgc 0..59, lf0 180, vuv 183, bap 184).
    """
    return [s.start + i for s in parse_spec(spec)[1] for i in range(s.static_dim)]


def static_spec(spec: dict) -> dict:
    """Spec of the static columns alone (every stream with ``num_windows = 1``)."""
    streams = [(s.name, s.static_dim, 1) for s in parse_spec(spec)[1]]
    return make_spec(spec["kind"], streams, sample_rate=spec["sample_rate"],
                     frame_shift_ms=spec["frame_shift_ms"], windows=spec["windows"],
                     analysis=spec.get("analysis"))


def split_streams(x, spec: dict, static_only: bool = True) -> dict:
    """Split features into named streams.

    Parameters
    ----------
    x : ndarray or Tensor [shape=(..., T, C)]
        ``C`` is either ``spec["dim"]`` (full layout with dynamic features) or the
        total static dimension (static columns only, same stream order).
    spec : dict
        Stream spec.
    static_only : bool
        Return only the static part of each stream.

    Returns
    -------
    streams : dict name -> array [shape=(..., T, static_dim)] (or ``static_dim * num_windows``)
    """
    full, static = spec["dim"], static_dim(spec)
    C = x.shape[-1]
    if C == full:
        layout = spec
    elif C == static:
        if not static_only:
            raise ValueError(f"split_streams: input has only the {static} static columns")
        layout = static_spec(spec)
    else:
        raise ValueError(f"split_streams: {spec.get('kind')} features have {full} columns "
                         f"({static} static), got {C}")
    out = {}
    for s in parse_spec(layout)[1]:
        width = s.static_dim if static_only else s.static_dim * s.num_windows
        out[s.name] = x[..., s.start:s.start + width]
    return out
