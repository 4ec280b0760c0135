"""Recipe stage ``sps synth``: trained models -> ``synth/<name>/<split>/<utt>.{wav,npy,png}``.

Config (``conf/synth.yaml``; keys of :class:`SynthConfig`)::

    splits: [eval]          # utterance lists to synthesize
    name: null              # output directory synth/<name>; default: the acoustic model's
                            # name (+ "_durpred" with predicted durations)
    copy_synthesis: false   # instead: WORLD analysis/resynthesis of natural speech -> synth/world_copy

Next to the utterances, ``synth/<name>/<split>/synth.json`` records how they were made
(``acoustic_model``, ``duration_model``, ``durations``, ``postfilter``): the eval stage
reads it to pick the alignment (DTW for predicted durations) and to score the duration
model of a full-TTS system.

For every utterance it writes the waveform (16-bit WAV), the generated static
features (float32 ``(T, [mgc | lf0 | vuv | bap])`` in natural units: the neural
vocoders read them) and a PNG comparing natural and generated envelopes and F0.
With ``durations: oracle`` (default) the frame-level linguistic features of the
dump are used, so generated and natural frames correspond one to one (objective
evaluation); ``durations: predicted`` runs the duration model first.

``sps synth --text "Any sentence." --out x.wav [vocoder=wavenet]`` speaks new text
(:func:`synthesize_text`) through the same :class:`~sps.synthesis.Voice` a packed voice
file gives, with WORLD or any trained vocoder. Models and vocoder not named are the ones
the eval stage scored best (``eval/best.json``); the choice is printed.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from sps.config import bind
from sps.frontend import load_labels, load_questions
from sps.frontend.festival import clean_text
from sps.io import load_array, save_array, write_json, write_wav
from sps.spec import static_columns
from sps.stages.best import best_name
from sps.stages.experiment import SYNTH_INFO, Experiment, check_names
from sps.stages.pack import experiment_voice, question_setup
from sps.stages.runner import StageContext, run_utterances
from sps.stages.stamps import Stamps, digest, file_digest
from sps.synthesis import MAX_FRAMES, Synthesizer, plot_comparison
from sps.vocoders import world

logger = logging.getLogger(__name__)

COPY_NAME = "world_copy"


@dataclass(frozen=True)
class SynthConfig:
    """Keys of ``conf/synth.yaml``."""
    acoustic_model: str | None = None   # models/<name> (None: the best-scored, eval/best.json)
    duration_model: str | None = None   # models/<name> (None: the best-scored)
    durations: Literal["oracle", "predicted"] = "oracle"  # oracle: natural durations (for eval)
    postfilter: bool = False                            # Merlin-style mel-cepstral formant enhancement
    postfilter_beta: float = 1.4                        # weight of c2.. (Merlin's pf_coef)
    vuv_threshold: float = 0.5
    questions: str | None = None         # question file (None: the one in dump/in_acoustic.json)
    #: question semantics (None: the one in dump/in_acoustic.json; "merlin" for a spec
    #: written before it was recorded)
    question_semantics: Literal["nnmnkwii", "merlin", "hts"] | None = None
    subphone_features: str | None = None  # positional features (None: as the linguistic stage wrote)
    voice: str = "cmu_us_slt_arctic_hts"  # Festival voice for text input
    festival_timeout: float = 60.0       # seconds per Festival call (long text is cut into chunks)
    splits: tuple[str, ...] = ("eval",)
    name: str | None = None              # synth/<name>; default the acoustic model (+ _durpred)
    copy_synthesis: bool = False         # WORLD analysis/resynthesis of natural speech -> synth/world_copy
    text: str | None = None              # sps synth --text: speak this instead of a split
    out: str | None = None               # --out: wav for --text (default synth/text.wav)
    vocoder: str | None = None           # --text: world, or a trained vocoder (models/<name>); None: the
                                         # best-scored one (eval/best.json), else world
    seed: int = 0                        # --text: seed of a neural vocoder's draws
    #: upper bound of a predicted duration in frames (None: 2x the longest in training)
    max_duration: int | None = None
    max_frames: int = MAX_FRAMES         # per-utterance frame budget (60 000: 5 min at 5 ms)

    def __post_init__(self):
        check_names(acoustic_model=self.acoustic_model, duration_model=self.duration_model, splits=self.splits,
                    name=self.name, vocoder=self.vocoder)
        if self.max_duration is not None and self.max_duration < 1:
            raise ValueError(f"max_duration must be >= 1 frame or null, got {self.max_duration}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
        if not self.festival_timeout > 0:
            raise ValueError(f"festival_timeout must be > 0 s, got {self.festival_timeout}")

    @property
    def output_name(self) -> str:
        """Directory name under ``synth/``."""
        if self.copy_synthesis:
            return COPY_NAME
        if self.name:
            return self.name
        return self.acoustic_model + ("_durpred" if self.durations == "predicted" else "")


def resolve_models(exp: Experiment, cfg: SynthConfig, need_duration: bool = True) -> SynthConfig:
    """``cfg`` with the acoustic (and duration) model filled in where not named: the
    best-scored of ``eval/best.json``; the choice is printed."""
    changes = {}
    for kind in ("acoustic_model", "duration_model") if need_duration else ("acoustic_model",):
        if getattr(cfg, kind) is None:
            name, why = best_name(exp, kind)
            print(f"synth: {kind.replace('_', ' ')} {name} ({why})")
            changes[kind] = name
    return dataclasses.replace(cfg, **changes) if changes else cfg


def make_synthesizer(exp: Experiment, cfg: SynthConfig, need_duration: bool = True) -> Synthesizer:
    """The :class:`~sps.synthesis.Synthesizer` of an experiment's trained models."""
    cfg = resolve_models(exp, cfg, need_duration)
    qfile, semantics, subphone = question_setup(exp, cfg.questions, cfg.question_semantics, cfg.subphone_features)
    return Synthesizer(exp.load_model(cfg.acoustic_model), exp.spec("out_acoustic"),
                       duration=exp.load_model(cfg.duration_model) if need_duration else None,
                       questions=load_questions(qfile, semantics=semantics),
                       subphone_features=subphone,
                       postfilter_beta=cfg.postfilter_beta if cfg.postfilter else None,
                       vuv_threshold=cfg.vuv_threshold, max_duration=cfg.max_duration,
                       max_frames=cfg.max_frames)


