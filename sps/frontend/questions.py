"""HTS question files (``QS`` / ``CQS``), with a choice of pattern semantics, evaluated fast.

A question file holds one question per line::

    QS  "C-Vowel"      {*-aa+*,*-ae+*,*-ah+*}
    CQS "Seg_Fw"       {@(\\d+)_}

``QS`` (binary) is 1 when any of its HTK patterns matches the full-context label,
else 0. ``CQS`` (numeric) has one pattern holding one capture group ``(\\d+)``,
``([-\\d]+)`` or ``([\\d\\.]+)``; its value is the captured number of the leftmost
match, or a default when nothing matches: -1, and -50 for the signed form
``([-\\d]+)`` (Merlin's convention, so that a signed value of -1 stays distinct
from "absent").

In every semantics ``*`` matches any run of characters, ``?`` exactly one, and
everything else is literal. The semantics differ only in where a pattern is anchored
(:data:`SEMANTICS`, default :data:`DEFAULT_SEMANTICS`):

``"merlin"``
    A pattern that contains ``*`` is matched against the whole label (HTK): it is
    anchored at the label start unless it starts with ``*`` and at the end unless it
    ends with ``*``. A pattern without any ``*`` is searched anywhere in the label
    (equivalent to HTK ``*pattern*``). So ``{l^}`` fires for ``sil^hh-iy+...``.
``"nnmnkwii"`` (the default)
    Merlin's rule, except that every pattern of a ``QS`` whose name contains
    ``LL-`` is anchored at the label start (nnmnkwii's ``append_hat_for_LL``; as
    there, a leading ``*`` of such a pattern is dropped). ``{l^}`` in ``"LL-l"``
    asks "the label starts with ``l^``", which is what an LL question means.
``"hts"``
    HTS/HHEd: the pattern must match the whole label (anchored at the start unless
    it starts with ``*``, at the end unless it ends with ``*``, with or without
    other stars). ``{l^}`` never fires on a full-context label.

``CQS`` patterns are searched the same way in all three (a pattern without ``*`` is
found anywhere; ``*`` at either end anchors as in Merlin's rule), since Merlin-style
patterns such as ``@(\\d+)_`` rely on it.

Speed: the distinct labels of an utterance are joined into one newline-separated
text. Plain substring/prefix/suffix/whole-label patterns (almost all patterns of real
question files) become substrings of that text; those shaped like a delimited field
(``-aa+``: delimiters ``-`` and ``+`` absent from the inside) are found all at once by
one scan per delimiter pair plus a dict lookup of the field, the rest with
``str.find``. Any other pattern and every ``CQS`` take one regex scan per question
(anchors become newlines, wildcards never cross one). The cost is a few dozen C-level
scans per utterance instead of one regex call per pattern per label.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

#: capture groups allowed in CQS patterns -> (regex, value when nothing matches)
CAPTURES: dict[str, tuple[str, float]] = {
    r"(\d+)": (r"(\d+)", -1.0),
    r"([-\d]+)": (r"([-\d]+)", -50.0),
    r"([\d\.]+)": (r"([\d.]+)", -1.0),
}
_CAPTURE_RE = re.compile("|".join(re.escape(c) for c in CAPTURES))
_LINE_RE = re.compile(r'^(QS|CQS)\s+"([^"]*)"\s*\{(.*)\}\s*$')
#: pattern semantics of :func:`load_questions` (see the module docstring)
SEMANTICS = ("merlin", "nnmnkwii", "hts")
#: Merlin's, with LL patterns anchored at the label start
DEFAULT_SEMANTICS = "nnmnkwii"
_CENTRAL_RE = re.compile(r"\*-([^-+*?]+)\+\*")   # a central-phone pattern *-X+*
_PHONE_RE = re.compile(r"-([^-+/]+)\+")             # the central phone of a full-context label


def _wildcards(text: str) -> str:
    """Literal HTK text -> regex: ``*`` -> ``.*``, ``?`` -> ``.``, the rest escaped."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def check_semantics(semantics: str) -> str:
    """``semantics`` if it is one of :data:`SEMANTICS`, else a ``ValueError`` listing them."""
    if semantics not in SEMANTICS:
        raise ValueError(f"question semantics must be one of {', '.join(SEMANTICS)}; got {semantics!r}")
    return semantics


