"""Praat TextGrids: alignments written for inspection, and TextGrids (e.g. from the Montreal
Forced Aligner) read as alignments instead of aligning.

Writing (:func:`write_textgrid`): tier ``words`` (Festival's words; pauses left blank)
and tier ``phones`` (Festival's phone names, ``pau`` for pauses), times in seconds
(``t / 1e7`` of the labels' 100 ns units, written exactly).

Reading (:func:`labels_from_textgrid`) maps a TextGrid's phone times onto Festival's
full-context sequence of the transcript:

* **Phone names.** A TextGrid phone is lower-cased and stripped of its ARPAbet stress
  digit; ``AH0`` becomes Festival's reduced vowel ``ax``, ``AXR`` becomes ``er``. An
  empty interval or one of :data:`SILENCES` is a pause.
* **Matching.** The non-pause phones of both sequences are aligned by edit distance
  (equal names cost 0; a substitution, an insertion and a deletion cost 1). Where the
  sequences differ, every run of Festival phones between two equal phones shares the
  time of the TextGrid phones of that run equally (whole frames); a run with no
  TextGrid phone of its own shares, equally, the time of the two equal phones around it
  with them; a TextGrid phone with no Festival phone in its run gives half of its time
  to each neighbour. The utterance is refused when more than ``max_mismatch`` of the
  phones differ or when a run gets less than one frame per phone.
* **Pauses.** A silence between two words of Festival's sequence becomes a pause there
  (a Festival phrase pause, or an inserted one: :func:`sps.align.context.apply_pauses`);
  a Festival pause without a silence in the TextGrid is dropped; a silence inside a
  Festival word is given to its neighbours (half each).
* **Times** are rounded to the frame grid (``frame_shift``, 5 ms by default); the last
  phone ends at the TextGrid's end.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from sps.align.context import PAUSE, apply_pauses, pause_options, phone_of, _starts_word
from sps.frontend import FRAME_SHIFT, Labels

#: interval labels read as pauses (besides empty ones), lower case
SILENCES = frozenset({"", "sil", "sp", "pau", "<eps>", "silence", "#", "h#", "pause"})
_STRESS = re.compile(r"^([a-z]+)[0-2]$")


def festival_phone(name: str) -> str:
    """Festival's name of a TextGrid phone (ARPAbet with stress digits, any case)."""
    p = name.strip().lower()
    if p == "ah0":
        return "ax"
    m = _STRESS.match(p)
    p = m.group(1) if m else p
    return "er" if p == "axr" else p


def word_spans(contexts: Sequence[str]) -> list[tuple[int, int]]:
    """``(first, last)`` phone index of every word (pauses belong to none)."""
    spans: list[list[int]] = []
    for i, c in enumerate(contexts):
        if phone_of(c) == PAUSE:
            continue
        if not spans or _starts_word(c) or spans[-1][1] != i - 1:
            spans.append([i, i])
        else:
            spans[-1][1] = i
    return [(a, b) for a, b in spans]


def write_textgrid(path: str | os.PathLike, labels: Labels, words: Sequence[str] | None = None) -> None:
    """Write phone-aligned ``labels`` as a TextGrid (atomically).

    Parameters
    ----------
    path : path-like
    labels : Labels
        Phone-aligned (times in 100 ns).
    words : sequence of str, optional
        The utterance's words, in order; when their count differs from the words of the
        labels (or None), words are named by their phones (``w-ah-t``).
    """
    from praatio import textgrid
    from praatio.utilities.constants import Interval

    from sps.io import atomic_path
    times = labels.times[:, [0, -1]]
    end = float(times[-1, 1]) / 1e7
    phones = [phone_of(c) for c in labels.contexts]
    phone_iv = [Interval(float(s) / 1e7, float(e) / 1e7, p) for (s, e), p in zip(times, phones)]
    spans = word_spans(labels.contexts)
    names = list(words) if words is not None and len(words) == len(spans) else \
        ["-".join(phones[a:b + 1]) for a, b in spans]
    word_iv = [Interval(float(times[a, 0]) / 1e7, float(times[b, 1]) / 1e7, w) for (a, b), w in zip(spans, names)]
    tg = textgrid.Textgrid()
    tg.addTier(textgrid.IntervalTier("words", word_iv, 0.0, end))
    tg.addTier(textgrid.IntervalTier("phones", phone_iv, 0.0, end))
    with atomic_path(path, suffix=".TextGrid") as tmp:
        tg.save(str(tmp), format="long_textgrid", includeBlankSpaces=True)


