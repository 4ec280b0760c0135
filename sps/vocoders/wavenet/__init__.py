"""WaveNet vocoder: nv-wavenet-compatible gated residual stack with fast generation.

>>> from sps.vocoders.wavenet import WaveNet
>>> model = WaveNet(cond_dim=67, residual_channels=32, layers=10, max_dilation=128)
>>> wav = model.generate(cond)                 # doctest: +SKIP
>>> weights, cond_input = model.to_nv_wavenet() # doctest: +SKIP

See ``docs/wavenet.md``.
"""
from .model import WaveNet, dilations

__all__ = ["WaveNet", "dilations"]