@functools.lru_cache(maxsize=2)
def _synthesizer(exp: Experiment, cfg: SynthConfig) -> Synthesizer:
    return make_synthesizer(exp, cfg, need_duration=cfg.durations == "predicted")


def _natural_static(exp: Experiment, split: str, utt: str, spec: dict) -> np.ndarray:
    return load_array(exp.dump_path(split, "out_acoustic", utt))[:, static_columns(spec)]


def synth_utterance(utt: str, *, exp: Experiment, split: str, cfg: SynthConfig) -> None:
    """Synthesize one utterance of a split (module-level: picklable for ``--jobs``)."""
    out = exp.synth_dir(cfg.output_name, split)
    if cfg.copy_synthesis:
        spec = exp.spec("out_acoustic")
        wav = world.synthesize(_natural_static(exp, split, utt, spec), spec)
        write_wav(out / f"{utt}.wav", wav, spec["sample_rate"])
        return
    syn = _synthesizer(exp, cfg)
    if cfg.durations == "oracle":
        frames = load_array(exp.dump_path(split, "in_acoustic", utt))
    else:
        labels = load_labels(exp.scp("lab")[utt])
        d = syn.predict_durations(load_array(exp.dump_path(split, "in_duration", utt)))
        frames = syn.frame_features(labels, d)
    static = syn.acoustic_params(frames)
    wav = syn.waveform(static)
    save_array(out / f"{utt}.npy", static)
    natural = None
    if exp.dump_path(split, "out_acoustic", utt).exists():
        natural = _natural_static(exp, split, utt, syn.spec)
    plot_comparison(out / f"{utt}.png", static, syn.spec, natural,
                    title=f"{utt}: {cfg.output_name} ({cfg.durations} durations)")
    write_wav(out / f"{utt}.wav", wav, syn.spec["sample_rate"])  # last: marks the utterance done


def synth_info(cfg: SynthConfig) -> dict:
    """What ``synth/<name>/<split>/synth.json`` records for a config."""
    if cfg.copy_synthesis:
        return {"system": cfg.output_name, "copy_synthesis": True, "durations": "oracle"}
    return {"system": cfg.output_name, "copy_synthesis": False, "acoustic_model": cfg.acoustic_model,
            "durations": cfg.durations,
            "duration_model": cfg.duration_model if cfg.durations == "predicted" else None,
            "postfilter": cfg.postfilter, "postfilter_beta": cfg.postfilter_beta if cfg.postfilter else None,
            "vuv_threshold": cfg.vuv_threshold}


