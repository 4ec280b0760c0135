"""Frame losses with padding masks: MSE and Gaussian negative log-likelihood.

The minimum generation error (MGE) loss lives in :mod:`sps.mlpg.mge` (it needs the
differentiable MLPG); :func:`sps.models.stage.make_step_fn` combines them.
"""
from __future__ import annotations

import math

import torch


def _mask(lengths: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """Float mask [shape=(B, T, 1)] of the valid frames of ``x`` [shape=(B, T, D)]."""
    if lengths is None:
        return x.new_ones(x.shape[0], x.shape[1], 1)
    t = torch.arange(x.shape[1], device=x.device)
    return (t[None, :] < lengths.to(x.device)[:, None]).unsqueeze(-1).to(x.dtype)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over valid frames and all dimensions.

    Parameters
    ----------
    pred, target : Tensor [shape=(B, T, D)]
    lengths : LongTensor [shape=(B,)], optional
        Valid frames per sequence (None: all).

    Returns
    -------
    Tensor []
        ``sum_{b, t < lengths[b], d} (pred - target)^2 / (D * sum_b lengths[b])``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"masked_mse: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    m = _mask(lengths, pred)
    return ((pred.float() - target.float()) ** 2 * m).sum() / (m.sum() * pred.shape[-1]).clamp_min(1)


def gaussian_nll(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor,
                 lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood of ``target`` under a diagonal Gaussian, per frame and dimension.

    Parameters
    ----------
    mean, log_var, target : Tensor [shape=(B, T, D)]
        ``log_var`` is the natural log of the variance.
    lengths : LongTensor [shape=(B,)], optional

    Returns
    -------
    Tensor []
        Mean over valid frames and dimensions of
        ``0.5 * (log 2 pi + log_var + (target - mean)^2 / exp(log_var))``.
    """
    m = _mask(lengths, mean)
    mean, log_var, target = mean.float(), log_var.float(), target.float()
    nll = 0.5 * (math.log(2 * math.pi) + log_var + (target - mean) ** 2 * torch.exp(-log_var))
    return (nll * m).sum() / (m.sum() * mean.shape[-1]).clamp_min(1)
