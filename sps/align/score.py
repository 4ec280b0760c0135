"""Boundary accuracy of an alignment against reference labels of the same phones.

The two label sequences must hold as many non-pause phones, in the same order (their
names may differ, e.g. a vowel reduced to ``ax`` by another voice's lexicon; they are
matched by position); they may differ in their pauses (the aligner decides where pauses
go). Boundaries are matched through the non-pause phones: every non-pause phone
contributes its start, and its end
when a pause follows it in either sequence (otherwise its end is the next phone's start,
already counted). So when the pauses agree every internal boundary of the reference is
scored once; where a pause is in one sequence only, both of its edges are scored against
the single boundary of the other. The utterance's first and last time (0 and its end)
are not scored.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from sps.align.context import PAUSE


def boundary_pairs(ref_phones: Sequence[str], ref_times: np.ndarray, hyp_phones: Sequence[str],
                   hyp_times: np.ndarray) -> np.ndarray:
    """Matched boundaries ``[K, 2]`` (reference time, aligned time), in the units of the times.

    Parameters
    ----------
    ref_phones, hyp_phones : sequence of str
        Phone names (``pau`` for pauses).
    ref_times, hyp_times : ndarray [shape=(P, 2)]
        Start and end of every phone.

    Raises
    ------
    ValueError
        The numbers of non-pause phones differ.
    """
    def spans(phones, times):
        times = np.asarray(times)
        keep = [i for i, p in enumerate(phones) if p != PAUSE]
        paused = [i + 1 < len(phones) and phones[i + 1] == PAUSE for i in keep]
        return [phones[i] for i in keep], times[keep], np.array(paused, dtype=bool)

    rp, rt, rpause = spans(ref_phones, ref_times)
    hp, ht, hpause = spans(hyp_phones, hyp_times)
    if len(rp) != len(hp):
        raise ValueError(f"the phone sequences differ in length ({len(rp)} and {len(hp)} phones besides pauses)")
    ends = rpause | hpause   # the last phone's end counts when the final pause follows it
    out = np.stack([np.concatenate([rt[:, 0], rt[ends, 1]]), np.concatenate([ht[:, 0], ht[ends, 1]])], axis=1)
    # a first phone starting at 0 in both (no leading pause) has no boundary to score
    return out[~((out[:, 0] == 0) & (out[:, 1] == 0))]


def summarize(errors_ms: np.ndarray, tolerance_ms: float = 20.0) -> dict:
    """Of signed errors in ms (aligned minus reference): mean absolute error, median absolute
    error, the fraction within ``tolerance_ms``, and the mean signed error (the bias)."""
    signed = np.asarray(errors_ms, dtype=np.float64)
    e = np.abs(signed)
    if e.size == 0:
        return {"boundaries": 0, "mae_ms": float("nan"), "median_ms": float("nan"), "within": float("nan"),
                "bias_ms": float("nan"), "tolerance_ms": tolerance_ms}
    return {"boundaries": int(e.size), "mae_ms": float(e.mean()), "median_ms": float(np.median(e)),
            "within": float((e <= tolerance_ms).mean()), "bias_ms": float(signed.mean()),
            "tolerance_ms": tolerance_ms}
