#!/usr/bin/env python3
"""Write ``sps/frontend/question_files/festival_slt.hed``: HTS questions for Festival's US English labels.

Festival's ``hts_dump_feats`` (voice ``cmu_us_slt_arctic_hts``, "radio" phone set)
writes full-context labels of the form::

    p1^p2-p3+p4=p5@p6_p7/A:a1_a2_a3/B:b1-b2-b3@b4-b5&b6-b7#b8-b9$b10-b11!b12-b13;b14-b15|b16
    /C:c1+c2+c3/D:d1_d2/E:e1+e2@e3+e4&e5+e6#e7+e8/F:f1_f2/G:g1_g2/H:h1=h2@h3=h4|h5/I:i1=i2/J:j1+j2-j3

(one line; ``x`` marks an undefined value). This script writes

* binary ``QS`` questions on the quinphone ``p1..p5`` (positions LL, L, C, R, RR):
  every phone's identity and the phone classes in :data:`CLASSES`;
* binary questions on the categorical fields: vowel of the current syllable (b16),
  guessed part of speech of the previous/current/next word (d1, e1, f1) and the ToBI
  end tone of the current phrase (h5);
* numeric ``CQS`` questions on every numeric field (positions, counts, stress,
  accent, distances), each pattern made unique by the separators around the field.

Usage: ``python data/questions/make_questions.py [output.hed]``.
"""
from __future__ import annotations

import sys
from pathlib import Path

VOWELS = "aa ae ah ao aw ax axr ay eh er ey ih iy ow oy uh uw".split()
CONSONANTS = "b ch d dh dx el em en f g hh hv jh k l m n nx ng p r s sh t th v w y z zh".split()
SILENCES = "pau h# brth".split()
PHONES = VOWELS + CONSONANTS + SILENCES

STOPS = "b d g k p t".split()
AFFRICATES = "ch jh".split()
FRICATIVES = "dh f hh hv s sh th v z zh".split()
NASALS = "em en m n ng nx".split()
LIQUIDS = "el l r".split()
GLIDES = "w y".split()
VOICED_CONSONANTS = "b d dh dx el em en g hv jh l m n ng nx r v w y z zh".split()

#: phone class -> members (our own phonetic description of the radio phone set)
CLASSES: dict[str, list[str]] = {
    "Vowel": VOWELS,
    "Consonant": CONSONANTS,
    "Silence": SILENCES,
    "Stop": STOPS,
    "Affricate": AFFRICATES,
    "Fricative": FRICATIVES,
    "Nasal": NASALS,
    "Liquid": LIQUIDS,
    "Glide": GLIDES,
    "Approximant": LIQUIDS + GLIDES,
    "Flap": ["dx"],
    "Syllabic_Consonant": ["el", "em", "en"],
    "Sibilant": "ch jh s sh z zh".split(),
    "Obstruent": STOPS + AFFRICATES + FRICATIVES + ["dx"],
    "Sonorant": VOWELS + NASALS + LIQUIDS + GLIDES,
    "Voiced_Consonant": VOICED_CONSONANTS,
    "Unvoiced_Consonant": [c for c in CONSONANTS if c not in VOICED_CONSONANTS],
    "Voiced": VOWELS + VOICED_CONSONANTS,
    "Bilabial": "b em m p w".split(),
    "Labiodental": "f v".split(),
    "Labial": "b em m p w f v".split(),
    "Dental": "dh th".split(),
    "Alveolar": "d dx el en l n nx r s t z".split(),
    "Postalveolar": "ch jh sh y zh".split(),
    "Coronal": "ch d dh dx el en jh l n nx r s sh t th y z zh".split(),
    "Velar": "g k ng".split(),
    "Glottal": "hh hv".split(),
    "Front_Vowel": "ae eh ey ih iy".split(),
    "Central_Vowel": "ah ax axr er".split(),
    "Back_Vowel": "aa ao ow oy uh uw".split(),
    "High_Vowel": "ih iy uh uw".split(),
    "Mid_Vowel": "ah ax axr eh er ey ow".split(),
    "Low_Vowel": "aa ae ao aw ay oy".split(),
    "Rounded_Vowel": "ao ow oy uh uw".split(),
    "Unrounded_Vowel": "aa ae ah aw ax axr ay eh er ey ih iy".split(),
    "Long_Vowel": "aa ao er iy uw".split(),
    "Short_Vowel": "ae ah eh ih uh".split(),
    "Reduced_Vowel": "ax axr".split(),
    "Diphthong": "aw ay ey ow oy".split(),
    "Rhotic": "axr er r".split(),
}

#: quinphone position -> HTK pattern template (the LL pattern is anchored at the label start)
POSITIONS = {"LL": "{}^*", "L": "*^{}-*", "C": "*-{}+*", "R": "*+{}=*", "RR": "*={}@*"}
#: "no phone here" (x) at RR: "=x@" also occurs in the H field (h1=h2@h3 with h2 = x), so
#: this one also requires the "/A:" that follows p5
NONE_PATTERNS = {**{pos: template.format("x") for pos, template in POSITIONS.items()}, "RR": "*=x@*/A:*"}

GPOS = "content det in to md cc wp pps aux punc".split()
TOBI_END_TONES = "L-L% L-H% H-L% H-H% NONE".split()

