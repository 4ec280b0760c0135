"""Sample and frame helpers shared by WaveRNN training and generation."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def split_16bit(x: Tensor) -> tuple[Tensor, Tensor]:
    """Quantise a waveform to 16 bits and split it into coarse and fine bytes.

    Parameters
    ----------
    x : Tensor [shape=(...)]
        Waveform in [-1, 1] (values outside are clipped).

    Returns
    -------
    coarse, fine : Tensor [shape=(...)], int64 in [0, 255]
        ``v = round((x + 1) * 32767.5)``, ``coarse = v // 256``, ``fine = v % 256``.
    """
    v = torch.round((x.double() + 1.0) * 32767.5).clamp(0, 65535).long()
    return v // 256, v % 256


def merge_16bit(coarse: Tensor, fine: Tensor) -> Tensor:
    """Inverse of :func:`split_16bit`: bytes -> float32 waveform in [-1, 1]."""
    v = coarse.long() * 256 + fine.long()
    return (v.double() / 32767.5 - 1.0).float()


def byte_to_input(b: Tensor) -> Tensor:
    """Scale a byte in [0, 255] to the network input range [-1, 1] (float32)."""
    return b.float() / 127.5 - 1.0


def upsample_index(n_frames: int, hop: int, device=None) -> tuple[Tensor, Tensor]:
    """Linear-interpolation positions of each sample in an edge-padded frame axis.

    The frame axis is padded with one copy of the first frame in front and one of
    the last frame behind (``T + 2`` frames); frame ``k`` is centred on sample
    ``(k + 0.5) * hop - 0.5``. Sample ``n`` takes
    ``(1 - a) * frame[k0] + a * frame[k0 + 1]`` in padded indices.

    Returns
    -------
    k0 : Tensor [shape=(T * hop,)], int64 in [0, T]
    a : Tensor [shape=(T * hop,)], float32 in [0, 1)
    """
    n = torch.arange(n_frames * hop, dtype=torch.float64, device=device)
    p = (n + 0.5) / hop + 0.5
    k0 = torch.floor(p)
    return k0.long(), (p - k0).float()


def pad_frames(x: Tensor, left: int = 1, right: int = 1) -> Tensor:
    """Edge-replicate ``x [shape=(B, T, D)]`` along time -> (B, left + T + right, D)."""
    return torch.cat([x[:, :1].expand(-1, left, -1), x, x[:, -1:].expand(-1, right, -1)], 1)


def upsample(x_pad: Tensor, hop: int) -> Tensor:
    """Interpolate padded frames ``(B, T + 2, D)`` to samples ``(B, T * hop, D)``."""
    k0, a = upsample_index(x_pad.shape[1] - 2, hop, x_pad.device)
    x0, x1 = x_pad[:, k0], x_pad[:, k0 + 1]
    return x0 + a[:, None].to(x_pad.dtype) * (x1 - x0)


def frame_network(cond_dim: int, channels: int, kernel: int) -> nn.Sequential:
    """The conditioning network of the WaveRNNs: two convolutions over frames (odd
    ``kernel``, same length), each followed by tanh; ``(B, C, T)`` -> ``(B, channels, T)``."""
    if kernel % 2 == 0:
        raise ValueError(f"cond_kernel must be odd, got {kernel}")
    return nn.Sequential(nn.Conv1d(cond_dim, channels, kernel, padding=kernel // 2), nn.Tanh(),
                         nn.Conv1d(channels, channels, kernel, padding=kernel // 2), nn.Tanh())

