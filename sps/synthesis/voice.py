"""A trained voice in one file: load it and speak text or labels with any packed vocoder.

>>> from sps import Voice
>>> voice = Voice.load("data/pretrained/slt_festival.voice.pt")              # doctest: +SKIP
>>> wav, sr = voice.speak("Any sentence.")                                   # doctest: +SKIP
>>> wav, sr = voice.speak("Any sentence.", vocoder="wavenet", speed=1.1, pitch=2)   # doctest: +SKIP
>>> wavs, sr = voice.speak(["One sentence.", "Another one."])               # doctest: +SKIP
>>> wav, sr = voice.speak_labels("utt.lab")                                  # no Festival  # doctest: +SKIP
>>> for piece in voice.stream("A long text. Sentence by sentence."): ...    # doctest: +SKIP

A :class:`Voice` is a :class:`~sps.synthesis.Synthesizer` (duration and acoustic
models with their statistics, question set, stream spec) plus the vocoders packed
with it (:class:`~sps.synthesis.vocoding.VocoderRunner`; WORLD is always there), the
Festival voice that makes its labels and the defaults the recipe chose. It is built
from the sections of a voice file (:mod:`sps.synthesis.voicefile`), written by
``sps pack`` from an experiment; ``sps synth --text`` builds the same sections from
the experiment directly, so both speak alike.
"""
from __future__ import annotations

import logging
import os
from typing import Iterable, Iterator, Sequence

import numpy as np

from sps.features import Normalizer
from sps.frontend import Labels, load_labels, parse_questions, text_to_labels, texts_to_labels
from sps.frontend.festival import check_voice, clean_text, split_sentences
from sps.models import TrainedModel, build_model
from sps.synthesis.synthesizer import MAX_FRAMES, Synthesizer
from sps.synthesis.vocoding import WORLD, VocoderRunner
from sps.synthesis.voicefile import VoiceFileError, read_voice
from sps.vocoders.conditioning import Conditioning

logger = logging.getLogger(__name__)

#: post-filter factor used when ``postfilter=True`` and the voice records none
DEFAULT_POSTFILTER_BETA = 1.4


def trained_model(section: dict) -> TrainedModel:
    """A duration/acoustic model from its voice-file section (``config``, ``state_dict``,
    ``stats``: the arrays of its input and output statistics)."""
    cfg, st = section["config"], section["stats"]
    net = build_model(cfg["model"], int(cfg["in_dim"]), int(cfg["net_out_dim"]))
    net.load_state_dict(section["state_dict"])
    norm = Normalizer(*({k: v.numpy() for k, v in st[side].items()} for side in ("in", "out")))
    return TrainedModel(net, norm, bool(cfg.get("predict_variance", False)))