def stamps(exp: Experiment, split: str, cfg: SynthConfig) -> Stamps:
    """The records of a synthesized system: an utterance's key is the content of its
    input features (or labels), the models with their statistics, the specs and the
    synthesis settings."""
    out = exp.synth_dir(cfg.output_name, split)
    setup = {"info": synth_info(cfg), "specs": exp.spec_digests(("out_acoustic", "in_acoustic", "in_duration")),
             "max_duration": cfg.max_duration, "max_frames": cfg.max_frames, "questions": cfg.questions,
             "question_semantics": cfg.question_semantics, "subphone_features": cfg.subphone_features}
    if not cfg.copy_synthesis:
        models = [cfg.acoustic_model] + ([cfg.duration_model] if cfg.durations == "predicted" else [])
        setup["models"] = {m: exp.model_digest(m) for m in models}

    def key(utt: str) -> str:
        if cfg.copy_synthesis:
            inputs = [exp.dump_path(split, "out_acoustic", utt)]
        elif cfg.durations == "oracle":
            inputs = [exp.dump_path(split, "in_acoustic", utt)]
        else:
            inputs = [exp.dump_path(split, "in_duration", utt), Path(exp.scp("lab")[utt])]
        return digest({**setup, "inputs": [file_digest(p) for p in inputs]})

    suffixes = (".wav",) if cfg.copy_synthesis else (".wav", ".npy", ".png")
    return Stamps(exp.root, exp.stamp_dir("synth", split, cfg.output_name),
                  outputs=lambda utt: [out / f"{utt}{s}" for s in suffixes], key=key)


def synthesize_text(exp: Experiment, text: str, out_path: str | os.PathLike,
                    cfg: SynthConfig | None = None) -> np.ndarray:
    """Speak a new sentence with the trained models of an experiment and any of its vocoders.

    Festival makes the full-context labels (:func:`sps.frontend.text_to_labels`), the
    duration model times them, the acoustic model and MLPG give the parameters and the
    vocoder (``cfg.vocoder``: WORLD or a trained vocoder) the waveform, through the same
    :class:`~sps.synthesis.Voice` that a packed voice file gives. The static features go
    beside the wav as ``.npy``.

    Returns
    -------
    ndarray [shape=(N,)]
        The waveform (float64 in [-1, 1]).
    """
    cfg = cfg or SynthConfig()
    clean_text(text)   # a text that cannot be spoken fails before any model is loaded
    voice = experiment_voice(exp, cfg)   # the sections sps pack writes, in memory
    labels = voice.labels(text)
    static = voice.parameters(labels)
    runner = voice.vocoder(cfg.vocoder)
    wav = runner.waveforms([static], seed=cfg.seed)[0]
    out_path = Path(out_path)
    write_wav(out_path, wav, voice.sample_rate)
    save_array(out_path.with_suffix(".npy"), static)
    logger.info("%s: %.2f s of speech for %d phones (vocoder %s)", out_path, len(wav) / voice.sample_rate,
                len(labels), runner.name)
    return wav


def run(ctx: StageContext) -> None:
    """Stage entry point (``sps synth``)."""
    cfg = bind(SynthConfig, ctx.config, "synth")
    exp = ctx.exp
    if cfg.text is None and not cfg.copy_synthesis:
        cfg = resolve_models(exp, cfg, need_duration=cfg.durations == "predicted")
    if cfg.text is not None:
        out = Path(cfg.out or exp.root / "synth" / "text.wav")
        synthesize_text(exp, cfg.text, out, cfg)
        print(f"synth: wrote {out}")
        return
    name = cfg.output_name
    for split in cfg.splits:
        out_dir = exp.synth_dir(name, split)
        if ctx.shard is None or ctx.shard[0] == 1:
            write_json(out_dir / SYNTH_INFO, {**synth_info(cfg), "split": split})
        process = functools.partial(synth_utterance, exp=exp, split=split, cfg=cfg)
        run_utterances(exp.utterances(split), process, desc=f"synth {name} {split}", jobs=ctx.jobs,
                       shard=ctx.shard, stamps=stamps(exp, split, cfg), force=ctx.force, max_failed=ctx.max_failed)

