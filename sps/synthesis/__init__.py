"""Synthesis with trained models: :class:`Synthesizer`, :class:`Voice`, the post-filter and plots.

>>> syn = Synthesizer(acoustic, spec, duration=duration, questions=questions)   # doctest: +SKIP
>>> wav = syn.waveform(syn.from_text("Any sentence."))                          # doctest: +SKIP
>>> wav, sr = Voice.load("voice.pt").speak("Any sentence.", vocoder="wavenet")   # doctest: +SKIP

:class:`Voice` is a voice file (``sps pack``, :mod:`sps.synthesis.voicefile`) ready to
speak; :class:`VocoderRunner` turns static features into waveforms with any vocoder.
The recipe stages ``synth``, ``eval``, ``report`` and ``pack`` live in :mod:`sps.stages`.
"""
from sps.synthesis.plots import plot_comparison, plot_spectrogram
from sps.synthesis.synthesizer import (MAX_FRAMES, Synthesizer, bound_durations, check_frames, duration_limit,
                                      postfilter, round_durations)
from sps.synthesis.vocoding import VocoderRunner
from sps.synthesis.voice import Voice
from sps.synthesis.voicefile import VoiceFileError, read_voice, write_voice

__all__ = ["Synthesizer", "Voice", "VocoderRunner", "VoiceFileError", "read_voice", "write_voice", "postfilter",
           "round_durations", "bound_durations", "duration_limit", "check_frames", "MAX_FRAMES",
           "plot_comparison", "plot_spectrogram"]
