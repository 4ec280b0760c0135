"""HTS label front end: labels, question files, linguistic and duration features.

>>> from sps.frontend import load_labels, load_questions, linguistic_features, duration_features
>>> labels = load_labels("data/slt_festival/lab/utt.lab")             # doctest: +SKIP
>>> qs = load_questions("data/questions/questions_festival_slt.hed")   # doctest: +SKIP
>>> x_dur = linguistic_features(labels, qs)                             # (T_phones, Q)  # doctest: +SKIP
>>> x_ac = linguistic_features(labels, qs, frame_level=True)            # (N_frames, Q + 6)  # doctest: +SKIP
>>> y_dur = duration_features(labels)                                   # (T_phones, 1)  # doctest: +SKIP

See ``docs/frontend.md`` for formats and exact feature definitions.
"""
from pathlib import Path

from sps.frontend.features import (duration_features, feature_names, linguistic_features,
                                   positional_feature_names, positional_features)
from sps.frontend.festival import text_to_labels
from sps.frontend.labels import FRAME_SHIFT, Labels, labels_from_lines, load_labels
from sps.frontend.questions import Question, QuestionSet, load_questions, pattern_to_regex

#: the question file shipped for the Festival / CMU (radio) phone set
DEFAULT_QUESTION_FILE = Path(__file__).resolve().parents[2] / "data" / "questions" / "questions_festival_slt.hed"

__all__ = [
    "Labels", "load_labels", "labels_from_lines", "FRAME_SHIFT",
    "Question", "QuestionSet", "load_questions", "pattern_to_regex",
    "linguistic_features", "duration_features", "positional_features", "positional_feature_names",
    "feature_names", "text_to_labels", "DEFAULT_QUESTION_FILE",
]