def is_ll_question(name: str) -> bool:
    """Whether a question's name marks it as an LL (left-left phone) question: it contains
    ``LL-`` (nnmnkwii's test)."""
    return "LL-" in name


def anchors(pattern: str, numeric: bool = False, semantics: str = DEFAULT_SEMANTICS,
            ll: bool = False) -> tuple[bool, bool]:
    """Where a pattern is anchored: (at the label start, at the label end).

    ``ll``: the pattern belongs to an LL question (:func:`is_ll_question`); it matters
    for the ``"nnmnkwii"`` semantics only. Numeric (``CQS``) patterns follow Merlin's
    rule in every semantics.
    """
    check_semantics(semantics)
    if semantics == "hts" and not numeric:
        return not pattern.startswith("*"), not pattern.endswith("*")
    star = "*" in pattern
    start, end = star and not pattern.startswith("*"), star and not pattern.endswith("*")
    if semantics == "nnmnkwii" and ll and not numeric:
        start = True
    return start, end


def _translate(pattern: str, numeric: bool, semantics: str = DEFAULT_SEMANTICS,
               ll: bool = False) -> tuple[bool, str, bool]:
    """HTK pattern -> (anchored at start, regex body, anchored at end)."""
    if "\n" in pattern:
        raise ValueError(f"pattern {pattern!r} contains a newline")
    if numeric:
        found = _CAPTURE_RE.findall(pattern)
        if len(found) != 1:
            raise ValueError(f"numeric pattern {pattern!r} must hold exactly one capture group "
                             f"{' or '.join(CAPTURES)}, found {len(found)}")
        before, after = _CAPTURE_RE.split(pattern)
        body = _wildcards(before.lstrip("*")) + CAPTURES[found[0]][0] + _wildcards(after.rstrip("*"))
    else:
        body = _wildcards(pattern.strip("*"))
    start, end = anchors(pattern, numeric, semantics, ll)
    return start, body, end


def pattern_to_regex(pattern: str, numeric: bool = False, semantics: str = DEFAULT_SEMANTICS,
                     name: str = "") -> str:
    """Translate one HTK pattern to a regular expression for ``re.search`` on one label.

    Parameters
    ----------
    pattern : str
        HTK pattern with ``*`` / ``?`` wildcards; for ``numeric`` it must contain
        exactly one of the capture groups in :data:`CAPTURES`.
    numeric : bool
        Keep the capture group.
    semantics : {"merlin", "nnmnkwii", "hts"}
        Anchoring rule (see the module docstring).
    name : str
        Name of the question the pattern belongs to (``"nnmnkwii"`` anchors the
        patterns of ``LL-`` questions).

    Returns
    -------
    str
        With ``\\A`` / ``\\Z`` where the pattern is anchored.
    """
    start, body, end = _translate(pattern, numeric, semantics, not numeric and is_ll_question(name))
    return ("\\A" if start else "") + body + ("\\Z" if end else "")


@dataclass(frozen=True)
class Question:
    """One question: ``name``, its HTK ``patterns``, numeric or not, and where it came from."""
    name: str
    patterns: tuple[str, ...]
    numeric: bool = False
    source: str = ""  # "file:line"

    @property
    def default(self) -> float:
        """Value when nothing matches: 0 for binary, -1 or -50 (signed form) for numeric."""
        if not self.numeric:
            return 0.0
        return CAPTURES[_CAPTURE_RE.search(self.patterns[0]).group(0)][1]


def literal_form(pattern: str, semantics: str = "merlin", ll: bool = False) -> tuple[str, str] | None:
    """``("in"|"prefix"|"suffix"|"exact", text)`` when a binary pattern is a plain
    substring, prefix, suffix or whole-label test (no ``?``, no interior ``*``), else None.

    Merlin: ``*abc*`` and ``abc`` -> ``("in", "abc")``; ``abc*`` -> ``("prefix", "abc")``;
    ``*abc`` -> ``("suffix", "abc")``. HTS: ``abc`` -> ``("exact", "abc")``.
    """
    core = pattern.strip("*")
    if "*" in core or "?" in core:
        return None
    start, end = anchors(pattern, False, semantics, ll)
    if start and end:
        return ("exact", core)
    return ("prefix", core) if start else ("suffix", core) if end else ("in", core)


