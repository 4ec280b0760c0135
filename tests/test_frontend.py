"""Tests for sps.frontend: labels, question files, linguistic/duration features, stage."""
from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sps.frontend import (DEFAULT_QUESTION_FILE, Labels, duration_features, feature_names,
                          linguistic_features, load_labels, load_questions, pattern_to_regex,
                          positional_feature_names, question_file, text_to_labels)
from sps.frontend.questions import SEMANTICS, QuestionSet, parse_question_line

REPO = Path(__file__).resolve().parents[1]
CORPUS_LAB = REPO / "data" / "slt_festival" / "lab"

# Real Festival (cmu_us_slt_arctic_hts) output: pause, consonants, vowels, final pause.
FESTIVAL_LINES = """\
0 1650000 x^x-pau+hh=ax@x_x/A:0_0_0/B:x-x-x@x-x&x-x#x-x$x-x!x-x;x-x|x/C:0+0+2/D:0_0/E:x+x@x+x&x+x#x+x/F:content_2/G:0_0/H:x=x@1=3|0/I:3=2/J:14+12-3
1650000 2550000 x^pau-hh+ax=l@1_2/A:0_0_0/B:0-0-2@1-2&1-3#1-3$1-3!0-1;0-1|ax/C:1+1+2/D:0_0/E:content+2@1+2&0+1#0+1/F:content_1/G:0_0/H:3=2@1=3|L-L%/I:8=7/J:14+12-3
2550000 3450000 eh^n-dh+ax=s@1_2/A:1_0_3/B:0-0-2@1-1&2-9#1-7$1-4!1-1;0-1|ax/C:1+1+3/D:wp_1/E:det+1@2+7&0+4#0+1/F:content_2/G:0_0/H:10=8@1=3|L-L%/I:6=5/J:21+17-3
3450000 3800000 n^dh-ax+s=ah@2_1/A:1_0_3/B:0-0-2@1-1&2-9#1-7$1-4!1-1;0-1|ax/C:1+1+3/D:wp_1/E:det+1@2+7&0+4#0+1/F:content_2/G:0_0/H:10=8@1=3|L-L%/I:6=5/J:21+17-3
3800000 4600000 t^ae-z+ax=p@2_1/A:1_1_3/B:1-0-2@1-1&3-4#2-2$2-3!1-2;1-2|ae/C:0+0+1/D:content_1/E:in+1@3+3&2+1#1+2/F:det_1/G:10_8/H:6=5@2=2|L-L%/I:5=4/J:21+17-3
4600000 6450000 b^ow-pau+x=x@x_x/A:1_1_2/B:x-x-x@x-x&x-x#x-x$x-x!x-x;x-x|x/C:0+0+0/D:content_2/E:x+x@x+x&x+x#x+x/F:0_0/G:5_4/H:x=x@1=3|0/I:0=0/J:21+17-3
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def questions_from(tmp_path: Path, text: str) -> QuestionSet:
    return load_questions(write(tmp_path, "q.hed", text))


# ----------------------------------------------------------------------------------------
# brute-force references, written independently of the implementation

def htk_match(pattern: str, label: str) -> bool:
    """Whole-string HTK wildcard match by recursion (``*`` any run, ``?`` one character)."""
    if not pattern:
        return not label
    if pattern[0] == "*":
        return any(htk_match(pattern[1:], label[i:]) for i in range(len(label) + 1))
    if not label:
        return False
    return (pattern[0] == "?" or pattern[0] == label[0]) and htk_match(pattern[1:], label[1:])


def merlin_match(pattern: str, label: str) -> bool:
    """Documented semantics: HTK whole-label match; a pattern without ``*`` is searched anywhere."""
    return htk_match(pattern if "*" in pattern else f"*{pattern}*", label)


def semantics_match(pattern: str, label: str, semantics: str, question: str) -> bool:
    """The three documented semantics, restated on top of the recursive HTK matcher."""
    if semantics == "hts":                        # whole label, as written
        return htk_match(pattern, label)
    if semantics == "nnmnkwii" and "LL-" in question:
        # anchored at the start (leading stars dropped); the end as in Merlin's rule
        rest = pattern.lstrip("*")
        end_anchored = "*" in pattern and not pattern.endswith("*")
        return htk_match(rest if end_anchored else rest + "*", label)
    return merlin_match(pattern, label)


# ----------------------------------------------------------------------------------------
# pattern semantics

alphabet = st.sampled_from(list("ab-^"))
pattern_chars = st.sampled_from(list("ab-^*?"))


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(pattern_chars, min_size=1, max_size=7), label=st.text(alphabet, max_size=9))
def test_pattern_to_regex_matches_brute_force(pattern, label):
    assert bool(re.search(pattern_to_regex(pattern), label)) == merlin_match(pattern, label)


@settings(max_examples=300, deadline=None)
@given(patterns=st.lists(st.lists(st.text(pattern_chars, min_size=1, max_size=5), min_size=1, max_size=3),
                         min_size=1, max_size=4),
       labels=st.lists(st.text(alphabet, min_size=1, max_size=8), min_size=1, max_size=6))
def test_question_set_matches_brute_force(tmp_path_factory, patterns, labels):
    # both evaluation paths (string tests and regex scans over the joined labels) are
    # exercised: patterns with ? or inner * go to the scan, the others to str tests
    text = "".join(f'QS "q{i}" {{{",".join(ps)}}}\n' for i, ps in enumerate(patterns))
    qs = questions_from(tmp_path_factory.mktemp("q"), text)
    got = qs.evaluate(labels)
    want = np.array([[any(merlin_match(p, lab) for p in ps) for ps in patterns] for lab in labels], dtype=np.float32)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("semantics", SEMANTICS)
@settings(max_examples=150, deadline=None)
@given(patterns=st.lists(st.lists(st.text(pattern_chars, min_size=1, max_size=5), min_size=1, max_size=3),
                         min_size=1, max_size=4),
       prefixes=st.lists(st.sampled_from(["LL-", "L-", "C-LL-", "q"]), min_size=4, max_size=4),
       labels=st.lists(st.text(alphabet, min_size=1, max_size=8), min_size=1, max_size=6))
def test_every_semantics_matches_brute_force(tmp_path_factory, semantics, patterns, prefixes, labels):
    # question names with and without "LL-" (only "nnmnkwii" looks at them); both
    # evaluation paths: plain patterns become needles, "?" and inner "*" a regex scan
    names = [f"{prefixes[i]}{i}" for i in range(len(patterns))]
    text = "".join(f'QS "{n}" {{{",".join(ps)}}}\n' for n, ps in zip(names, patterns))
    path = tmp_path_factory.mktemp("q") / "q.hed"
    path.write_text(text)
    qs = load_questions(path, semantics=semantics)
    got = qs.evaluate(labels)
    want = np.array([[any(semantics_match(p, lab, semantics, n) for p in ps) for n, ps in zip(names, patterns)]
                     for lab in labels], dtype=np.float32)
    np.testing.assert_array_equal(got, want)
    for n, ps in zip(names, patterns):
        for p in ps:
            for lab in labels:
                assert bool(re.search(pattern_to_regex(p, semantics=semantics, name=n), lab)) == \
                    semantics_match(p, lab, semantics, n)


# Hand-written labels (Festival layout). The first is the case of the issue: a label after
# silence, whose LL field "sil" ends in "l".
SEMANTICS_LABELS = [
    "sil^hh-iy+l=ow@2_1/A:0_0_0/B:1-1-2@1-1&1-3#1-2$1-2!0-1;0-1|iy/C:1+1+2/D:0_0/E:content+1@1+2&1+1#0+1"
    "/F:content_1/G:0_0/H:3=2@1=1|L-L%/I:0=0/J:3+2-1",
    "l^iy-l+ow=sil@1_2/A:1_1_2/B:1-1-2@1-1&2-2#2-1$2-1!1-0;1-0|ow/C:0+0+0/D:content_1/E:content+1@2+1&1+0#1+0"
    "/F:0_0/G:0_0/H:3=2@1=1|L-L%/I:0=0/J:3+2-1",
    "x^x-sil+hh=iy@x_x/A:0_0_0/B:x-x-x@x-x&x-x#x-x$x-x!x-x;x-x|x/C:1+1+2/D:0_0/E:x+x@x+x&x+x#x+x"
    "/F:content_1/G:0_0/H:x=x@1=1|0/I:3=2/J:3+2-1",
]
SEMANTICS_QUESTIONS = """\
QS "LL-l" {l^}
QS "LL-l_star" {l^*}
QS "LL-l_both" {*l^*}
QS "LL-l_any" {l^?}
QS "LL-sil" {sil^*}
QS "LL-x" {x^*}
QS "C-iy" {*-iy+*}
QS "R-l" {+l=}
QS "C-sil_whole" {x^x-sil+hh=iy@x_x/A:*}
QS "Label3" {x^x-sil+hh=iy@x_x/A:0_0_0/B:x-x-x@x-x&x-x#x-x$x-x!x-x;x-x|x/C:1+1+2/D:0_0/E:x+x@x+x&x+x#x+x/F:content_1/G:0_0/H:x=x@1=1|0/I:3=2/J:3+2-1}
CQS "C-Phone_Pos_in_Syl_Fw" {@(\\d+)_}
"""
# expected answers, worked out by hand for each label (rows) and question (columns)
SEMANTICS_EXPECTED = {
    #             LL-l  l^*  *l^*  l^?  sil^*  x^*  C-iy  R-l  whole  Label3  pos
    "merlin":   [[1,    0,   1,    1,   1,     0,   1,    1,   0,     0,      2],
                 [1,    1,   1,    1,   0,     0,   0,    0,   0,     0,      1],
                 [0,    0,   0,    0,   0,     1,   0,    0,   1,     1,     -1]],
    "nnmnkwii": [[0,    0,   0,    0,   1,     0,   1,    1,   0,     0,      2],
                 [1,    1,   1,    1,   0,     0,   0,    0,   0,     0,      1],
                 [0,    0,   0,    0,   0,     1,   0,    0,   1,     1,     -1]],
    "hts":      [[0,    0,   1,    0,   1,     0,   1,    0,   0,     0,      2],
                 [0,    1,   1,    0,   0,     0,   0,    0,   0,     0,      1],
                 [0,    0,   0,    0,   0,     1,   0,    0,   1,     1,     -1]],
}


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_semantics_on_hand_checked_labels(tmp_path, semantics):
    path = write(tmp_path, "q.hed", SEMANTICS_QUESTIONS)
    qs = load_questions(path, semantics=semantics)
    assert qs.semantics == semantics and qs.dim == 11
    np.testing.assert_array_equal(qs.evaluate(SEMANTICS_LABELS), np.array(SEMANTICS_EXPECTED[semantics], np.float32))
    # one label at a time and in another order: the same rows
    for i in (2, 0, 1):
        np.testing.assert_array_equal(qs.evaluate([SEMANTICS_LABELS[i]])[0], SEMANTICS_EXPECTED[semantics][i])
    # the default is nnmnkwii's rule: Merlin's, with LL patterns anchored
    if semantics == "nnmnkwii":
        np.testing.assert_array_equal(load_questions(path).evaluate(SEMANTICS_LABELS),
                                      np.array(SEMANTICS_EXPECTED["nnmnkwii"], np.float32))
    # a pickled set keeps its semantics
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(qs)).evaluate(SEMANTICS_LABELS),
                                  np.array(SEMANTICS_EXPECTED[semantics], np.float32))


def test_semantics_option_errors_and_equivalence(tmp_path):
    path = write(tmp_path, "q.hed", SEMANTICS_QUESTIONS)
    with pytest.raises(ValueError, match="merlin, nnmnkwii, hts.*'htk'"):
        load_questions(path, semantics="htk")
    qs = load_questions(path)
    assert not qs.same_answers("merlin", "nnmnkwii") and not qs.same_answers("nnmnkwii", "hts")
    assert qs.with_semantics("hts").semantics == "hts"
    # the shipped files anchor or star every pattern: all three semantics read them alike
    for name in ("festival_slt", "arctic_hts"):
        shipped = load_questions(question_file(name))
        assert shipped.same_answers("merlin", "nnmnkwii") and shipped.same_answers("merlin", "hts")


@pytest.mark.parametrize("pattern, label, expected", [
    ("*-a+*", "x^b-a+c=d", True),
    ("*-a+*", "x^b-aa+c=d", False),
    ("a^*", "a^b-c+d=e", True),           # LL- questions: anchored at the label start
    ("a^*", "xa^b-c+d=e", False),
    ("*=e", "a^b-c+d=e", True),           # anchored at the end
    ("*=e", "a^b-c+d=ex", False),
    ("*-?+*", "x^b-a+c", True),
    ("*-?+*", "x^b-aa+c", False),
    ("a*e", "a^b-c+d=e", True),           # inner star, anchored both ends
    ("a*e", "a^b-c+d=ef", False),
    ("-c+", "a^b-c+d=e", True),           # no star: searched anywhere (Merlin)
    ("*$1-*", "b9$1-2!", True),           # regex metacharacters are literal
    ("*$1-*", "b9x1-2!", False),
    ("*|L-L%/I:*", "a|L-L%/I:3", True),
    ("*(a)*", "x(a)y", True),
    ("*.*", "abc", False),
    ("*[2]*", "ab[2]", True),
    ("*", "", True),
])
def test_wildcard_edge_cases(tmp_path, pattern, label, expected):
    assert bool(re.search(pattern_to_regex(pattern), label)) == expected
    qs = questions_from(tmp_path, f'QS "q" {{{pattern}}}\n')
    if label:
        assert qs.evaluate([label])[0, 0] == float(expected)


def test_numeric_questions(tmp_path):
    qs = questions_from(tmp_path, "\n".join([
        'QS "C-a" {*-a+*}',
        r'CQS "count" {/A:(\d+)_}',
        r'CQS "signed" {/S:([-\d]+)/}',
        r'CQS "real" {/R:([\d\.]+)/}',
        r'CQS "first" {#(\d+)#}',
        r'CQS "at_end" {*_(\d+)}',
        r'CQS "wild" {/B:?-(\d+)-}',
    ]) + "\n")
    assert qs.names == ["C-a", "count", "signed", "real", "first", "at_end", "wild"]
    labels = ["x^b-a+c/A:12_3/S:-7/R:2.5/#4#5#/B:1-23-4_8",
              "x^b-c+d/A:x_3/S:x/R:x/#x#/B:x-x-x_x",     # undefined values ("x")
              "x^b-c+d/A:0_3/S:3/R:10/_99/B:12-3-4_5x"]
    got = qs.evaluate(labels)
    np.testing.assert_array_equal(got[0], [1, 12, -7, 2.5, 4, 8, 23])
    np.testing.assert_array_equal(got[1], [0, -1, -50, -1, -1, -1, -1])  # -50: signed form
    np.testing.assert_array_equal(got[2], [0, 0, 3, 10, -1, -1, -1])
    assert [q.default for q in qs.numeric] == [-1, -50, -1, -1, -1, -1]


def test_numeric_leftmost_match_per_label(tmp_path):
    qs = questions_from(tmp_path, 'CQS "n" {_(\\d+)_}\n')
    np.testing.assert_array_equal(qs.evaluate(["a_1_2_3_", "_7_", "b", "_40_5_"])[:, 0], [1, 7, -1, 40])


@pytest.mark.parametrize("line, message", [
    ('QS "a" *-a+*', "expected"),
    ('QS "a" {*-a+*,}', "empty pattern"),
    ('CQS "n" {*-a+*}', "capture group"),
    ('CQS "n" {(\\d+)_(\\d+)}', "capture group"),
    ('CQS "n" {(\\d+)_,(\\d+)-}', "exactly one pattern"),
    ('XS "a" {*-a+*}', "expected"),
])
def test_question_file_errors_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path, "bad.hed", f'QS "ok" {{*-a+*}}\n\n{line}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:3") + ".*" + message):
        load_questions(path)


def test_question_file_duplicates_comments_and_missing(tmp_path):
    path = write(tmp_path, "dup.hed", '# comment\nQS "a" {*-a+*}\nQS "a" {*-b+*}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:3") + ".*duplicate"):
        load_questions(path)
    with pytest.raises(FileNotFoundError):
        load_questions(tmp_path / "missing.hed")
    assert parse_question_line("   ") is None


def test_question_set_pickles(tmp_path):
    qs = questions_from(tmp_path, 'QS "a" {*-a+*,x?^*}\nCQS "n" {/A:(\\d+)_}\n')
    labels = ["x1^b-a+c/A:3_", "q^b-c+d/A:x_"]
    expected = qs.evaluate(labels)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(qs)).evaluate(labels), expected)


# ----------------------------------------------------------------------------------------
# the shipped Festival question file against an independent parse of the label format

FIELD_RE = re.compile(
    r"^(?P<p1>[^^]+)\^(?P<p2>[^-]+)-(?P<p3>[^+]+)\+(?P<p4>[^=]+)=(?P<p5>[^@]+)@(?P<p6>[^_]+)_(?P<p7>[^/]+)"
    r"/A:(?P<a1>[^_]+)_(?P<a2>[^_]+)_(?P<a3>[^/]+)"
    r"/B:(?P<b1>[^-]+)-(?P<b2>[^-]+)-(?P<b3>[^@]+)@(?P<b4>[^-]+)-(?P<b5>[^&]+)&(?P<b6>[^-]+)-(?P<b7>[^#]+)"
    r"#(?P<b8>[^-]+)-(?P<b9>[^$]+)\$(?P<b10>[^-]+)-(?P<b11>[^!]+)!(?P<b12>[^-]+)-(?P<b13>[^;]+)"
    r";(?P<b14>[^-]+)-(?P<b15>[^|]+)\|(?P<b16>[^/]+)"
    r"/C:(?P<c1>[^+]+)\+(?P<c2>[^+]+)\+(?P<c3>[^/]+)/D:(?P<d1>[^_]+)_(?P<d2>[^/]+)"
    r"/E:(?P<e1>[^+]+)\+(?P<e2>[^@]+)@(?P<e3>[^+]+)\+(?P<e4>[^&]+)&(?P<e5>[^+]+)\+(?P<e6>[^#]+)"
    r"#(?P<e7>[^+]+)\+(?P<e8>[^/]+)/F:(?P<f1>[^_]+)_(?P<f2>[^/]+)/G:(?P<g1>[^_]+)_(?P<g2>[^/]+)"
    r"/H:(?P<h1>[^=]+)=(?P<h2>[^@]+)@(?P<h3>[^=]+)=(?P<h4>[^|]+)\|(?P<h5>[^/]+)"
    r"/I:(?P<i1>[^=]+)=(?P<i2>[^/]+)/J:(?P<j1>[^+]+)\+(?P<j2>[^-]+)-(?P<j3>[^/]+)$")

NUMERIC_FIELDS = {
    "C-Phone_Pos_in_Syl_Fw": "p6", "C-Phone_Pos_in_Syl_Bw": "p7",
    "L-Syl_Stress": "a1", "L-Syl_Accent": "a2", "L-Syl_Num-Phones": "a3",
    "C-Syl_Stress": "b1", "C-Syl_Accent": "b2", "C-Syl_Num-Phones": "b3",
    "C-Syl_Pos_in_Word_Fw": "b4", "C-Syl_Pos_in_Word_Bw": "b5",
    "C-Syl_Pos_in_Phrase_Fw": "b6", "C-Syl_Pos_in_Phrase_Bw": "b7",
    "C-Syl_Num-Stressed_Before_in_Phrase": "b8", "C-Syl_Num-Stressed_After_in_Phrase": "b9",
    "C-Syl_Num-Accented_Before_in_Phrase": "b10", "C-Syl_Num-Accented_After_in_Phrase": "b11",
    "C-Syl_Dist_from_Prev_Stressed": "b12", "C-Syl_Dist_to_Next_Stressed": "b13",
    "C-Syl_Dist_from_Prev_Accented": "b14", "C-Syl_Dist_to_Next_Accented": "b15",
    "R-Syl_Stress": "c1", "R-Syl_Accent": "c2", "R-Syl_Num-Phones": "c3",
    "L-Word_Num-Syls": "d2", "C-Word_Num-Syls": "e2",
    "C-Word_Pos_in_Phrase_Fw": "e3", "C-Word_Pos_in_Phrase_Bw": "e4",
    "C-Word_Num-Content_Before_in_Phrase": "e5", "C-Word_Num-Content_After_in_Phrase": "e6",
    "C-Word_Dist_from_Prev_Content": "e7", "C-Word_Dist_to_Next_Content": "e8",
    "R-Word_Num-Syls": "f2", "L-Phrase_Num-Syls": "g1", "L-Phrase_Num-Words": "g2",
    "C-Phrase_Num-Syls": "h1", "C-Phrase_Num-Words": "h2",
    "C-Phrase_Pos_in_Utt_Fw": "h3", "C-Phrase_Pos_in_Utt_Bw": "h4",
    "R-Phrase_Num-Syls": "i1", "R-Phrase_Num-Words": "i2",
    "Utt_Num-Syls": "j1", "Utt_Num-Words": "j2", "Utt_Num-Phrases": "j3",
}
RADIO_PHONES = ("aa ae ah ao aw ax axr ay b ch d dh dx eh el em en er ey f g hh hv ih iy jh k l m n nx ng "
                "ow oy p r s sh t th uh uw v w y z zh pau h# brth").split()
POSITION_FIELDS = {"LL": "p1", "L": "p2", "C": "p3", "R": "p4", "RR": "p5"}


def festival_contexts(tmp_path) -> list[str]:
    contexts = load_labels(write(tmp_path, "f.lab", FESTIVAL_LINES)).contexts
    if CORPUS_LAB.is_dir():  # the shipped corpus, when present (a few files, for speed)
        for path in sorted(CORPUS_LAB.glob("*.lab"))[:15]:
            contexts += load_labels(path).contexts
    return contexts


def test_festival_question_file_against_field_parse(tmp_path):
    qs = load_questions(DEFAULT_QUESTION_FILE)
    contexts = festival_contexts(tmp_path)
    feats = qs.evaluate(contexts)
    col = {name: j for j, name in enumerate(qs.names)}
    assert set(NUMERIC_FIELDS) == {q.name for q in qs.numeric}
    for c, row in zip(contexts, feats):
        fields = FIELD_RE.match(c)
        assert fields is not None, c
        for name, field in NUMERIC_FIELDS.items():
            value = fields[field]
            assert row[col[name]] == (float(value) if value.isdigit() else -1.0), (name, c)
        for pos, field in POSITION_FIELDS.items():
            phone = fields[field]
            identity = [name for name in (f"{pos}-{p}" for p in RADIO_PHONES + ["none"]) if row[col[name]] == 1]
            expect = [f"{pos}-none"] if phone == "x" else [f"{pos}-{phone}"]
            assert identity == expect, (pos, c)
            vowel = phone in {"aa", "ae", "ah", "ao", "aw", "ax", "axr", "ay", "eh", "er", "ey",
                              "ih", "iy", "ow", "oy", "uh", "uw"}
            assert row[col[f"{pos}-Vowel"]] == float(vowel)
            assert row[col[f"{pos}-Silence"]] == float(phone == "pau")
        assert row[col[f"C-Word_GPOS=={fields['e1']}"]] == 1 if fields["e1"] != "x" else True
        if fields["h5"] in ("L-L%", "L-H%", "H-H%", "NONE"):
            assert row[col[f"C-Phrase_ToBI_End_Tone=={fields['h5']}"]] == 1
        # each categorical group answers "yes" at most once
        for prefix in ("C-Syl_Vowel==", "L-Word_GPOS==", "C-Word_GPOS==", "R-Word_GPOS==",
                       "C-Phrase_ToBI_End_Tone=="):
            assert sum(row[col[n]] for n in qs.names if n.startswith(prefix)) <= 1


def test_question_file_is_generated_by_its_script(tmp_path):
    import runpy
    out = tmp_path / "q.hed"
    runpy.run_path(str(REPO / "data" / "questions" / "make_questions.py"), run_name="__not_main__")["main"](
        ["make_questions.py", str(out)])
    assert out.read_text() == DEFAULT_QUESTION_FILE.read_text()


# ----------------------------------------------------------------------------------------
# the shipped question file for the CMU ARCTIC HTS demo's labels

# Written by hand in the HTS-demo English layout ("/H:h1=h2^h3=h4|h5/I:i1_i2"): "See it."
# (pau s iy ih t pau), then two labels of a longer utterance that starts with "sil" and
# has multi-digit counts; the last writes the I group "i1=i2".
ARCTIC_LINES = """\
0 1200000 x^x-pau+s=iy@x_x/A:0_0_0/B:x-x-x@x-x&x-x#x-x$x-x!x-x;x-x|x/C:1+1+2/D:0_0/E:x+x@x+x&x+x#x+x/F:content_1/G:0_0/H:x=x^1=1|0/I:2_2/J:2+2-1
1200000 2000000 x^pau-s+iy=ih@1_2/A:0_0_0/B:1-1-2@1-1&1-2#1-1$1-1!0-1;0-1|iy/C:0+0+2/D:0_0/E:content+1@1+2&1+0#0+1/F:content_1/G:0_0/H:2=2^1=1|L-L%/I:0_0/J:2+2-1
2000000 3100000 pau^s-iy+ih=t@2_1/A:0_0_0/B:1-1-2@1-1&1-2#1-1$1-1!0-1;0-1|iy/C:0+0+2/D:0_0/E:content+1@1+2&1+0#0+1/F:content_1/G:0_0/H:2=2^1=1|L-L%/I:0_0/J:2+2-1
3100000 3700000 s^iy-ih+t=pau@1_2/A:1_1_2/B:0-0-2@1-1&2-1#2-0$2-0!1-0;1-0|ih/C:0+0+0/D:content_1/E:content+1@2+1&1+0#1+0/F:0_0/G:0_0/H:2=2^1=1|L-L%/I:0_0/J:2+2-1
3700000 4300000 iy^ih-t+pau=x@2_1/A:1_1_2/B:0-0-2@1-1&2-1#2-0$2-0!1-0;1-0|ih/C:0+0+0/D:content_1/E:content+1@2+1&1+0#1+0/F:0_0/G:0_0/H:2=2^1=1|L-L%/I:0_0/J:2+2-1
4300000 5500000 ih^t-pau+x=x@x_x/A:0_0_2/B:x-x-x@x-x&x-x#x-x$x-x!x-x;x-x|x/C:0+0+0/D:content_1/E:x+x@x+x&x+x#x+x/F:0_0/G:2_2/H:x=x^1=1|0/I:0_0/J:2+2-1
"""
ARCTIC_MORE = [
    "sil^hh-ay+w=ah@1_2/A:0_0_0/B:1-1-2@1-2&1-14#1-6$1-5!0-2;0-3|ay/C:0+0+3/D:0_0/E:content+2@1+9&1+4#0+2"
    "/F:in_1/G:0_0/H:14=9^1=3|H-H%/I:11_7/J:37+25-3",
    "x^x-sil+hh=ay@x_x/A:0_0_0/B:x-x-x@x-x&x-x#x-x$x-x!x-x;x-x|x/C:1+1+2/D:0_0/E:x+x@x+x&x+x#x+x"
    "/F:content_2/G:0_0/H:x=x^1=3|0/I:14=9/J:37+25-3",
]
ARCTIC_FIELD_RE = re.compile(FIELD_RE.pattern.replace(
    r"/H:(?P<h1>[^=]+)=(?P<h2>[^@]+)@(?P<h3>[^=]+)", r"/H:(?P<h1>[^=]+)=(?P<h2>[^^]+)\^(?P<h3>[^=]+)").replace(
    r"/I:(?P<i1>[^=]+)=(?P<i2>[^/]+)", r"/I:(?P<i1>[^=_]+)[=_](?P<i2>[^/]+)"))
ARCTIC_PHONES = ("aa ae ah ao aw ax axr ay b ch d dh dx eh el em en er ey f g hh hv ih iy jh k l m n ng nx "
                 "ow oy p r s sh t th uh uw v w y z zh pau sil h#").split()


def test_arctic_question_file_on_hand_written_labels(tmp_path):
    path = question_file("arctic_hts")
    assert path.name == "arctic_hts.hed" and path.parent == DEFAULT_QUESTION_FILE.parent
    qs = load_questions(path)
    contexts = load_labels(write(tmp_path, "a.lab", ARCTIC_LINES)).contexts + ARCTIC_MORE
    feats = qs.evaluate(contexts)
    col = {name: j for j, name in enumerate(qs.names)}
    value = {name: feats[:, j] for name, j in col.items()}
    assert (len(qs.binary), len(qs.numeric)) == (507, 43)
    # values read off the labels by hand
    np.testing.assert_array_equal(value["C-Phrase_Num-Syls"], [-1, 2, 2, 2, 2, -1, 14, -1])
    np.testing.assert_array_equal(value["C-Phrase_Num-Words"], [-1, 2, 2, 2, 2, -1, 9, -1])     # h2 (=h2^)
    np.testing.assert_array_equal(value["C-Phrase_Pos_in_Utt_Fw"], [1, 1, 1, 1, 1, 1, 1, 1])  # h3 (^h3=)
    np.testing.assert_array_equal(value["C-Phrase_Pos_in_Utt_Bw"], [1, 1, 1, 1, 1, 1, 3, 3])  # h4
    np.testing.assert_array_equal(value["R-Phrase_Num-Syls"], [2, 0, 0, 0, 0, 0, 11, 14])     # i1
    np.testing.assert_array_equal(value["R-Phrase_Num-Words"], [2, 0, 0, 0, 0, 0, 7, 9])      # i2
    np.testing.assert_array_equal(value["C-Phone_Pos_in_Syl_Fw"], [-1, 1, 2, 1, 2, -1, 1, -1])
    np.testing.assert_array_equal(value["C-Syl_Pos_in_Phrase_Bw"], [-1, 2, 2, 1, 1, -1, 14, -1])
    np.testing.assert_array_equal(value["L-Syl_Num-Phones"], [0, 0, 0, 2, 2, 2, 0, 0])
    np.testing.assert_array_equal(value["C-Word_Num-Content_Before_in_Phrase"], [-1, 1, 1, 1, 1, -1, 1, -1])
    np.testing.assert_array_equal(value["C-Word_Pos_in_Phrase_Bw"], [-1, 2, 2, 1, 1, -1, 9, -1])
    np.testing.assert_array_equal(value["L-Phrase_Num-Syls"], [0, 0, 0, 0, 0, 2, 0, 0])
    np.testing.assert_array_equal(value["Utt_Num-Syls"], [2, 2, 2, 2, 2, 2, 37, 37])
    np.testing.assert_array_equal(value["Utt_Num-Words"], [2, 2, 2, 2, 2, 2, 25, 25])
    np.testing.assert_array_equal(value["Utt_Num-Phrases"], [1, 1, 1, 1, 1, 1, 3, 3])
    np.testing.assert_array_equal(value["C-pau"], [1, 0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(value["C-sil"], [0, 0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(value["C-Silence"], [1, 0, 0, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(value["LL-sil"], [0, 0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(value["LL-Silence"], [0, 0, 1, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(value["LL-l"], [0] * 8)                      # "sil^" is not "l^"
    np.testing.assert_array_equal(value["LL-none"], [1, 1, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(value["RR-none"], [0, 0, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(value["C-Vowel"], [0, 0, 1, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(value["C-Diphthong"], [0, 0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(value["L-Glottal"], [0, 0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(value["R-Glide"], [0, 0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(value["RR-ah"], [0, 0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(value["C-Syl_Vowel==iy"], [0, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(value["C-Syl_Vowel==ay"], [0, 0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(value["R-Word_GPOS==in"], [0, 0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(value["C-Phrase_ToBI_End_Tone==L-L%"], [0, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(value["C-Phrase_ToBI_End_Tone==H-H%"], [0, 0, 0, 0, 0, 0, 1, 0])
    # every numeric question against an independent parse of the layout
    assert set(NUMERIC_FIELDS) == {q.name for q in qs.numeric}
    for c, row in zip(contexts, feats):
        fields = ARCTIC_FIELD_RE.match(c)
        assert fields is not None, c
        for name, field in NUMERIC_FIELDS.items():
            v = fields[field]
            assert row[col[name]] == (float(v) if v.isdigit() else -1.0), (name, c)
        for pos, field in POSITION_FIELDS.items():
            phone = fields[field]
            identity = [p for p in ARCTIC_PHONES + ["none"] if row[col[f"{pos}-{p}"]] == 1]
            assert identity == (["none"] if phone == "x" else [phone]), (pos, c)
    # the file's patterns are all anchored or starred: every semantics answers alike
    for semantics in SEMANTICS:
        np.testing.assert_array_equal(load_questions(path, semantics=semantics).evaluate(contexts), feats)
    assert qs.check_contexts(contexts) == {"unknown_phones": {}, "damaged": 0}
    # the Festival file reads this layout's H and I groups wrongly, which is why both exist
    festival = load_questions(DEFAULT_QUESTION_FILE).evaluate(contexts)
    names = load_questions(DEFAULT_QUESTION_FILE).names
    assert festival[6, names.index("C-Phrase_Num-Words")] == -1


def test_arctic_question_file_is_generated_by_its_script(tmp_path):
    import runpy
    out = tmp_path / "q.hed"
    runpy.run_path(str(REPO / "data" / "questions" / "make_questions_arctic.py"), run_name="__not_main__")["main"](
        ["make_questions_arctic.py", str(out)])
    assert out.read_text() == question_file("arctic_hts").read_text()


# ----------------------------------------------------------------------------------------
# labels

def test_phone_aligned_labels(tmp_path):
    lab = load_labels(write(tmp_path, "a.lab", FESTIVAL_LINES))
    assert len(lab) == 6 and lab.num_states == 1 and lab.has_times and not lab.is_state_aligned
    assert lab.contexts[1].startswith("x^pau-hh+ax")
    np.testing.assert_array_equal(lab.start[:3], [0, 1650000, 2550000])
    np.testing.assert_array_equal(lab.end[-1:], [6450000])
    assert lab.num_frames() == 129
    np.testing.assert_array_equal(lab.durations(), [33, 18, 18, 7, 16, 37])
    assert duration_features(lab).shape == (6, 1) and duration_features(lab).dtype == np.float32


def test_untimed_labels(tmp_path):
    text = "".join(line.split()[2] + "\n" for line in FESTIVAL_LINES.splitlines())
    lab = load_labels(write(tmp_path, "u.lab", text + "\n"))
    assert not lab.has_times and len(lab) == 6 and lab.start is None
    with pytest.raises(ValueError, match="no times"):
        lab.num_frames()
    with pytest.raises(ValueError, match="no times"):
        linguistic_features(lab, load_questions(DEFAULT_QUESTION_FILE), frame_level=True)
    timed = lab.with_durations([3, 4, 0, 2, 5, 1])
    assert timed.predicted_times and timed.num_frames() == 15
    np.testing.assert_array_equal(timed.durations(), [3, 4, 0, 2, 5, 1])
    timed = lab.with_durations(np.array([[3], [4], [1], [2], [5], [1]]))  # (T, 1) works too
    assert load_labels(write(tmp_path, "rt.lab", timed.to_text())).durations().tolist() == [3, 4, 1, 2, 5, 1]


def test_frame_counts_use_rounded_boundaries(tmp_path):
    # boundaries off the 5 ms grid: 32.5 -> 32 (half to even), 40.4 -> 40, 60.6 -> 61
    text = "0 1625000 a^b-c+d\n1625000 2020000 b^c-d+e\n2020000 3030000 c^d-e+f\n3030000 3040000 d^e-f+g\n"
    lab = load_labels(write(tmp_path, "r.lab", text))
    expected = [round(e / 50000) - round(s / 50000) for s, e in zip(lab.start, lab.end)]
    np.testing.assert_array_equal(lab.durations(), expected)
    assert expected == [32, 8, 21, 0]
    assert lab.num_frames() == sum(expected) == round(3040000 / 50000)
    qs = load_questions(DEFAULT_QUESTION_FILE)
    x = linguistic_features(lab, qs, frame_level=True)
    assert x.shape == (lab.num_frames(), qs.dim + 6)
    phone = linguistic_features(lab, qs)
    np.testing.assert_array_equal(x[:, :qs.dim], np.repeat(phone, expected, axis=0))
    # other frame shifts
    assert lab.num_frames(100000) == round(3040000 / 100000)
    assert linguistic_features(lab, qs, frame_level=True, frame_shift=100000).shape[0] == 30


STATE_TEXT = "".join(
    f"{s} {e} {ctx}[{k}]\n" for ctx, bounds in (
        ("x^x-pau+a=b@x_x", [0, 100000, 150000, 300000, 350000, 500000]),
        ("x^pau-a+b=x@1_1", [500000, 550000, 650000, 700000, 950000, 1000000]))
    for k, (s, e) in enumerate(zip(bounds[:-1], bounds[1:]), start=2))


def test_state_aligned_labels(tmp_path):
    lab = load_labels(write(tmp_path, "s.lab", STATE_TEXT))
    assert lab.num_states == 5 and lab.is_state_aligned and len(lab) == 2
    assert lab.contexts == ["x^x-pau+a=b@x_x", "x^pau-a+b=x@1_1"]
    np.testing.assert_array_equal(lab.durations(), [[2, 1, 3, 1, 3], [1, 2, 1, 5, 1]])
    np.testing.assert_array_equal(duration_features(lab), [[2, 1, 3, 1, 3], [1, 2, 1, 5, 1]])
    assert lab.num_frames() == 20
    assert load_labels(write(tmp_path, "s2.lab", lab.to_text())).durations().tolist() == lab.durations().tolist()


@pytest.mark.parametrize("mode", ["phone", "state", "none"])
def test_positional_features_against_loop(tmp_path, mode):
    lab = load_labels(write(tmp_path, "s.lab", STATE_TEXT))
    qs = questions_from(tmp_path, 'QS "C-pau" {*-pau+*}\nCQS "pos" {@(\\d+)_}\n')
    x = linguistic_features(lab, qs, frame_level=True, subphone_features=mode)
    assert feature_names(qs, True, mode) == qs.names + positional_feature_names(mode)
    rows = []
    for t, states in enumerate(lab.durations()):
        n = int(sum(states))
        i = 0
        for s, m in enumerate(states, start=1):
            for j in range(m):
                r = i / n
                g = [math.exp(-(r - mu) ** 2 / (2 * 0.4 ** 2)) / (0.4 * math.sqrt(2 * math.pi)) for mu in (0, .5, 1)]
                base = [1.0 if t == 0 else 0.0, -1.0 if t == 0 else 1.0]
                phone = [(i + 1) / n, (n - i) / n, n] + g
                state = [s, 6 - s, (j + 1) / m, (m - j) / m, m, m / n]
                rows.append(base + {"phone": phone, "state": phone + state, "none": []}[mode])
                i += 1
    np.testing.assert_allclose(x, np.array(rows, dtype=np.float32), rtol=1e-6)


def test_auto_and_state_mode_errors(tmp_path):
    qs = questions_from(tmp_path, 'QS "a" {*-a+*}\n')
    phone_lab = load_labels(write(tmp_path, "p.lab", "0 100000 x^x-a+b\n"))
    state_lab = load_labels(write(tmp_path, "s.lab", STATE_TEXT))
    assert linguistic_features(phone_lab, qs, frame_level=True).shape == (2, 1 + 6)
    assert linguistic_features(state_lab, qs, frame_level=True).shape == (20, 1 + 12)
    with pytest.raises(ValueError, match="state-aligned"):
        linguistic_features(phone_lab, qs, frame_level=True, subphone_features="state")
    with pytest.raises(ValueError, match="subphone_features"):
        linguistic_features(phone_lab, qs, frame_level=True, subphone_features="bogus")


@pytest.mark.parametrize("text, line, message", [
    ("0 100 a\n100 200 b c\n", 2, "expected"),                                  # reader: field count
    ("0 100 a\n\n50 200 b\n", 3, "before the previous"),                        # overlap
    ("0 100 a\n200 300 b\n", 2, "gap"),
    ("100 200 a\n200 300 b\n", 1, "not 0"),
    ("0 100 a\nb\n", 2, "mixes"),
    ("0 1 a[2]\n1 2 a[3]\n2 3 a[4]\n3 4 b[2]\n4 5 b[4]\n5 6 b[4]\n", 5, r"expected state \[3\]"),
    ("0 1 a[2]\n1 2 a[3]\n2 3 b[2]\n3 4 c[3]\n", 4, "different context"),
    ("0 1 a[2]\n1 2 a[3]\n2 3 b[2]\n", 3, "incomplete state group"),
    ("0 1 a[3]\n1 2 a[4]\n", 1, r"state \[2\]"),
    ("0 1 a[2]\n1 2 a[3]\n2 3 b\n3 4 b\n", 3, "missing state suffix"),
    ("0 1 a\n1 2 b[2]\n", 2, "phone-aligned"),
])
def test_malformed_labels_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, "bad.lab", text)
    with pytest.raises(ValueError, match=re.escape(f"{path}:{line}") + ".*" + message):
        load_labels(path)


def test_missing_label_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_labels(tmp_path / "nope.lab")


def test_with_durations_checks_shape():
    lab = Labels(contexts=["a", "b"])
    with pytest.raises(ValueError, match="do not fit"):
        lab.with_durations([1, 2, 3])
    with pytest.raises(ValueError, match="negative"):
        lab.with_durations([1, -2])


# ----------------------------------------------------------------------------------------
# Festival text front end

needs_festival = pytest.mark.skipif(shutil.which("festival") is None, reason="festival not installed")


@needs_festival
def test_text_to_labels():
    lab = text_to_labels('Say "hello", world.')
    assert not lab.has_times and len(lab) > 5
    assert lab.contexts[0].startswith("x^x-pau+") and FIELD_RE.match(lab.contexts[1])
    assert "-hh+" in lab.contexts[2] or "-hh+" in lab.contexts[3]
    timed = text_to_labels("Say hello, world.", durations=True)
    assert timed.predicted_times and timed.num_frames() > 50
    assert timed.contexts == text_to_labels("Say hello, world.").contexts


@needs_festival
def test_text_to_labels_unknown_voice():
    with pytest.raises(RuntimeError, match="festival produced no labels"):
        text_to_labels("Hi.", voice="no_such_voice")


@needs_festival
def test_texts_to_labels_batched_equals_the_shipped_labels_and_isolates_bad_texts():
    from sps.frontend import texts_to_labels
    sentences = dict(line.split("\t", 1) for line in
                     (REPO / "data" / "slt_festival" / "sentences.txt").read_text().splitlines())
    utts = ["slt_0001", "slt_0002", "slt_0004"]
    out = texts_to_labels([sentences[u] for u in utts] + ["", "?!", "Fine."], batch_size=2)
    for u, (lab, words) in zip(utts, out):
        assert lab.contexts == load_labels(CORPUS_LAB / f"{u}.lab").contexts and not lab.has_times
        assert len(words) == len(sentences[u].split())
    assert isinstance(out[3], ValueError) and "empty" in str(out[3])
    assert isinstance(out[4], ValueError) and "speakable" in str(out[4])
    assert out[5][1] == ["Fine"]
    # a bad voice fails every text with Festival's message, the batch retried text by text
    bad = texts_to_labels(["Hi.", "Ho."], voice="no_such_voice")
    assert all(isinstance(b, RuntimeError) and "festival produced no labels" in str(b) for b in bad)


def test_text_to_labels_without_festival(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install festival festvox-us-slt-hts"):
        text_to_labels("Hello.")


# ----------------------------------------------------------------------------------------
# recipe stage

def test_stage_writes_features_resumes_and_reports_bad_utterances(tmp_path):
    from sps.stages import linguistic as stage
    from sps.stages.runner import StageContext

    exp = tmp_path / "exp"
    (exp / "data").mkdir(parents=True)
    good = write(tmp_path, "good.lab", FESTIVAL_LINES)
    other = write(tmp_path, "other.lab", "0 1625000 x^x-pau+hh=ax@x_x/A:0_0_0\n1625000 2020000 x^pau-hh+ax=l@1_2\n")
    bad = write(tmp_path, "bad.lab", "0 100 a\n200 300 b\n")
    (exp / "data" / "lab.scp").write_text(f"u1 {good}\nu2 {other}\nu3 {bad}\n")
    (exp / "data" / "train.list").write_text("u3\nu1\n")  # first one unreadable
    (exp / "data" / "dev.list").write_text("u2\n")
    ctx = StageContext(exp_dir=exp, config={"frontend": {"question_file": "festival_slt"}}, max_failed=1.0)
    summaries = stage.run(ctx)
    assert summaries["train"].ok == 1 and list(summaries["train"].failed) == ["u3"]
    assert "gap" in summaries["train"].failed["u3"]
    qs = load_questions(DEFAULT_QUESTION_FILE)
    dump = exp / "dump"
    for split, utt, path in (("train", "u1", good), ("dev", "u2", other)):
        lab = load_labels(path)
        x_dur = np.load(dump / split / "in_duration" / f"{utt}.npy")
        y_dur = np.load(dump / split / "out_duration" / f"{utt}.npy")
        x_ac = np.load(dump / split / "in_acoustic" / f"{utt}.npy")
        assert x_dur.dtype == y_dur.dtype == x_ac.dtype == np.float32
        np.testing.assert_array_equal(x_dur, linguistic_features(lab, qs))
        np.testing.assert_array_equal(y_dur[:, 0], lab.durations())
        assert x_ac.shape == (lab.num_frames(), qs.dim + 6) and y_dur.sum() == lab.num_frames()
    spec = json.loads((dump / "in_acoustic.json").read_text())
    assert spec["dim"] == qs.dim + 6 == len(spec["names"]) and spec["subphone_features"] == "phone"
    assert json.loads((dump / "in_duration.json").read_text())["dim"] == qs.dim
    assert json.loads((dump / "out_duration.json").read_text())["dim"] == 1
    # resume: done utterances are skipped, the failed one is retried
    again = stage.run(ctx)
    assert again["train"].skipped == 1 and again["dev"].skipped == 1 and list(again["train"].failed) == ["u3"]
    with pytest.raises(ValueError, match="unknown key 'question_fiel'; did you mean 'question_file'"):
        stage.run(StageContext(exp_dir=exp, config={"frontend": {"question_fiel": "x"}}))
    with pytest.raises(FileNotFoundError, match="shipped name: arctic_hts, festival_slt"):
        stage.run(StageContext(exp_dir=exp, config={"frontend": {"question_file": "nonexistent"}}))


def _semantics_experiment(tmp_path):
    """An experiment whose one utterance holds the three hand-checked labels (in label
    order C, A, B) and whose question file is SEMANTICS_QUESTIONS."""
    exp = tmp_path / "exp"
    (exp / "data").mkdir(parents=True)
    order = [2, 0, 1]
    lab = write(tmp_path, "u1.lab", "".join(f"{k * 500000} {(k + 1) * 500000} {SEMANTICS_LABELS[i]}\n"
                                            for k, i in enumerate(order)))
    (exp / "data" / "lab.scp").write_text(f"u1 {lab}\n")
    (exp / "data" / "train.list").write_text("u1\n")
    qfile = write(tmp_path, "q.hed", SEMANTICS_QUESTIONS)
    return exp, qfile, order


def test_stage_records_question_semantics_and_refuses_a_change(tmp_path):
    from sps.stages import linguistic as stage
    from sps.stages.runner import StageContext

    exp, qfile, order = _semantics_experiment(tmp_path)
    x_path = exp / "dump" / "train" / "in_duration" / "u1.npy"

    def run(semantics=None, force=False, qf=qfile):
        frontend = {"question_file": str(qf)}
        if semantics is not None:
            frontend["question_semantics"] = semantics
        return stage.run(StageContext(exp_dir=exp, config={"frontend": frontend}, force=force))

    def expected(semantics):
        return np.array(SEMANTICS_EXPECTED[semantics], np.float32)[order]

    run()   # default: nnmnkwii
    np.testing.assert_array_equal(np.load(x_path), expected("nnmnkwii"))
    for kind in ("in_duration", "in_acoustic"):
        assert json.loads((exp / "dump" / f"{kind}.json").read_text())["question_semantics"] == "nnmnkwii"
    with pytest.raises(ValueError, match="question_semantics differ"):
        run("merlin")
    with pytest.raises(ValueError, match="expected one of 'nnmnkwii' \\| 'merlin' \\| 'hts', got 'htk'"):
        run("htk")
    run("hts", force=True)
    np.testing.assert_array_equal(np.load(x_path), expected("hts"))
    assert json.loads((exp / "dump" / "in_acoustic.json").read_text())["question_semantics"] == "hts"
    # a spec from before the option was recorded was made with Merlin's rule
    run("merlin", force=True)
    for kind in ("in_duration", "in_acoustic"):
        path = exp / "dump" / f"{kind}.json"
        spec = json.loads(path.read_text())
        del spec["question_semantics"]
        path.write_text(json.dumps(spec))
    run("merlin")
    with pytest.raises(ValueError, match="question_semantics differ"):
        run("nnmnkwii")
    # a file that every semantics reads alike may change semantics without --force
    plain = write(tmp_path, "plain.hed", 'QS "C-iy" {*-iy+*}\nQS "LL-l" {l^*}\nCQS "n" {@(\\d+)_}\n')
    run("merlin", force=True, qf=plain)
    run("hts", qf=plain)
    assert json.loads((exp / "dump" / "in_acoustic.json").read_text())["question_semantics"] == "hts"


def test_synthesizer_reads_the_recorded_semantics(tmp_path, monkeypatch):
    from sps.io import write_json
    from sps.stages import synth
    from sps.stages.experiment import Experiment

    exp_dir, qfile, _ = _semantics_experiment(tmp_path)
    exp = Experiment(exp_dir)
    (exp_dir / "dump").mkdir()
    write_json(exp.spec_path("out_acoustic"), {"kind": "out_acoustic"})
    made = {}
    monkeypatch.setattr(Experiment, "load_model", lambda self, name: None)
    monkeypatch.setattr(synth, "Synthesizer", lambda *args, **kwargs: made.update(kwargs))

    def semantics_used(recorded, **cfg):
        spec = {"kind": "in_acoustic", "question_file": str(qfile), "subphone_features": "phone"}
        if recorded is not None:
            spec["question_semantics"] = recorded
        write_json(exp.spec_path("in_acoustic"), spec)
        synth.make_synthesizer(exp, synth.SynthConfig(acoustic_model="ac", **cfg), need_duration=False)
        return made["questions"].semantics

    assert semantics_used("hts") == "hts"
    assert semantics_used("merlin") == "merlin"
    assert semantics_used(None) == "merlin"                  # written before the option existed
    assert semantics_used("hts", question_semantics="nnmnkwii") == "nnmnkwii"   # the config wins
    qs = made["questions"]
    np.testing.assert_array_equal(qs.evaluate(SEMANTICS_LABELS), np.array(SEMANTICS_EXPECTED["nnmnkwii"], np.float32))


def test_the_same_question_file_elsewhere_changes_nothing(tmp_path):
    """A checkout that moved (the question file's path changed, its content not): the
    linguistic stage redoes nothing and keeps the spec as it was, so the models trained on
    it stay current; synthesis finds the shipped file of the recorded content when the
    recorded path is gone."""
    import shutil
    from sps.frontend import QUESTION_FILE_DIR
    from sps.stages import linguistic as stage
    from sps.stages.experiment import Experiment
    from sps.stages.pack import question_setup
    from sps.stages.runner import StageContext

    exp, qfile, _ = _semantics_experiment(tmp_path)
    moved = tmp_path / "elsewhere" / "q.hed"
    moved.parent.mkdir()
    shutil.copy(qfile, moved)
    run = lambda qf: stage.run(StageContext(exp_dir=exp, config={"frontend": {"question_file": str(qf)}}))
    run(qfile)
    specs = {k: (exp / "dump" / f"{k}.json").read_text() for k in ("in_duration", "in_acoustic")}
    summary = run(moved)["train"]
    assert summary.ok == 0 and summary.skipped == 1
    assert {k: (exp / "dump" / f"{k}.json").read_text() for k in specs} == specs
    # the recorded file gone: the shipped file with that content stands in
    shipped = QUESTION_FILE_DIR / "festival_slt.hed"
    spec = json.loads(specs["in_acoustic"])
    spec.update(question_file=str(tmp_path / "gone" / "festival_slt.hed"),
                question_file_sha1=hashlib.sha1(shipped.read_bytes()).hexdigest())
    (exp / "dump" / "in_acoustic.json").write_text(json.dumps(spec))
    assert question_setup(Experiment(exp))[0] == shipped
