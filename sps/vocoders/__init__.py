"""Neural vocoders (WaveNet, WaveRNN) following one protocol, plus the WORLD vocoder.

Importing this package never imports pysptk/pyworld or a vocoder module: the
registry below maps a name to ``"module:Class"`` and :func:`get_vocoder` imports
on demand.

Every neural vocoder class follows the protocol used by :mod:`sps.vocoders.stage`::

    class Vocoder(nn.Module):
        hop_length: int                                   # samples per 5 ms frame
        @classmethod
        def from_config(cls, cfg: dict, cond_dim: int) -> "Vocoder"   # cfg: the "model" section
        def loss(self, wav, cond) -> Tensor               # wav (B, N) in [-1, 1], cond (B, T, C), N == T * hop
        def generate(self, cond, lengths=None, temperature=1.0, ...) -> Tensor   # (B, T * hop) in [-1, 1]
"""
from __future__ import annotations

import importlib

#: vocoder name (``config["vocoder"]``) -> "module:Class"
VOCODERS: dict[str, str] = {
    "wavenet": "sps.vocoders.wavenet:WaveNet",
    "wavernn": "sps.vocoders.wavernn:WaveRNN",
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


__all__ = ["VOCODERS", "get_vocoder"]
