"""Synthesis with trained models: :class:`Synthesizer`, the post-filter and comparison plots.

>>> syn = Synthesizer(acoustic, spec, duration=duration, questions=questions)   # doctest: +SKIP
>>> wav = syn.waveform(syn.from_text("Any sentence."))                          # doctest: +SKIP

The recipe stages ``synth``, ``eval`` and ``report`` live in :mod:`sps.stages`.
"""
from sps.synthesis.plots import plot_comparison, plot_spectrogram
from sps.synthesis.synthesizer import Synthesizer, postfilter, round_durations

__all__ = ["Synthesizer", "postfilter", "round_durations", "plot_comparison", "plot_spectrogram"]
