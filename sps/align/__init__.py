"""HMM forced aligner: flat-start training, embedded Baum-Welch re-estimation, Viterbi alignment.

>>> from sps.align import Aligner, AlignerConfig
>>> aligner = Aligner.load("align/model.pt")                          # doctest: +SKIP
>>> result = aligner.align(audio, 16000, "What time does it start?")   # doctest: +SKIP
>>> print(result.labels.to_text())                                    # doctest: +SKIP

Modules: :mod:`~sps.align.features` (MFCC + deltas), :mod:`~sps.align.context` (phone
sequences, optional pauses, label rewriting), :mod:`~sps.align.graph` (an utterance's
state chain), :mod:`~sps.align.hmm` (forward-backward and Viterbi, torch and C),
:mod:`~sps.align.gmm` (diagonal Gaussian mixtures), :mod:`~sps.align.model` (the HMM
set, E-step and M-step), :mod:`~sps.align.train` (schedule, worker processes),
:mod:`~sps.align.aligner` (the :class:`Aligner` object), :mod:`~sps.align.textgrid`
(Praat TextGrids). See ``docs/align.md``.
"""
from sps.align.aligner import Aligner, Alignment, AlignmentError, make_example
from sps.align.features import FeatureSettings, align_features
from sps.align.hmm import forward_backward, viterbi
from sps.align.model import HmmSet, Stats
from sps.align.train import AlignerConfig, Example, schedule

__all__ = ["Aligner", "Alignment", "AlignmentError", "AlignerConfig", "Example", "FeatureSettings",
           "HmmSet", "Stats", "align_features", "forward_backward", "make_example", "schedule", "viterbi"]
