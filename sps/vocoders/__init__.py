"""Vocoders (WaveNet, WaveRNN, their LPC forms, the source-filter vocoder) following one
protocol (:class:`sps.vocoders.protocol.Vocoder`), plus the WORLD vocoder.

Importing this package never imports pysptk/pyworld or a vocoder module: the
registry below maps a name to ``"module:Class"`` and :func:`get_vocoder` imports
on demand. :func:`build_vocoder` binds a ``model`` section to the constructor (an
unknown option is an error that names the closest valid one).

Names. A recipe's ``--vocoder X`` reads ``conf/X.yaml``, trains ``models/X`` and packs
vocoder ``X``; the config's ``vocoder:`` key names the class in the registry. The one
mapping between the two is :data:`VOCODER_NAMES` (printed by ``run.sh --help`` and
``sps train-vocoder --help``).
"""
from __future__ import annotations

import importlib

from sps.config import bind_kwargs

#: vocoder name (``config["vocoder"]``) -> "module:Class"
VOCODERS: dict[str, str] = {
    "wavenet": "sps.vocoders.wavenet:WaveNet",
    "wavenet_lpc": "sps.vocoders.wavenet.lpc:LPCWaveNet",
    "wavernn": "sps.vocoders.wavernn:WaveRNN",
    "wavernn_lpc": "sps.vocoders.wavernn.lpc:LPCWaveRNN",
    "source_filter": "sps.vocoders.source_filter:SourceFilterVocoder",   # classical, nothing to train
}


#: what users call a vocoder (``--vocoder``, ``conf/<name>.yaml``, ``models/<name>``, ``sps speak
#: --vocoder``) -> its registry name (the config's ``vocoder:`` key)
VOCODER_NAMES: dict[str, str] = {
    "wavenet": "wavenet_lpc",          # the recipe's WaveNet: LPC excitation (LPCNet-style)
    "wavernn": "wavernn_lpc",          # the recipe's WaveRNN: LPC excitation
    "wavenet_plain": "wavenet",        # the seed WaveNet (nv-wavenet layout), waveform samples
    "wavernn_plain": "wavernn",        # the seed dual-softmax WaveRNN
    "source_filter": "source_filter",  # classical pulse/noise + LPC synthesis, nothing to train
}


def names_help() -> str:
    """The :data:`VOCODER_NAMES` table as text for ``--help``."""
    return "vocoder names (--vocoder / conf / models name -> registry 'vocoder:' key): " + ", ".join(
        f"{k} -> {v}" for k, v in VOCODER_NAMES.items())


def legacy_options(entry: dict) -> dict:
    """The ``model`` options of a saved vocoder config or packed entry; files written
    before pre-emphasis became a model option carry it as a top-level ``preemphasis``
    key, which moves into the options here."""
    model = dict(entry.get("model") or {})
    legacy = float(entry.get("preemphasis") or 0.0)
    if legacy and "preemphasis" not in model:
        model["preemphasis"] = legacy
    return model


def get_vocoder(name: str) -> type:
    """The vocoder class registered as ``name`` (imported on first use).

    Raises
    ------
    ValueError
        ``name`` is not in :data:`VOCODERS`.
    """
    if name not in VOCODERS:
        raise ValueError(f"unknown vocoder {name!r}; known: {', '.join(sorted(VOCODERS))}")
    module, _, cls = VOCODERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def build_vocoder(name: str, model: dict | None, cond_dim: int):
    """Vocoder ``name`` with ``cond_dim`` conditioning features and the options ``model``."""
    cls = get_vocoder(name)
    return cls(cond_dim, **bind_kwargs(cls, model, f"{name}.model", skip=("cond_dim",)))


__all__ = ["VOCODERS", "VOCODER_NAMES", "get_vocoder", "build_vocoder", "legacy_options", "names_help"]
