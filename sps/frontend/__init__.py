"""HTS label front end: labels, question files, linguistic and duration features.

>>> from sps.frontend import load_labels, load_questions, linguistic_features, duration_features
>>> labels = load_labels("data/slt_festival/lab/utt.lab")             # doctest: +SKIP
>>> qs = load_questions(question_file("festival_slt"))                # doctest: +SKIP
>>> x_dur = linguistic_features(labels, qs)                             # (T_phones, Q)  # doctest: +SKIP
>>> x_ac = linguistic_features(labels, qs, frame_level=True)            # (N_frames, Q + 6)  # doctest: +SKIP
>>> y_dur = duration_features(labels)                                   # (T_phones, 1)  # doctest: +SKIP

See ``docs/frontend.md`` for formats and exact feature definitions.
"""
from pathlib import Path

from sps.frontend.features import (duration_features, feature_names, linguistic_features,
                                   positional_feature_names, positional_features)
from sps.frontend.festival import text_to_labels, texts_to_labels
from sps.frontend.labels import FRAME_SHIFT, Labels, labels_from_lines, load_labels
from sps.frontend.questions import (DEFAULT_SEMANTICS, SEMANTICS, Question, QuestionSet, load_questions,
                                    parse_questions, pattern_to_regex)

#: question files shipped with the package (``question_file(name)``)
QUESTION_FILE_DIR = Path(__file__).resolve().parent / "question_files"
#: the default: the Festival / CMU (radio) phone set of the shipped corpus and the text front end
DEFAULT_QUESTION_FILE = QUESTION_FILE_DIR / "festival_slt.hed"


def question_file(name: str | Path | None) -> Path:
    """A question file: a path, or the name of a shipped one (``festival_slt`` for Festival's
    labels, ``arctic_hts`` for the labels of the CMU ARCTIC HTS demo; None: the default).
    Raises ``FileNotFoundError`` naming what was looked for."""
    if name is None:
        return DEFAULT_QUESTION_FILE
    path = Path(name)
    shipped = QUESTION_FILE_DIR / f"{name}.hed"
    if not path.exists() and path.parent == Path(".") and shipped.exists():
        return shipped
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in QUESTION_FILE_DIR.glob("*.hed")))
        raise FileNotFoundError(f"{path}: question file not found (a path, or a shipped name: {names})")
    return path.resolve()


__all__ = [
    "Labels", "load_labels", "labels_from_lines", "FRAME_SHIFT",
    "Question", "QuestionSet", "load_questions", "parse_questions", "pattern_to_regex", "SEMANTICS",
    "DEFAULT_SEMANTICS",
    "linguistic_features", "duration_features", "positional_features", "positional_feature_names",
    "feature_names", "text_to_labels", "texts_to_labels", "DEFAULT_QUESTION_FILE", "question_file",
]
