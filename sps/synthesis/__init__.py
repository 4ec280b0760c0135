"""Synthesis, objective evaluation and the HTML report (recipe stages ``synth``, ``eval``, ``report``).

>>> from sps.synthesis import synthesize_text
>>> synthesize_text("exp/slt_festival", "Any sentence.", "x.wav")   # doctest: +SKIP

Submodules: :mod:`~sps.synthesis.generate` (:class:`Synthesizer`, post-filter),
:mod:`~sps.synthesis.synth`, :mod:`~sps.synthesis.evaluate`, :mod:`~sps.synthesis.report`.
"""
from sps.synthesis.generate import SYNTH_DEFAULTS, Synthesizer, postfilter
from sps.synthesis.synth import synthesize_text

__all__ = ["Synthesizer", "SYNTH_DEFAULTS", "postfilter", "synthesize_text"]
