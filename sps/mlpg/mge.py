"""Stream-wise parameter generation and the minimum generation error (MGE) loss.

Both work on ``out_acoustic`` feature vectors described by the stream spec of
``dump/out_acoustic.json``::

    {"windows": [[0, 0, [1.0]], [1, 1, [-0.5, 0.0, 0.5]], [1, 1, [1.0, -2.0, 1.0]]],
     "streams": [{"name": "mgc", "start": 0, "static_dim": 60, "num_windows": 3},
                 {"name": "lf0", "start": 180, "static_dim": 1, "num_windows": 3},
                 {"name": "vuv", "start": 183, "static_dim": 1, "num_windows": 1},
                 {"name": "bap", "start": 184, "static_dim": 1, "num_windows": 3}], ...}

A stream with ``num_windows = n`` occupies columns ``start .. start + n * static_dim``
laid out ``[static | delta | ...]`` and is generated with the first ``n`` windows;
streams with one window (e.g. vuv) pass through. Streams sharing a window count are
generated together in a single batched MLPG call.
"""
from __future__ import annotations

import numpy as np
import torch

from sps.spec import parse_spec, static_columns

from .core import _as_lengths, mlpg, unit_variance_mlpg
from .windows import DEFAULT_EDGE


def _valid(lengths: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, T, 1) 0/1 mask of valid frames in ``like``'s dtype."""
    t = torch.arange(like.shape[-2], device=like.device)
    return (t < lengths.reshape(-1, 1)).unsqueeze(-1).to(like.dtype)


def generate_streams(features, variances, spec: dict, lengths=None, *, backend: str | None = None,
                     edge: str = DEFAULT_EDGE):
    """Static trajectories of every stream, generated with MLPG.

    Parameters
    ----------
    features : Tensor or ndarray [shape=(B, T, dim) or (T, dim)]
        Predicted ``out_acoustic`` features in natural (de-normalised) units.
    variances : Tensor or ndarray [shape=(dim,), (T, dim) or (B, T, dim)] or None
        Variances in natural units (typically ``std ** 2`` from
        ``stats/out_acoustic.npz``); None for unit variances.
    spec : dict
        Stream spec (see the module docstring).
    lengths : [shape=(B,)], optional
        Valid frames per utterance; generated padded frames are 0.
    backend : {None, "torch", "native", "triton"}
    edge : {"zero_dynamic", "zero_dynamic_shared", "none"}
        Edge rule of every MLPG call (see :func:`sps.mlpg.mlpg`); the widths of
        ``"zero_dynamic_shared"`` are those of the windows a stream uses.

    Returns
    -------
    Tensor or ndarray [shape=(B, T, S) or (T, S)]
        ``S = sum of static_dim``; streams in spec order (for the default spec
        ``[mgc | lf0 | vuv | bap]``). NumPy in, NumPy out; differentiable.
    """
    as_numpy = isinstance(features, np.ndarray)
    feats = torch.as_tensor(features)
    var = None if variances is None else torch.as_tensor(variances, device=feats.device)
    windows, streams = parse_spec(spec, feats.shape[-1])
    if lengths is not None:
        if feats.dim() != 3:
            raise ValueError(f"lengths needs batched features (B, T, dim), got {tuple(feats.shape)}")
        lengths = _as_lengths(lengths, feats.shape[0], feats.shape[1], feats.device)
    pieces: dict[str, torch.Tensor] = {}
    for nw in sorted({s.num_windows for s in streams}):
        group = [s for s in streams if s.num_windows == nw]
        if nw == 1:
            for name, start, sd, _ in group:
                pieces[name] = feats[..., start:start + sd]
            continue
        cols = [start + w * sd + i for w in range(nw) for _, start, sd, _ in group for i in range(sd)]
        idx = torch.tensor(cols, device=feats.device)
        means = feats.index_select(-1, idx)
        if var is None:
            out = unit_variance_mlpg(means, windows[:nw], lengths, backend=backend, edge=edge)
        else:
            out = mlpg(means, var.index_select(-1, idx), windows[:nw], lengths, backend=backend, edge=edge)
        for (name, _, _, _), part in zip(group, out.split([s.static_dim for s in group], -1)):
            pieces[name] = part
    result = torch.cat([pieces[s.name] for s in streams], -1)
    if lengths is not None:  # pass-through streams are zeroed on padded frames too
        result = result * _valid(lengths, result)
    return result.detach().numpy() if as_numpy else result


def mge_loss(pred: torch.Tensor, target: torch.Tensor, variances, spec: dict, lengths=None, *,
             mean=None, std=None, backend: str | None = None, edge: str = DEFAULT_EDGE) -> torch.Tensor:
    """Minimum generation error: MSE between MLPG-generated and natural statics.

    Parameters
    ----------
    pred : Tensor [shape=(B, T, dim)]
        Acoustic-model output with dynamic features. In natural units, or, when
        ``mean`` and ``std`` are given, normalised (it is then de-normalised as
        ``pred * std + mean`` before generation).
    target : Tensor [shape=(B, T, S)]
        Natural static features in natural units, streams in spec order (e.g.
        ``dump/.../out_acoustic[..., static_columns(spec)]``).
    variances : Tensor [shape=(dim,) or (B, T, dim)] or None
        Variances for MLPG in natural units (usually ``std ** 2``); None = unit.
    spec : dict
        Stream spec of ``out_acoustic``.
    lengths : Tensor [shape=(B,)], optional
        Valid frames; padded frames are excluded from the mean.
    mean, std : Tensor [shape=(dim,)], optional
        Normalisation statistics of ``out_acoustic``. With ``std``, the error of
        each static column is divided by its std so every stream is weighed on a
        comparable (normalised) scale.
    backend, edge
        As in :func:`generate_streams`.

    Returns
    -------
    Tensor [shape=()]
        Mean squared error over valid frames and static dimensions.
    """
    feats = pred
    if std is not None:
        if mean is None:
            raise ValueError("mge_loss: std given without mean")
        std = torch.as_tensor(std, dtype=pred.dtype, device=pred.device)
        feats = pred * std + torch.as_tensor(mean, dtype=pred.dtype, device=pred.device)
    gen = generate_streams(feats, variances, spec, lengths, backend=backend, edge=edge)
    if gen.shape != target.shape:
        raise ValueError(f"mge_loss: target shape {tuple(target.shape)} does not match the generated "
                         f"statics {tuple(gen.shape)}")
    err = gen - target.to(gen.dtype)
    if std is not None:
        err = err / std[static_columns(spec)]
    sq = err.square()
    if lengths is None:
        return sq.mean()
    keep = _valid(_as_lengths(lengths, sq.shape[0], sq.shape[1], sq.device), sq)
    return (sq * keep).sum() / (keep.sum() * sq.shape[-1]).clamp_min(1)