#: numeric fields: (question name, CQS pattern). Separators on both sides make each
#: pattern match only its field; "?" stands for a one-character stress/accent value.
NUMERIC: list[tuple[str, str]] = [
    ("C-Phone_Pos_in_Syl_Fw", r"@(\d+)_"),                   # p6
    ("C-Phone_Pos_in_Syl_Bw", r"_(\d+)/A:"),                 # p7
    ("L-Syl_Stress", r"/A:(\d+)_"),                          # a1
    ("L-Syl_Accent", r"/A:?_(\d+)_"),                        # a2
    ("L-Syl_Num-Phones", r"_(\d+)/B:"),                      # a3
    ("C-Syl_Stress", r"/B:(\d+)-"),                          # b1
    ("C-Syl_Accent", r"/B:?-(\d+)-"),                        # b2
    ("C-Syl_Num-Phones", r"-(\d+)@"),                        # b3
    ("C-Syl_Pos_in_Word_Fw", r"@(\d+)-"),                    # b4
    ("C-Syl_Pos_in_Word_Bw", r"-(\d+)&"),                    # b5
    ("C-Syl_Pos_in_Phrase_Fw", r"&(\d+)-"),                  # b6
    ("C-Syl_Pos_in_Phrase_Bw", r"-(\d+)#"),                  # b7
    ("C-Syl_Num-Stressed_Before_in_Phrase", r"#(\d+)-"),     # b8
    ("C-Syl_Num-Stressed_After_in_Phrase", r"-(\d+)$"),      # b9
    ("C-Syl_Num-Accented_Before_in_Phrase", r"$(\d+)-"),     # b10
    ("C-Syl_Num-Accented_After_in_Phrase", r"-(\d+)!"),      # b11
    ("C-Syl_Dist_from_Prev_Stressed", r"!(\d+)-"),           # b12
    ("C-Syl_Dist_to_Next_Stressed", r"-(\d+);"),             # b13
    ("C-Syl_Dist_from_Prev_Accented", r";(\d+)-"),           # b14
    ("C-Syl_Dist_to_Next_Accented", r"-(\d+)|"),             # b15
    ("R-Syl_Stress", r"/C:(\d+)+"),                          # c1
    ("R-Syl_Accent", r"/C:?+(\d+)+"),                        # c2
    ("R-Syl_Num-Phones", r"+(\d+)/D:"),                      # c3
    ("L-Word_Num-Syls", r"_(\d+)/E:"),                       # d2
    ("C-Word_Num-Syls", r"+(\d+)@"),                         # e2
    ("C-Word_Pos_in_Phrase_Fw", r"@(\d+)+"),                 # e3
    ("C-Word_Pos_in_Phrase_Bw", r"+(\d+)&"),                 # e4
    ("C-Word_Num-Content_Before_in_Phrase", r"&(\d+)+"),     # e5
    ("C-Word_Num-Content_After_in_Phrase", r"+(\d+)#"),      # e6
    ("C-Word_Dist_from_Prev_Content", r"#(\d+)+"),           # e7
    ("C-Word_Dist_to_Next_Content", r"+(\d+)/F:"),           # e8
    ("R-Word_Num-Syls", r"_(\d+)/G:"),                       # f2
    ("L-Phrase_Num-Syls", r"/G:(\d+)_"),                     # g1
    ("L-Phrase_Num-Words", r"_(\d+)/H:"),                    # g2
    ("C-Phrase_Num-Syls", r"/H:(\d+)="),                     # h1
    ("C-Phrase_Num-Words", r"=(\d+)@"),                      # h2
    ("C-Phrase_Pos_in_Utt_Fw", r"@(\d+)="),                  # h3
    ("C-Phrase_Pos_in_Utt_Bw", r"=(\d+)|"),                  # h4
    ("R-Phrase_Num-Syls", r"/I:(\d+)="),                     # i1
    ("R-Phrase_Num-Words", r"=(\d+)/J:"),                    # i2
    ("Utt_Num-Syls", r"/J:(\d+)+"),                          # j1
    ("Utt_Num-Words", r"+(\d+)-"),                           # j2
    ("Utt_Num-Phrases", r"*-(\d+)"),                         # j3 (anchored at the label end)
]


def question_lines(phones: list[str] = PHONES, classes: dict[str, list[str]] = CLASSES,
                   none_patterns: dict[str, str] = NONE_PATTERNS,
                   numeric: list[tuple[str, str]] = NUMERIC) -> list[str]:
    """The question file's lines for a phone set, its classes, the "beyond the edge"
    patterns and the numeric fields (defaults: Festival's labels)."""
    lines = []

    def qs(name: str, patterns: list[str]) -> None:
        lines.append(f'QS "{name}" {{{",".join(patterns)}}}')

    for pos, template in POSITIONS.items():
        for cls, members in classes.items():
            qs(f"{pos}-{cls}", [template.format(p) for p in members])
        for p in phones:
            qs(f"{pos}-{p}", [template.format(p)])
        qs(f"{pos}-none", [none_patterns[pos]])  # beyond the utterance edge
    for v in VOWELS:
        qs(f"C-Syl_Vowel=={v}", [f"*|{v}/C:*"])
    for pos, template in (("L", "*/D:{}_*"), ("C", "*/E:{}+*"), ("R", "*/F:{}_*")):
        for g in GPOS:
            qs(f"{pos}-Word_GPOS=={g}", [template.format(g)])
    for tone in TOBI_END_TONES:
        qs(f"C-Phrase_ToBI_End_Tone=={tone}", [f"*|{tone}/I:*"])
    for name, pattern in numeric:
        lines.append(f'CQS "{name}" {{{pattern}}}')
    return lines


def write(argv: list[str], lines: list[str], default_name: str) -> None:
    """Write ``lines`` to ``argv[1]``, else to the package's ``question_files/<default_name>``."""
    default = Path(__file__).resolve().parents[2] / "sps" / "frontend" / "question_files" / default_name
    out = Path(argv[1]) if len(argv) > 1 else default
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def main(argv: list[str]) -> None:
    write(argv, question_lines(), "festival_slt.hed")


if __name__ == "__main__":
    main(sys.argv)