class _Plan:
    """How a question set is evaluated: substring searches, then a few regex scans.

    Both work on the text ``"\\n" + "\\n".join(labels) + "\\n"``, in which a label
    prefix ``abc`` is the substring ``"\\nabc"`` and a suffix ``abc`` is ``"abc\\n"``.
    """

    def __init__(self, qset: "QuestionSet"):
        needles: dict[str, list[int]] = {}             # substring -> binary question columns
        self.scans: list[tuple[int, re.Pattern]] = []  # binary questions needing a regex
        semantics = qset.semantics
        for j, q in enumerate(qset.binary):
            rest = []
            ll = is_ll_question(q.name)
            for p in q.patterns:
                form = literal_form(p, semantics, ll)
                if form is None:
                    rest.append(p)
                else:
                    kind, text = form
                    needle = ("\n" if kind in ("prefix", "exact") else "") + text + \
                        ("\n" if kind in ("suffix", "exact") else "")
                    needles.setdefault(needle, []).append(j)
            if rest:
                self.scans.append((j, _compile(rest, False, semantics, ll)))
        self.needles = list(needles)
        # a prefix needle "\nabc" found at i belongs to the label starting at i + 1
        self.shift = np.array([n[:1] == "\n" for n in self.needles], dtype=np.int64)
        # Needles "aXb" whose inner part X holds neither a nor b are fields delimited by
        # a and b: one scan of a([^ab]*)(?=b) lists every such field of the text, and a
        # dict lookup of X finds the needle. The others are searched with str.find.
        fields: dict[tuple[str, str], dict[str, int]] = {}
        self.loose: list[int] = []
        for k, n in enumerate(self.needles):
            if len(n) >= 2 and n[0] not in n[1:-1] and n[-1] not in n[1:-1]:
                fields.setdefault((n[0], n[-1]), {})[n[1:-1]] = k
            else:
                self.loose.append(k)
        self.fields = [(re.compile(f"{re.escape(a)}([^{re.escape(a + b)}\n]*)(?={re.escape(b)})"), table)
                       for (a, b), table in fields.items()]
        groups: dict[int, list[int]] = {}  # question column -> its needles
        for k, needle in enumerate(self.needles):
            for j in needles[needle]:
                groups.setdefault(j, []).append(k)
        self.columns = np.array(sorted(groups), dtype=np.int64)
        self.gather = np.array([k for j in self.columns for k in groups[j]], dtype=np.int64)
        self.offsets = np.cumsum([0] + [len(groups[j]) for j in self.columns[:-1]]).astype(np.int64)
        self.numeric = [(len(qset.binary) + j, q, q.default, _compile(q.patterns, True, semantics))
                        for j, q in enumerate(qset.numeric)]


def _compile(patterns: Sequence[str], numeric: bool, semantics: str = DEFAULT_SEMANTICS,
             ll: bool = False) -> re.Pattern:
    """Patterns as one alternation for scanning ``"\\n" + "\\n".join(labels) + "\\n"``.

    A start anchor becomes the newline before the label (consumed: a literal, so the
    scan can use fast prefix search), an end anchor a look-ahead for the newline
    after it; wildcards never match a newline, so every match lies in one label.
    """
    parts = []
    for p in patterns:
        start, body, end = _translate(p, numeric, semantics, ll)
        parts.append("(?:" + ("\\n" if start else "") + body + ("(?=\\n)" if end else "") + ")")
    return re.compile("|".join(parts))


