"""Neural vocoders (WaveNet, WaveRNN) following one protocol, plus the WORLD vocoder.

Importing this package never imports pysptk/pyworld or a vocoder module: the
registry below maps a name to ``"module:Class"`` and :func:`get_vocoder` imports
on demand.

Every neural vocoder class follows the protocol used by :mod:`sps.stages.vocoder`::

    class Vocoder(nn.Module):
        hop_length: int                                   # samples per 5 ms frame
        def __init__(self, cond_dim, **options)            # options: the config's "model" section
        def loss(self, wav, cond) -> Tensor               # wav (B, N) in [-1, 1], cond (B, T, C), N == T * hop
        def generate(self, cond, lengths=None, temperature=1.0, *, generator=None,
                     backend="auto", ...) -> Tensor       # (B, T * hop) in [-1, 1]

:func:`build_vocoder` binds a ``model`` section to the constructor (an unknown option is
an error that names the closest valid one).
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


__all__ = ["VOCODERS", "get_vocoder", "build_vocoder"]
