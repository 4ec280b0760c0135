#!/usr/bin/env python3
"""Write ``sps/frontend/question_files/arctic_hts.hed``: HTS questions for the labels of
the CMU ARCTIC HTS demo (HTS-demo_CMU-ARCTIC-SLT and its kind).

The demo's English full-context labels have the layout::

    p1^p2-p3+p4=p5@p6_p7/A:a1_a2_a3/B:b1-b2-b3@b4-b5&b6-b7#b8-b9$b10-b11!b12-b13;b14-b15|b16
    /C:c1+c2+c3/D:d1_d2/E:e1+e2@e3+e4&e5+e6#e7+e8/F:f1_f2/G:g1_g2/H:h1=h2^h3=h4|h5/I:i1_i2/J:j1+j2-j3

(one line; ``x`` marks an undefined value). The fields mean what they mean in
Festival's labels (``data/questions/README.md``), but the H and I groups are written
differently: Festival writes ``h1=h2@h3=h4|h5`` and ``i1=i2``. The i1/i2 separator
is read as any one character, so labels writing ``i1=i2`` (as HTS demo label files
we have seen do) and ``i1_i2`` give the same answers.

The phone set is the CMU ("radio") set of the SLT ARCTIC demo, with ``sil`` and
without ``brth``. Phone classes, parts of speech and end tones are those of
``make_questions.py`` (one phonetic description for both files); this script swaps
the silences and the patterns of the fields whose separators differ.

Usage: ``python data/questions/make_questions_arctic.py [output.hed]``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_questions as festival  # noqa: E402  (the Festival file's script, beside this one)

SILENCES = "pau sil h#".split()
PHONES = festival.VOWELS + festival.CONSONANTS + SILENCES

#: phone class -> members: the Festival file's classes with this phone set's silences
CLASSES: dict[str, list[str]] = {
    **festival.CLASSES,
    "Silence": SILENCES,
}

#: the quinphone patterns are the Festival file's: "=X@" is p5 here too (the H group has
#: no "@"), so "RR-none" needs no extra anchor
POSITIONS = festival.POSITIONS
NONE_PATTERNS = {pos: template.format("x") for pos, template in POSITIONS.items()}

#: numeric fields whose separators differ from Festival's layout; "?" is the i1/i2
#: separator, whichever character it is
HTS_FIELDS = {
    "C-Phrase_Num-Words": r"=(\d+)^",        # h2: /H:h1=h2^h3
    "C-Phrase_Pos_in_Utt_Fw": r"^(\d+)=",    # h3: ^h3=h4
    "R-Phrase_Num-Syls": r"/I:(\d+)?",       # i1
    "R-Phrase_Num-Words": r"?(\d+)/J:",      # i2
}
NUMERIC: list[tuple[str, str]] = [(name, HTS_FIELDS.get(name, pattern)) for name, pattern in festival.NUMERIC]


def question_lines() -> list[str]:
    return festival.question_lines(PHONES, CLASSES, NONE_PATTERNS, NUMERIC)


def main(argv: list[str]) -> None:
    festival.write(argv, question_lines(), "arctic_hts.hed")


if __name__ == "__main__":
    main(sys.argv)