@dataclass
class QuestionSet:
    """Questions of one file: binary ones first, then numeric ones, each in file order.

    ``evaluate(contexts)`` gives the phone-level linguistic feature matrix, with the
    pattern ``semantics`` (``"merlin"``, ``"nnmnkwii"`` or ``"hts"``; see the module
    docstring).
    """
    binary: list[Question]
    numeric: list[Question]
    path: str | None = None
    semantics: str = DEFAULT_SEMANTICS
    _plan: _Plan | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def questions(self) -> list[Question]:
        return self.binary + self.numeric

    @property
    def names(self) -> list[str]:
        return [q.name for q in self.questions]

    @property
    def dim(self) -> int:
        return len(self.binary) + len(self.numeric)

    @property
    def plan(self) -> _Plan:
        if self._plan is None:
            self._plan = _Plan(self)
        return self._plan

    def __post_init__(self):
        check_semantics(self.semantics)

    def with_semantics(self, semantics: str) -> "QuestionSet":
        """The same questions read with another pattern semantics."""
        return QuestionSet(binary=self.binary, numeric=self.numeric, path=self.path, semantics=semantics)

    def translations(self, semantics: str | None = None) -> tuple:
        """Every pattern as (anchored at start, regex body, anchored at end), question by
        question, under ``semantics`` (default: this set's). Two semantics with equal
        translations give the same answers for any label."""
        semantics = self.semantics if semantics is None else semantics
        return tuple(tuple(_translate(p, q.numeric, semantics, not q.numeric and is_ll_question(q.name))
                           for p in q.patterns) for q in self.questions)

    def same_answers(self, semantics_a: str, semantics_b: str) -> bool:
        """Whether this question file answers alike under two semantics (for any label):
        true when no pattern is read differently."""
        return self.translations(semantics_a) == self.translations(semantics_b)

    def __getstate__(self):  # compiled state is rebuilt lazily after unpickling
        state = dict(self.__dict__)
        state["_plan"] = None
        return state

    def central_phones(self) -> frozenset[str]:
        """The phones named by the central-phone patterns (``*-X+*``) of the binary questions:
        the phone set this question file knows."""
        return frozenset(m.group(1) for q in self.binary for p in q.patterns
                         for m in [_CENTRAL_RE.fullmatch(p)] if m)

    def check_contexts(self, contexts: Sequence[str], features: np.ndarray | None = None) -> dict:
        """Labels this question set cannot describe: ``{"unknown_phones": {phone: count},
        "damaged": count}``. A label is damaged when it has no central phone (``-X+``) or
        when none of the numeric questions finds its field (``features``: the matrix of
        :meth:`evaluate` for ``contexts``, computed when not given)."""
        phones = self.central_phones()
        unknown: dict[str, int] = {}
        damaged = 0
        for c in contexts:
            m = _PHONE_RE.search(c)
            if m is None:
                damaged += 1
            elif phones and m.group(1) not in phones:
                unknown[m.group(1)] = unknown.get(m.group(1), 0) + 1
        if self.numeric and len(contexts):
            feats = self.evaluate(contexts) if features is None else features
            defaults = np.array([q.default for q in self.numeric])
            none_found = np.all(feats[:, len(self.binary):] == defaults, axis=1)
            has_phone = np.array([_PHONE_RE.search(c) is not None for c in contexts])
            damaged += int(np.count_nonzero(none_found & has_phone))
        return {"unknown_phones": unknown, "damaged": damaged}

    def evaluate(self, contexts: Sequence[str]) -> np.ndarray:
        """Answer every question for every label.

        The distinct labels of the call are joined into one text. Binary patterns
        that are plain substring/prefix/suffix tests (``*-a+*``, ``a^*``, ...) are
        answered by finding every occurrence of each distinct substring in it (a
        fast C search); the other patterns and the numeric questions by one regex
        scan per question.

        Parameters
        ----------
        contexts : sequence of str, length T
            Full-context labels (no times, no state suffix).

        Returns
        -------
        ndarray [shape=(T, Q), dtype=float32]
            Columns: binary questions (0/1) in file order, then numeric questions.
        """
        uniq: dict[str, int] = {}
        inverse = np.fromiter((uniq.setdefault(c, len(uniq)) for c in contexts), dtype=np.int64,
                              count=len(contexts))
        labels = list(uniq)
        for c in labels:
            if "\n" in c:
                raise ValueError(f"label {c!r} contains a newline")
        plan = self.plan
        text = "\n" + "\n".join(labels) + "\n"
        starts = np.ones(len(labels), dtype=np.int64)  # offset of each label in ``text``
        if len(labels) > 1:
            starts[1:] += np.cumsum([len(c) + 1 for c in labels[:-1]])

        def rows(pos):  # the label holding text position ``pos`` (a newline counts to the label before)
            return np.maximum(np.searchsorted(starts, pos, side="right") - 1, 0)

        out = np.zeros((len(labels), self.dim), dtype=np.float32)
        if len(plan.needles):  # every occurrence of every needle, then OR per question
            pos, which = [], []
            for rx, table in plan.fields:
                for m in rx.finditer(text):
                    k = table.get(m.group(1))
                    if k is not None:
                        pos.append(m.start())
                        which.append(k)
            find = text.find
            for k in plan.loose:
                needle = plan.needles[k]
                i = find(needle) if needle else -1  # "" (pattern "*") is set below
                while i >= 0:
                    pos.append(i)
                    which.append(k)
                    i = find(needle, i + 1)
            hits = np.zeros((len(labels), len(plan.needles)), dtype=bool)
            which = np.array(which, dtype=np.int64)
            hits[rows(np.array(pos, dtype=np.int64) + plan.shift[which]), which] = True
            if "" in plan.needles:
                hits[:, plan.needles.index("")] = True
            out[:, plan.columns] = np.logical_or.reduceat(hits[:, plan.gather], plan.offsets, axis=1)
        for j, rx in plan.scans:
            ends = [m.end() for m in rx.finditer(text)]
            if ends:
                out[rows(ends), j] = 1.0
        for j, q, default, rx in plan.numeric:
            out[:, j] = default
            matches = list(rx.finditer(text))
            if not matches:
                continue
            r = rows([m.end() for m in matches])
            new = np.ones(len(r), dtype=bool)  # leftmost match of each label
            np.not_equal(r[1:], r[:-1], out=new[1:])
            first = np.flatnonzero(new)
            out[r[first], j] = _to_numbers([matches[i].group(1) for i in first], q)
        return out[inverse]


