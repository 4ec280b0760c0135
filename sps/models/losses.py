"""Frame losses with padding masks: MSE and Gaussian negative log-likelihood.

The minimum generation error (MGE) loss lives in :mod:`sps.mlpg.mge` (it needs the
differentiable MLPG); :func:`sps.stages.train.make_step_fn` combines them.
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


def _dim_weights(weights: torch.Tensor | None, x: torch.Tensor, name: str) -> torch.Tensor | None:
    """Per-dimension weights [shape=(D,)] as float32 on ``x``'s device, scaled to mean 1."""
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=torch.float32, device=x.device)
    if w.shape != (x.shape[-1],) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"{name}: weights must be {x.shape[-1]} non-negative values, not all zero; "
                         f"got shape {tuple(w.shape)}")
    return w * (w.numel() / w.sum())


def masked_mse(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor | None = None,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over valid frames and all dimensions.

    Parameters
    ----------
    pred, target : Tensor [shape=(B, T, D)]
    lengths : LongTensor [shape=(B,)], optional
        Valid frames per sequence (None: all).
    weights : Tensor [shape=(D,)], optional
        Weight of each dimension (e.g. per-stream loss weights), rescaled to mean 1 so
        the loss stays on the scale of the unweighted one.

    Returns
    -------
    Tensor []
        ``sum_{b, t < lengths[b], d} w_d (pred - target)^2 / (D * sum_b lengths[b])``
        with ``w_d = D weights_d / sum(weights)`` (1 without weights).
    """
    if pred.shape != target.shape:
        raise ValueError(f"masked_mse: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    m = _mask(lengths, pred)
    sq = (pred.float() - target.float()) ** 2
    w = _dim_weights(weights, pred, "masked_mse")
    if w is not None:
        sq = sq * w
    return (sq * m).sum() / (m.sum() * pred.shape[-1]).clamp_min(1)


def gaussian_nll(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor,
                 lengths: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood of ``target`` under a diagonal Gaussian, per frame and dimension.

    Parameters
    ----------
    mean, log_var, target : Tensor [shape=(B, T, D)]
        ``log_var`` is the natural log of the variance.
    lengths : LongTensor [shape=(B,)], optional
    weights : Tensor [shape=(D,)], optional
        Weight of each dimension, rescaled to mean 1 (as in :func:`masked_mse`).

    Returns
    -------
    Tensor []
        Mean over valid frames and dimensions of
        ``0.5 * w_d * (log 2 pi + log_var + (target - mean)^2 / exp(log_var))``.
    """
    m = _mask(lengths, mean)
    mean, log_var, target = mean.float(), log_var.float(), target.float()
    nll = 0.5 * (math.log(2 * math.pi) + log_var + (target - mean) ** 2 * torch.exp(-log_var))
    w = _dim_weights(weights, mean, "gaussian_nll")
    if w is not None:
        nll = nll * w
    return (nll * m).sum() / (m.sum() * mean.shape[-1]).clamp_min(1)
