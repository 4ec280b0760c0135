"""Full-context phone sequences for the aligner: pause options and pause rewriting.

The aligner works on the phone sequence Festival's front end gives a transcript (HTS
full-context labels, ``p1^p2-p3+p4=p5@p6_p7/A:...``, with ``pau`` at both ends and at
phrase breaks). Between words it may add a pause, and Festival's phrase-break pauses
may be dropped: the aligner decides from the audio (:func:`pause_options` lists the
choices, :func:`apply_pauses` writes the labels of a decision).

Rules of :func:`apply_pauses`:

* every phone's quinphone fields (``p1^p2-p3+p4=p5``) are recomputed from the final
  phone sequence, so neighbours of an inserted or removed pause name it (or no longer
  do);
* every other field is kept as Festival wrote it: the syllable, word and phrase fields
  (``/A:`` ... ``/J:``) describe Festival's own phrasing, which is not re-derived from
  the chosen pauses (a pause inside a phrase does not split the phrase);
* an inserted pause gets the fields Festival gives a pause at that place: previous and
  next syllable (``/A:``, ``/C:``), word (``/D:``, ``/F:``) and phrase (``/G:``, ``/I:``)
  from its neighbours, ``x`` for its own syllable and word, and the ``/H:`` and ``/J:``
  fields of the utterance's first pause.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

PAUSE = "pau"
_QUIN = re.compile(r"^([^\^]*)\^([^-]*)-([^+]*)\+([^=]*)=([^@]*)@(.*)$")
_FIELDS = re.compile(r"/([A-J]):([^/]*)")

#: pause kinds (the aligner learns an entry probability for each)
WORD_PAUSE, PHRASE_PAUSE = 0, 1
PAUSE_KINDS = ("sp", "pau")


def split_context(context: str) -> tuple[list[str], str]:
    """``([p1, p2, p3, p4, p5], rest)`` of a full-context label (``rest``: after ``@``).

    Raises ValueError for a label without the quinphone prefix."""
    m = _QUIN.match(context)
    if m is None:
        raise ValueError(f"not an HTS full-context label (expected 'p1^p2-p3+p4=p5@...'): {context[:80]!r}")
    return list(m.groups()[:5]), m.group(6)


def phone_of(context: str) -> str:
    """The central phone ``p3`` of a full-context label."""
    return split_context(context)[0][2]


def fields(context: str) -> dict[str, str]:
    """The ``/A:`` ... ``/J:`` fields of a label (``{"A": "0_0_0", ...}``)."""
    return dict(_FIELDS.findall(context))


def _starts_word(context: str) -> bool:
    """First phone of its syllable (``p6 == 1``) and first syllable of its word (``/B:...@1-``)."""
    _, rest = split_context(context)
    pos = rest.split("_", 1)[0]
    b = fields(context).get("B", "")
    syl = b.split("@", 1)[1].split("-", 1)[0] if "@" in b else ""
    return pos == "1" and syl == "1"


@dataclass(frozen=True)
class Unit:
    """One model in the utterance's HMM chain.

    phone : str
        Model name (the central phone; ``pau`` for pauses).
    index : int or None
        Position in the Festival sequence, None for an inserted word-boundary pause.
    optional : int or None
        Pause kind (:data:`WORD_PAUSE` or :data:`PHRASE_PAUSE`) when the aligner may skip
        the unit, None when it is mandatory.
    """
    phone: str
    index: int | None
    optional: int | None = None


def merge_pauses(contexts: Sequence[str]) -> list[str]:
    """Festival's labels with runs of adjacent pauses reduced to their first one (long texts
    are synthesised in chunks, each ending and starting with a pause)."""
    out: list[str] = []
    for c in contexts:
        if out and phone_of(c) == PAUSE and phone_of(out[-1]) == PAUSE:
            continue
        out.append(c)
    return requinphone(out) if len(out) != len(contexts) else list(contexts)


def pause_options(contexts: Sequence[str], word_pauses: bool = True, phrase_pauses: bool = True) -> list[Unit]:
    """The HMM chain of a Festival phone sequence, with its optional pauses.

    Parameters
    ----------
    contexts : sequence of str, length P
        Full-context labels, in order.
    word_pauses : bool
        Add an optional pause (kind ``sp``) between every two words that Festival joins
        without a pause.
    phrase_pauses : bool
        Make Festival's pauses inside the utterance optional (kind ``pau``); the first and
        last pause stay mandatory.

    Returns
    -------
    list of Unit
        Never starts or ends with an optional unit, never holds two adjacent ones.
    """
    phones = [phone_of(c) for c in contexts]
    units: list[Unit] = []
    for i, (c, p) in enumerate(zip(contexts, phones)):
        inner = 0 < i < len(phones) - 1
        if p == PAUSE:
            optional = PHRASE_PAUSE if (phrase_pauses and inner and phones[i - 1] != PAUSE
                                        and phones[i + 1] != PAUSE) else None
            units.append(Unit(p, i, optional))
            continue
        if (word_pauses and i > 0 and phones[i - 1] != PAUSE and _starts_word(c)):
            units.append(Unit(PAUSE, None, WORD_PAUSE))
        units.append(Unit(p, i))
    return units


def requinphone(contexts: Sequence[str]) -> list[str]:
    """Labels with their quinphone fields recomputed from the sequence itself."""
    parts = [split_context(c) for c in contexts]
    phones = [q[2] for q, _ in parts]
    pad = ["x", "x"] + phones + ["x", "x"]
    return [f"{pad[i]}^{pad[i + 1]}-{pad[i + 2]}+{pad[i + 3]}={pad[i + 4]}@{rest}"
            for i, (_, rest) in enumerate(parts)]


def pause_context(prev: str, next_: str, template: str | None) -> str:
    """The label of a pause inserted between ``prev`` and ``next_`` (quinphone fields are
    filled in by :func:`requinphone`); ``template``: a Festival pause of the utterance, whose
    ``/H:`` and ``/J:`` fields are copied (else ``prev``'s ``/J:``)."""
    fp, fn = fields(prev), fields(next_)
    ft = fields(template) if template is not None else {}

    def first(value: str, n: int, sep: str) -> str:
        return sep.join(re.split(r"[-+_=@&#$!;|]", value)[:n])

    h = ft.get("H", "x=x@1=1|0")
    j = ft.get("J", fp.get("J", "0+0-0"))
    return (f"x^x-{PAUSE}+x=x@x_x/A:{first(fp.get('B', '0-0-0'), 3, '_')}"
            f"/B:x-x-x@x-x&x-x#x-x$x-x!x-x;x-x|x/C:{first(fn.get('B', '0-0-0'), 3, '+')}"
            f"/D:{first(fp.get('E', '0+0'), 2, '_')}/E:x+x@x+x&x+x#x+x/F:{first(fn.get('E', '0+0'), 2, '_')}"
            f"/G:{first(fp.get('H', '0=0'), 2, '_')}/H:{h}/I:{first(fn.get('H', '0=0'), 2, '=')}/J:{j}")


def apply_pauses(contexts: Sequence[str], units: Sequence[Unit], used: Sequence[bool]) -> tuple[list[str], list[int]]:
    """The labels of one pause decision.

    Parameters
    ----------
    contexts : sequence of str
        Festival's labels.
    units : sequence of Unit
        From :func:`pause_options` on ``contexts``.
    used : sequence of bool, same length as ``units``
        Whether each unit is in the alignment (only pauses may be left out).

    Returns
    -------
    labels : list of str
        One label per used unit, in order, quinphones recomputed (module docstring).
    kept : list of int
        The unit index of each returned label.
    """
    template = next((c for c in contexts if phone_of(c) == PAUSE), None)
    out, kept = [], []
    for k, (unit, u) in enumerate(zip(units, used)):
        if not u:
            if unit.phone != PAUSE:
                raise ValueError(f"unit {k} ({unit.phone}) is a phone: it cannot be left out")
            continue
        if unit.index is None:
            prev = contexts[units[k - 1].index]
            nxt = contexts[units[k + 1].index]
            out.append(pause_context(prev, nxt, template))
        else:
            out.append(contexts[unit.index])
        kept.append(k)
    return requinphone(out), kept