class Voice:
    """A voice ready to speak (build it with :meth:`load` or :meth:`from_sections`).

    Attributes
    ----------
    name : str
    sample_rate : int
        Hz of every waveform it makes.
    vocoders : list of str
        The vocoders it can speak with (``world`` and the packed ones).
    default_vocoder : str
        Used when ``vocoder`` is not given: the packed vocoder the recipe scored best.
    festival_voice : str
        The Festival voice that turns text into labels.
    info : dict
        What the voice file records: models, scores, how the defaults were chosen, manifest.
    """

    def __init__(self, synthesizer: Synthesizer, conditioning: Conditioning, vocoders: dict[str, dict], *,
                 name: str = "voice", festival_voice: str = "cmu_us_slt_arctic_hts",
                 default_vocoder: str = WORLD, info: dict | None = None):
        self.synthesizer = synthesizer
        self.conditioning = conditioning
        self._entries = dict(vocoders)
        self._runners: dict[str, VocoderRunner] = {}
        self.name = name
        self.festival_voice = check_voice(festival_voice)
        self.sample_rate = int(synthesizer.spec["sample_rate"])
        self.info = dict(info or {})
        if default_vocoder not in self.vocoders:
            raise ValueError(f"default vocoder {default_vocoder!r} is not packed ({', '.join(self.vocoders)})")
        self.default_vocoder = default_vocoder

    def __repr__(self) -> str:
        return f"Voice({self.name!r}, vocoders={self.vocoders}, default={self.default_vocoder!r})"

    # ------------------------------------------------------------------ building
    @classmethod
    def load(cls, path: str | os.PathLike) -> "Voice":
        """Read a voice file (``sps pack``); errors are one :class:`VoiceFileError` line."""
        return cls.from_sections(read_voice(path), source=str(path))

    @classmethod
    def from_sections(cls, sections: dict, source: str = "voice") -> "Voice":
        """A voice from the sections of a voice file (see :mod:`sps.synthesis.voicefile`)."""
        try:
            v = sections["voice"]
            spec = v["spec"]
            q = v["questions"]
            questions = parse_questions(q["text"], q["semantics"], source=f"{source}:{q.get('name', 'questions')}")
            syn_cfg = v["synthesis"]
            syn = Synthesizer(trained_model(sections["acoustic"]), spec, duration=trained_model(sections["duration"]),
                              questions=questions, subphone_features=v["subphone_features"],
                              postfilter_beta=syn_cfg["postfilter_beta"] if syn_cfg["postfilter"] else None,
                              vuv_threshold=syn_cfg["vuv_threshold"], max_duration=syn_cfg.get("max_duration"),
                              max_frames=syn_cfg.get("max_frames", MAX_FRAMES))
            c = sections["conditioning"]
            cond = Conditioning(spec, c["mean"].numpy(), c["std"].numpy())
            info = {k: v.get(k) for k in ("models", "scores", "defaults", "source", "description")}
            info["manifest"] = sections.get("manifest", {})
            return cls(syn, cond, sections["vocoders"], name=v["name"], festival_voice=v["festival_voice"],
                       default_vocoder=v["default_vocoder"], info=info)
        except VoiceFileError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as err:
            what = f"missing entry {err}" if isinstance(err, KeyError) else " ".join(str(err).split())[:300]
            raise VoiceFileError(f"{source}: malformed voice file ({what})") from None

    # ------------------------------------------------------------------ vocoders
    @property
    def vocoders(self) -> list[str]:
        return [WORLD, *sorted(self._entries)]

    def add_vocoder(self, runner: VocoderRunner) -> None:
        """Speak with one more vocoder (one trained elsewhere, or built for a measurement):
        it must read this voice's stream layout (:attr:`conditioning`)."""
        if runner.model is not None and runner.cond is not None and runner.cond.dim != self.conditioning.dim:
            raise ValueError(f"vocoder {runner.name}: {runner.cond.dim} conditioning features, the voice has "
                             f"{self.conditioning.dim}")
        self._runners[runner.name] = runner
        self._entries.setdefault(runner.name, {})

    def vocoder(self, name: str | None = None) -> VocoderRunner:
        """The runner of vocoder ``name`` (None: :attr:`default_vocoder`); a vocoder that
        was not packed is refused by name."""
        if name is None:
            name = self.default_vocoder
            logger.info("voice %s: vocoder %s (the default: %s)", self.name, name,
                        (self.info.get("defaults") or {}).get("vocoder", "packed"))
        if name not in self._runners:
            if name == WORLD:
                runner = VocoderRunner(WORLD, self.synthesizer.spec, vuv_threshold=self.synthesizer.vuv_threshold)
            elif name in self._entries:
                runner = VocoderRunner.build(name, self.synthesizer.spec, self._entries[name], self.conditioning)
            else:
                raise ValueError(f"voice {self.name!r} has no vocoder {name!r} (packed: {', '.join(self.vocoders)}); "
                                 f"pack one with: sps pack ... vocoders=[{name}]")
            self._runners[name] = runner
        return self._runners[name]

    # ------------------------------------------------------------------ parameters
    def _beta(self, postfilter):
        if postfilter is None:
            return self.synthesizer.postfilter_beta
        if postfilter is False:
            return None
        if postfilter is True:
            return self.info.get("defaults", {}).get("postfilter_beta") or DEFAULT_POSTFILTER_BETA
        return float(postfilter)

    def labels(self, text: str) -> Labels:
        """Festival's full-context labels of ``text`` (any length; see :func:`sps.frontend.text_to_labels`)."""
        return text_to_labels(text, voice=self.festival_voice)

    def labels_many(self, texts: Sequence[str]) -> list:
        """The labels of many texts from a few Festival processes (:func:`sps.frontend.texts_to_labels`):
        per text a :class:`Labels`, or the exception that says why it has none."""
        return [r if isinstance(r, Exception) else r[0] for r in texts_to_labels(list(texts), voice=self.festival_voice)]

    def parameters(self, labels: Labels | str | os.PathLike, *, speed: float = 1.0, pitch: float = 0.0,
                   postfilter: bool | float | None = None) -> np.ndarray:
        """Labels (a :class:`Labels` or a label file; times are ignored) -> static features
        ``[mgc | lf0 | vuv | bap]`` [shape=(T, S)] float32, predicted durations."""
        if not isinstance(labels, Labels):
            labels = load_labels(labels)
        if len(labels) == 0:
            raise ValueError(f"{labels.path}: no labels to speak")
        return self.synthesizer.from_labels(labels, speed=speed, pitch=pitch, postfilter_beta=self._beta(postfilter))

    # ------------------------------------------------------------------ speaking
    def speak(self, text: str | Sequence[str], vocoder: str | None = None, *, speed: float = 1.0,
              pitch: float = 0.0, postfilter: bool | float | None = None, seed: int = 0,
              batch_size: int = 8):
        """Speak text (Festival makes the labels).

        Parameters
        ----------
        text : str or list of str
            One text (any length) or many (the batched form).
        vocoder : str, optional
            One of :attr:`vocoders` (None: :attr:`default_vocoder`).
        speed : float
            > 1 speaks faster (predicted durations divided by it).
        pitch : float
            Pitch shift in semitones.
        postfilter : bool or float, optional
            Mel-cepstral post-filter: None as packed, False off, True on, a float its factor.
        seed : int
            Seed of the neural vocoders' draws (each utterance its own generator).
        batch_size : int
            Utterances per neural-vocoder call in the batched form.

        Returns
        -------
        (waveform, sample_rate)
            ``ndarray [shape=(N,)]`` float64 in [-1, 1], or a list of them for a list of texts.
        """
        if isinstance(text, str):
            return self.speak_labels(self.labels(text), vocoder, speed=speed, pitch=pitch, postfilter=postfilter,
                                     seed=seed)
        labels = self.labels_many(text)
        for i, lab in enumerate(labels):
            if isinstance(lab, Exception):
                raise type(lab)(f"text {i + 1} of {len(labels)}: {lab}")
        return self.speak_labels(labels, vocoder, speed=speed, pitch=pitch, postfilter=postfilter, seed=seed,
                                 batch_size=batch_size)

    def speak_labels(self, labels, vocoder: str | None = None, *, speed: float = 1.0, pitch: float = 0.0,
                     postfilter: bool | float | None = None, seed: int = 0, batch_size: int = 8):
        """Speak full-context labels without Festival: a :class:`Labels`, a label file, or a
        list of them (the batched form); options and result as :meth:`speak`."""
        runner = self.vocoder(vocoder)
        single = isinstance(labels, (Labels, str, os.PathLike))
        items = [labels] if single else list(labels)
        statics = [self.parameters(lab, speed=speed, pitch=pitch, postfilter=postfilter) for lab in items]
        wavs = runner.waveforms(statics, seed=seed, batch_size=batch_size)
        return (wavs[0] if single else wavs), self.sample_rate

    def stream(self, text: str, vocoder: str | None = None, *, speed: float = 1.0, pitch: float = 0.0,
               postfilter: bool | float | None = None, seed: int = 0,
               chunk_samples: int = 4000) -> Iterator[np.ndarray]:
        """Speak a text piece by piece: sentence by sentence, and within a sentence chunk
        by chunk for vocoders that generate so. Yields waveform pieces (float64,
        :attr:`sample_rate` Hz) to play in order. The first sentence gets its own Festival
        call (the first audio comes early), the others one call together."""
        sentences = split_sentences(clean_text(text))

        def labels():
            if sentences:
                yield self.labels(sentences[0])
            for lab in self.labels_many(sentences[1:]) if len(sentences) > 1 else ():
                if isinstance(lab, Exception):
                    raise lab
                yield lab
        return self.stream_labels(labels(), vocoder, speed=speed, pitch=pitch, postfilter=postfilter, seed=seed,
                                  chunk_samples=chunk_samples)

    def stream_labels(self, labels: Iterable, vocoder: str | None = None, *, speed: float = 1.0,
                      pitch: float = 0.0, postfilter: bool | float | None = None, seed: int = 0,
                      chunk_samples: int = 4000) -> Iterator[np.ndarray]:
        """:meth:`stream` for labels (an iterable of :class:`Labels` or label files)."""
        runner = self.vocoder(vocoder)
        for lab in labels:
            static = self.parameters(lab, speed=speed, pitch=pitch, postfilter=postfilter)
            yield from runner.stream(static, seed=seed, chunk_samples=chunk_samples)