def _to_numbers(texts: list[str], q: Question) -> list[float]:
    try:
        return [float(t) for t in texts]
    except ValueError:
        bad = next(t for t in texts if not _is_number(t))
        raise ValueError(f"{q.source}: question {q.name!r} captured {bad!r}, not a number") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def parse_question_line(line: str, source: str = "") -> Question | None:
    """Parse one question-file line; None for blank lines and ``#`` comments."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    m = _LINE_RE.match(text)
    if m is None:
        raise ValueError(f"{source}: expected 'QS \"name\" {{pat,...}}' or 'CQS \"name\" {{pat}}', "
                         f"got {line.strip()!r}")
    kind, name, body = m.groups()
    if "{" in body or "}" in body:
        raise ValueError(f"{source}: question {name!r} has more than one {{...}} pattern group: {line.strip()!r}")
    patterns = tuple(p.strip() for p in body.split(","))
    if not name:
        raise ValueError(f"{source}: empty question name")
    if any(not p for p in patterns):
        raise ValueError(f"{source}: question {name!r} has an empty pattern")
    numeric = kind == "CQS"
    if numeric and len(patterns) != 1:
        raise ValueError(f"{source}: CQS {name!r} must have exactly one pattern, got {len(patterns)}")
    try:
        for p in patterns:
            _translate(p, numeric)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    return Question(name=name, patterns=patterns, numeric=numeric, source=source)


def load_questions(path: str | os.PathLike, semantics: str = DEFAULT_SEMANTICS) -> QuestionSet:
    """Read an HTS question file (``QS`` and ``CQS`` lines).

    Blank lines and lines starting with ``#`` are ignored; anything else that is not a
    well-formed question, a duplicate name, or a CQS pattern without exactly one
    capture group is a ``ValueError`` naming ``file:line``.

    Parameters
    ----------
    path : str or PathLike
    semantics : {"nnmnkwii", "merlin", "hts"}
        How patterns are anchored (see the module docstring): ``"nnmnkwii"`` (the
        default) is Merlin's rule with the patterns of ``LL-`` questions anchored at
        the label start; ``"merlin"`` searches a pattern without ``*`` anywhere;
        ``"hts"`` matches every pattern against the whole label.

    Returns
    -------
    QuestionSet
        ``binary`` and ``numeric`` question lists in file order.
    """
    check_semantics(semantics)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: question file not found")
    return parse_questions(path.read_text(errors="replace"), semantics, source=str(path))


def parse_questions(text: str, semantics: str = DEFAULT_SEMANTICS, source: str = "questions") -> QuestionSet:
    """A question set from the text of a question file (as :func:`load_questions`;
    errors name ``source:line``)."""
    check_semantics(semantics)
    binary, numeric, seen = [], [], {}
    for n, line in enumerate(text.splitlines(), 1):
        q = parse_question_line(line, f"{source}:{n}")
        if q is None:
            continue
        if q.name in seen:
            raise ValueError(f"{source}:{n}: duplicate question name {q.name!r} (first at line {seen[q.name]})")
        seen[q.name] = n
        (numeric if q.numeric else binary).append(q)
    if not seen:
        raise ValueError(f"{source}: no questions found")
    return QuestionSet(binary=binary, numeric=numeric, path=source, semantics=semantics)
