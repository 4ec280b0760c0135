"""Stream specs: the JSON that describes the columns of a ``dump/<kind>`` feature file.

A spec (``dump/out_acoustic.json``) looks like::

    {"kind": "out_acoustic", "dim": 187, "sample_rate": 16000, "frame_shift_ms": 5.0,
     "windows": [[0, 0, [1.0]], [1, 1, [-0.5, 0.0, 0.5]], [1, 1, [1.0, -2.0, 1.0]]],
     "streams": [{"name": "mgc", "start": 0, "static_dim": 60, "num_windows": 3}, ...],
     "analysis": {...}}

Stream ``s`` occupies columns ``start .. start + static_dim * num_windows``, ordered
window-major (``[static | delta | delta-delta]``). Only NumPy is needed here, so
torch-only code (vocoders, models) can read specs.
"""
from __future__ import annotations

import numpy as np

from sps.features.deltas import DEFAULT_WINDOWS, check_windows


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
            "windows": [[left, right, coeffs] for left, right, coeffs in windows],
            "streams": entries, "analysis": dict(analysis or {})}


def stream(spec: dict, name: str) -> dict:
    """The entry of stream ``name`` in ``spec`` (ValueError listing the names if absent)."""
    for entry in spec["streams"]:
        if entry["name"] == name:
            return entry
    raise ValueError(f"{spec.get('kind', 'spec')}: no stream {name!r} "
                     f"(has {[s['name'] for s in spec['streams']]})")


def static_columns(spec: dict) -> np.ndarray:
    """Column indices of the static part of every stream, in stream order.

    Returns
    -------
    cols : ndarray [shape=(sum of static_dim,)] int64
        For ``out_acoustic`` at 16 kHz: mgc 0..59, lf0 180, vuv 183, bap 184.
    """
    cols = [np.arange(s["start"], s["start"] + s["static_dim"]) for s in spec["streams"]]
    return np.concatenate(cols).astype(np.int64)


def static_spec(spec: dict) -> dict:
    """Spec of the static columns alone (every stream with ``num_windows = 1``)."""
    streams = [(s["name"], s["static_dim"], 1) for s in spec["streams"]]
    out = make_spec(spec["kind"], streams, sample_rate=spec["sample_rate"],
                    frame_shift_ms=spec["frame_shift_ms"], windows=spec["windows"],
                    analysis=spec.get("analysis"))
    return out


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
    full, static = spec["dim"], sum(s["static_dim"] for s in spec["streams"])
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
    for s in layout["streams"]:
        width = s["static_dim"] if static_only else s["static_dim"] * s["num_windows"]
        out[s["name"]] = x[..., s["start"]:s["start"] + width]
    return out