def read_textgrid_phones(path: str | os.PathLike) -> tuple[list[tuple[float, float, str]], float]:
    """``([(start s, end s, label)], end s)`` of the phone tier (a tier whose name contains
    ``phone``, else the last interval tier), gaps filled with empty intervals.

    Raises FileNotFoundError or ValueError naming the file."""
    from praatio import textgrid
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: TextGrid not found")
    try:
        tg = textgrid.openTextgrid(str(path), includeEmptyIntervals=True, reportingMode="silence")
    except Exception as err:  # noqa: BLE001 - praatio raises many kinds
        raise ValueError(f"{path}: cannot read TextGrid ({type(err).__name__}: {err})") from None
    tiers = [tg.getTier(n) for n in tg.tierNames]
    tiers = [t for t in tiers if t.tierType == textgrid.INTERVAL_TIER]
    named = [t for t in tiers if "phone" in t.name.lower()]
    if not tiers:
        raise ValueError(f"{path}: no interval tier")
    tier = named[0] if named else tiers[-1]
    entries = [(float(e.start), float(e.end), str(e.label)) for e in tier.entries]
    if not entries:
        raise ValueError(f"{path}: tier {tier.name!r} has no intervals")
    return entries, float(tg.maxTimestamp)


def _edit_alignment(a: Sequence[str], b: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """Levenshtein alignment: pairs ``(i, k)``, ``(i, None)`` or ``(None, k)`` in order."""
    n, m = len(a), len(b)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for k in range(1, m + 1):
            cost[i, k] = min(cost[i - 1, k - 1] + (a[i - 1] != b[k - 1]), cost[i - 1, k] + 1, cost[i, k - 1] + 1)
    out, i, k = [], n, m
    while i or k:
        if i and k and cost[i, k] == cost[i - 1, k - 1] + (a[i - 1] != b[k - 1]):
            out.append((i - 1, k - 1))
            i, k = i - 1, k - 1
        elif i and cost[i, k] == cost[i - 1, k] + 1:
            out.append((i - 1, None))
            i -= 1
        else:
            out.append((None, k - 1))
            k -= 1
    return out[::-1]


def labels_from_textgrid(contexts: Sequence[str], entries: Sequence[tuple[float, float, str]], end: float,
                         frame_shift: int = FRAME_SHIFT, max_mismatch: float = 0.2) -> tuple[Labels, dict]:
    """Festival's labels timed by a TextGrid's phone tier (rules in the module docstring).

    Parameters
    ----------
    contexts : sequence of str
        Festival's untimed labels of the transcript.
    entries : sequence of (start s, end s, label)
        The phone tier (:func:`read_textgrid_phones`).
    end : float
        End of the TextGrid in seconds.
    frame_shift : int
        Frame grid in 100 ns.
    max_mismatch : float
        Largest fraction of phones that may differ.

    Returns
    -------
    labels : Labels
        Phone-aligned.
    info : dict
        ``substituted``, ``festival_only``, ``textgrid_only`` phone counts, ``pauses``.

    Raises
    ------
    ValueError
        Too many differences, or too little time for a run of phones.
    """
    frames = lambda s: int(round(s * 1e7 / frame_shift))   # noqa: E731
    units = pause_options(contexts, word_pauses=True, phrase_pauses=True)
    speech_units = [k for k, u in enumerate(units) if u.phone != PAUSE]
    fest = [units[k].phone for k in speech_units]
    tg = [(frames(s), frames(e), festival_phone(lab)) for s, e, lab in entries]
    tg = [t for t in tg if t[1] > t[0] or t[2] not in SILENCES]
    speech = [i for i, t in enumerate(tg) if t[2] not in SILENCES]
    pairs = _edit_alignment(fest, [tg[i][2] for i in speech])
    differ = sum(1 for i, k in pairs if i is None or k is None or fest[i] != tg[speech[k]][2])
    if differ > max_mismatch * max(len(fest), 1):
        raise ValueError(f"the TextGrid's phones differ from Festival's in {differ} of {len(fest)} places "
                         f"(more than max_mismatch {max_mismatch:g})")
    # frame spans of Festival's speech phones, run by run between equal phones
    span = np.zeros((len(fest), 2), dtype=np.int64)
    run_f: list[int] = []
    run_t: list[int] = []

    def close_run(right: int | None):
        """Time the pending run of differing phones; ``right``: the equal phone after it."""
        if not run_f:
            run_t.clear()
            return
        if run_t:       # the run's own TextGrid phones
            members = list(run_f)
            a, b = tg[speech[run_t[0]]][0], tg[speech[run_t[-1]]][1]
        else:           # no time of its own: shared with the equal phones around it
            left = run_f[0] - 1 if run_f[0] > 0 else None
            members = ([left] if left is not None else []) + run_f + ([right] if right is not None else [])
            a = span[left, 0] if left is not None else 0
            b = span[right, 1] if right is not None else frames(end)
        if b - a < len(members):
            names = " ".join(fest[i] for i in run_f)
            raise ValueError(f"Festival's phones '{names}' get {b - a} frames from the TextGrid "
                             f"(one each needed)")
        cuts = a + np.rint(np.arange(len(members) + 1) * (b - a) / len(members)).astype(np.int64)
        for n, i in enumerate(members):
            span[i] = cuts[n], cuts[n + 1]
        run_f.clear()
        run_t.clear()

    for i, k in pairs:
        if i is not None and k is not None and fest[i] == tg[speech[k]][2]:
            span[i] = tg[speech[k]][0], tg[speech[k]][1]
            close_run(i)
        else:
            if i is not None:
                run_f.append(i)
            if k is not None:
                run_t.append(k)
    close_run(None)
    # TextGrid-only runs (no Festival phone): half of the time to each neighbour
    for i in range(1, len(fest)):
        if span[i, 0] > span[i - 1, 1]:
            gap_speech = any(span[i - 1, 1] <= tg[j][0] < span[i, 0] for j in speech)
            if gap_speech:
                mid = (span[i - 1, 1] + span[i, 0]) // 2
                span[i - 1, 1], span[i, 0] = mid, mid
    # pauses: a silence between two Festival words becomes a pause
    starts_word = [False] + [units[speech_units[i]].index is not None and
                             _starts_word(contexts[units[speech_units[i]].index]) for i in range(1, len(fest))]
    used = [u.phone != PAUSE for u in units]
    for i in range(1, len(fest)):
        gap = span[i, 0] - span[i - 1, 1]
        if gap <= 0:
            continue
        if starts_word[i]:
            between = [k for k in range(speech_units[i - 1] + 1, speech_units[i]) if units[k].phone == PAUSE]
            if between:
                used[between[0]] = True
                continue
        mid = (span[i - 1, 1] + span[i, 0]) // 2
        span[i - 1, 1], span[i, 0] = mid, mid
    first_pause = [k for k in range(speech_units[0]) if units[k].phone == PAUSE] if fest else []
    last_pause = [k for k in range(speech_units[-1] + 1, len(units)) if units[k].phone == PAUSE] if fest else []
    total = frames(end)
    if fest and span[0, 0] > 0:
        if first_pause:
            used[first_pause[0]] = True
        else:
            span[0, 0] = 0
    if fest and span[-1, 1] < total:
        if last_pause:
            used[last_pause[-1]] = True
        else:
            span[-1, 1] = total
    labels_ctx, kept = apply_pauses(contexts, units, used)
    bounds = []
    it = iter(range(len(fest)))
    for k in kept:
        if units[k].phone != PAUSE:
            i = next(it)
            bounds.append(span[i])
        else:
            bounds.append(None)
    # a pause spans the gap between its neighbours (the utterance's edges for the edge pauses)
    for n, b in enumerate(bounds):
        if b is None:
            start = bounds[n - 1][1] if n > 0 else 0
            stop = bounds[n + 1][0] if n + 1 < len(bounds) and bounds[n + 1] is not None else total
            bounds[n] = np.array([start, stop])
    times = np.array(bounds, dtype=np.int64) * frame_shift
    if (times[:, 1] <= times[:, 0]).any():
        bad = int(np.flatnonzero(times[:, 1] <= times[:, 0])[0])
        raise ValueError(f"phone {bad} ({phone_of(labels_ctx[bad])}) gets no frame on the "
                         f"{frame_shift / 1e4:g} ms grid")
    info = {"substituted": sum(1 for i, k in pairs if i is not None and k is not None
                               and fest[i] != tg[speech[k]][2]),
            "festival_only": sum(1 for i, k in pairs if k is None),
            "textgrid_only": sum(1 for i, k in pairs if i is None),
            "pauses": sum(1 for k in kept if units[k].phone == PAUSE)}
    return Labels(contexts=labels_ctx, times=times, num_states=1, path="<textgrid>"), info
