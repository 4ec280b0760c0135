"""Recipe stage ``sps synth``: trained models -> ``synth/<name>/<split>/<utt>.{wav,npy,png}``.

Config (``conf/synth.yaml``; keys of :data:`sps.synthesis.generate.SYNTH_DEFAULTS` and)::

    splits: [eval]          # utterance lists to synthesize
    name: null              # output directory synth/<name>; default: the acoustic model's
                            # name (+ "_durpred" with predicted durations)
    copy_synthesis: false   # instead: WORLD analysis/resynthesis of natural speech -> synth/world_copy

For every utterance it writes the waveform (16-bit WAV), the generated static
features (float32 ``(T, [mgc | lf0 | vuv | bap])`` in natural units: the neural
vocoders read them) and a PNG comparing natural and generated envelopes and F0.
With ``durations: oracle`` (default) the frame-level linguistic features of the
dump are used, so generated and natural frames correspond one to one (objective
evaluation); ``durations: predicted`` runs the duration model first.

``sps synth --text "Any sentence." --out x.wav`` synthesizes new text
(:func:`synthesize_text`).
"""
from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

import numpy as np

from sps.synthesis.generate import SYNTH_DEFAULTS, Synthesizer

logger = logging.getLogger(__name__)

COPY_NAME = "world_copy"


def output_name(cfg: dict) -> str:
    """Directory name under ``synth/`` for a synth config."""
    if cfg.get("copy_synthesis"):
        return COPY_NAME
    if cfg.get("name"):
        return str(cfg["name"])
    return cfg["acoustic_model"] + ("_durpred" if cfg["durations"] == "predicted" else "")


@functools.lru_cache(maxsize=2)
def _synthesizer(exp_dir: str, cfg_json: str) -> Synthesizer:
    cfg = json.loads(cfg_json)
    return Synthesizer(exp_dir, cfg, need_duration=cfg["durations"] == "predicted")


def _natural_static(exp: Path, split: str, utt: str, spec: dict) -> np.ndarray:
    from sps.features import static_columns
    from sps.io import load_array
    return load_array(exp / "dump" / split / "out_acoustic" / f"{utt}.npy")[:, static_columns(spec)]


def synth_utterance(utt: str, *, exp_dir: str, split: str, cfg_json: str, out_dir: str) -> None:
    """Synthesize one utterance of a split (module-level: picklable for ``--jobs``)."""
    from sps.io import load_array, read_json, write_wav
    from sps.synthesis.plots import plot_comparison
    cfg = json.loads(cfg_json)
    exp, out = Path(exp_dir), Path(out_dir)
    dump = exp / "dump" / split
    if cfg.get("copy_synthesis"):
        from sps.vocoders.world import synthesize
        spec = read_json(exp / "dump" / "out_acoustic.json")
        natural = _natural_static(exp, split, utt, spec)
        wav = synthesize(natural, spec)
        write_wav(out / f"{utt}.wav", wav, spec["sample_rate"])
        return
    syn = _synthesizer(exp_dir, cfg_json)
    if cfg["durations"] == "oracle":
        frames = load_array(dump / "in_acoustic" / f"{utt}.npy")
    else:
        from sps.frontend import load_labels
        from sps.io import read_scp
        labels = load_labels(read_scp(exp / "data" / "lab.scp")[utt])
        d = syn.predict_durations(load_array(dump / "in_duration" / f"{utt}.npy"))
        frames = syn.frame_features(labels, d)
    static = syn.acoustic_params(frames)
    wav = syn.waveform(static)
    from sps.io import save_array
    save_array(out / f"{utt}.npy", static)
    natural = None
    nat_path = dump / "out_acoustic" / f"{utt}.npy"
    if nat_path.exists():
        natural = _natural_static(exp, split, utt, syn.spec)
    plot_comparison(out / f"{utt}.png", static, syn.spec, natural,
                    title=f"{utt}: {output_name(cfg)} ({cfg['durations']} durations)")
    write_wav(out / f"{utt}.wav", wav, syn.spec["sample_rate"])  # last: marks the utterance done


def _done(utt: str, *, out_dir: Path) -> bool:
    return (out_dir / f"{utt}.wav").exists()


def synthesize_text(exp_dir: str | os.PathLike, text: str, out_path: str | os.PathLike,
                    config: dict | None = None) -> np.ndarray:
    """Speak a new sentence with the trained models of an experiment.

    Festival makes the full-context labels (:func:`sps.frontend.text_to_labels`), the
    duration model times them, the acoustic model and MLPG give the parameters and
    WORLD the waveform.

    Parameters
    ----------
    exp_dir : path-like
        Experiment directory with ``models/``, ``stats/`` and ``dump/*.json``.
    text : str
        Sentence(s).
    out_path : path-like
        WAV file to write; the static features go beside it as ``.npy``.
    config : dict, optional
        :data:`SYNTH_DEFAULTS` keys (``acoustic_model``, ``duration_model``, ...).

    Returns
    -------
    ndarray [shape=(N,)]
        The waveform (float64 in [-1, 1]).
    """
    from sps.frontend import text_to_labels
    from sps.io import save_array, write_wav
    cfg = {**SYNTH_DEFAULTS, **(config or {}), "durations": "predicted"}
    syn = Synthesizer(exp_dir, cfg, need_duration=True)
    labels = text_to_labels(text, voice=cfg["voice"])
    static = syn.from_labels(labels)
    wav = syn.waveform(static)
    out_path = Path(out_path)
    write_wav(out_path, wav, syn.spec["sample_rate"])
    save_array(out_path.with_suffix(".npy"), static)
    logger.info("%s: %.2f s of speech for %d phones", out_path, len(wav) / syn.spec["sample_rate"], len(labels))
    return wav


def run(ctx) -> None:
    """Stage entry point (``sps synth``)."""
    from sps.io import read_list
    from sps.stage import run_utterances
    config = dict(ctx.config)
    cli = config.pop("cli", None) or {}
    cfg = {**SYNTH_DEFAULTS, "copy_synthesis": False, "name": None,
           **{k: v for k, v in config.items() if k not in ("splits",)}}
    if cfg["durations"] not in ("oracle", "predicted"):
        raise ValueError(f"durations must be 'oracle' or 'predicted', got {cfg['durations']!r}")
    exp = Path(ctx.exp_dir)
    if cli.get("text"):
        out = Path(cli.get("out") or exp / "synth" / "text.wav")
        synthesize_text(exp, cli["text"], out, cfg)
        print(f"synth: wrote {out}")
        return
    name = output_name(cfg)
    splits = config.get("splits") or ["eval"]
    if isinstance(splits, str):
        splits = [splits]
    cfg_json = json.dumps(cfg, sort_keys=True)
    for split in splits:
        out_dir = exp / "synth" / name / split
        utts = read_list(exp / "data" / f"{split}.list")
        process = functools.partial(synth_utterance, exp_dir=str(exp), split=split, cfg_json=cfg_json,
                                    out_dir=str(out_dir))
        done = None if ctx.force else functools.partial(_done, out_dir=out_dir)
        summary = run_utterances(utts, process, desc=f"synth {name} {split}", jobs=ctx.jobs, shard=ctx.shard,
                                 done=done)
        if summary.failed and not summary.ok and not summary.skipped:
            raise ValueError(f"synth {name} {split}: every utterance failed, e.g. "
                             f"{next(iter(summary.failed.items()))}")
