"""nnmnkwii's differentiable MLPG call patterns, computed by :mod:`sps.mlpg`.

A training script written for nnmnkwii ports by changing its import lines::

    from sps.compat.nnmnkwii import MLPG, mlpg, UnitVarianceMLPG, unit_variance_mlpg
    from sps.compat.nnmnkwii import unit_variance_mlpg_matrix, reshape_means

What each name accepts and returns follows nnmnkwii:

* ``MLPG(variance_frames, windows)(mean_frames)`` (the old autograd-Function call)
  and ``MLPG.apply(mean_frames, variance_frames, windows)`` (the newer one), and the
  function ``mlpg(mean_frames, variance_frames, windows)``: ``mean_frames`` a tensor
  ``(T, D*W)`` (window-major columns), ``variance_frames`` a tensor or NumPy array
  ``(T, D*W)`` or ``(D*W,)``, ``windows`` a list of ``(left, right,
  np.array(coefficients))``; returns the static trajectory ``(T, D)``. A batch
  ``(B, T, D*W)`` works too (nnmnkwii refuses it).
* ``unit_variance_mlpg_matrix(windows, T)`` gives the NumPy float32 matrix
  ``R = (W^T W)^{-1} W^T`` of shape ``(T, W*T)`` (columns ``w*T + t``), and
  ``unit_variance_mlpg(R, means)`` / ``UnitVarianceMLPG(R)(means)`` /
  ``UnitVarianceMLPG.apply(means, R)`` compute ``R @ means`` for means of shape
  ``(T, D*W)``, ``(W*T, D)`` (:func:`reshape_means`), or the same with a batch axis.

Semantics are nnmnkwii's, which differ from :func:`sps.mlpg.mlpg`'s defaults at the
edges: every window is used at every frame and the trajectory counts as zero beyond
the ends (``edge="none"``; sps's default zeroes the precision of dynamic windows
there). Results are in the dtype of ``mean_frames`` (nnmnkwii always returns
float32), and gradients also flow to ``variance_frames`` when it is a tensor that
requires them (nnmnkwii gives none).
"""
from __future__ import annotations

import numpy as np
import torch

from sps.mlpg import mlpg as _sps_mlpg
from sps.mlpg import unit_variance_mlpg as _sps_unit_variance_mlpg

#: the edge rule of nnmnkwii's MLPG (see :mod:`sps.mlpg.windows`)
EDGE = "none"
#: identity columns generated per MLPG call in :func:`unit_variance_mlpg_matrix`
_BASIS_CHUNK = 1024

__all__ = ["MLPG", "mlpg", "UnitVarianceMLPG", "unit_variance_mlpg", "unit_variance_mlpg_matrix",
           "reshape_means", "EDGE"]


def mlpg(mean_frames, variance_frames, windows):
    """MLPG with nnmnkwii's semantics (``nnmnkwii.autograd.mlpg``).

    Parameters
    ----------
    mean_frames : Tensor [shape=(T, D*W) or (B, T, D*W)]
        Static and dynamic means, window-major columns.
    variance_frames : Tensor or ndarray [shape=(T, D*W), (D*W,) or (B, T, D*W)]
    windows : list of (int, int, array-like)
        nnmnkwii windows ``(left, right, np.array(coefficients))``.

    Returns
    -------
    Tensor [shape=(T, D) or (B, T, D)]
        Differentiable with respect to ``mean_frames`` (and ``variance_frames``).
    """
    means = torch.as_tensor(mean_frames)
    variances = torch.as_tensor(variance_frames, device=means.device)
    return _sps_mlpg(means, variances, windows, edge=EDGE)


class MLPG:
    """nnmnkwii's ``MLPG`` autograd function, both ways it is called.

    ``MLPG(variance_frames, windows)(mean_frames)`` (old style: configure, then call)
    or ``MLPG.apply(mean_frames, variance_frames, windows)``; see :func:`mlpg`.
    """

    def __init__(self, variance_frames, windows):
        self.variances = variance_frames
        self.windows = windows

    def __call__(self, mean_frames):
        return mlpg(mean_frames, self.variances, self.windows)

    forward = __call__

    @staticmethod
    def apply(mean_frames, variance_frames, windows):
        return mlpg(mean_frames, variance_frames, windows)


def unit_variance_mlpg_matrix(windows, T: int) -> np.ndarray:
    """nnmnkwii's unit-variance MLPG matrix ``R = (W^T W)^{-1} W^T``.

    Column ``w*T + t`` of ``R`` is the trajectory :func:`sps.mlpg.unit_variance_mlpg`
    (edge rule ``"none"``) generates from a unit mean in window ``w`` at frame
    ``t`` and zeros elsewhere.

    Parameters
    ----------
    windows : list of (int, int, array-like)
    T : int
        Frames.

    Returns
    -------
    ndarray [shape=(T, W*T), dtype=float32]
    """
    W = len(windows)
    T = int(T)
    if T <= 0:
        raise ValueError(f"unit_variance_mlpg_matrix: T must be positive, got {T}")
    R = np.empty((T, W * T), dtype=np.float32)
    for start in range(0, W * T, _BASIS_CHUNK):
        cols = torch.arange(start, min(W * T, start + _BASIS_CHUNK))
        basis = torch.zeros(len(cols), T, W, dtype=torch.float64)   # (column, frame, window)
        basis[torch.arange(len(cols)), cols % T, cols // T] = 1.0
        out = _sps_unit_variance_mlpg(basis, windows, edge=EDGE)    # (column, T, 1)
        R[:, start:start + len(cols)] = out[..., 0].T.numpy()
    return R


def reshape_means(means, static_dim: int):
    """``(T, D*W)`` window-major means -> ``(W*T, D)`` (nnmnkwii's ``reshape_means``);
    returned unchanged when already ``(..., D)``. NumPy arrays and tensors."""
    T, F = means.shape
    if F == static_dim:
        return means
    W = F // static_dim
    return means.reshape(T, W, static_dim).transpose(1, 0, 2).reshape(W * T, static_dim) \
        if isinstance(means, np.ndarray) else \
        means.reshape(T, W, static_dim).transpose(0, 1).reshape(W * T, static_dim)


def unit_variance_mlpg(R, means):
    """``R @ means``: nnmnkwii's ``unit_variance_mlpg(R, means)``.

    Parameters
    ----------
    R : Tensor or ndarray [shape=(T, W*T)]
        From :func:`unit_variance_mlpg_matrix`.
    means : Tensor [shape=(T, D*W), (W*T, D), (B, T, D*W) or (B, W*T, D)]

    Returns
    -------
    Tensor [shape=(T, D) or (B, T, D)]
        Differentiable with respect to ``means``.
    """
    R = torch.as_tensor(R).to(device=means.device, dtype=means.dtype)
    T, WT = R.shape
    W = WT // T
    x = means.unsqueeze(0) if means.dim() == 2 else means
    B, rows, F = x.shape
    if rows == T and W > 1:  # (B, T, W*D) window-major -> (B, W*T, D)
        if F % W:
            raise ValueError(f"unit_variance_mlpg: means have {F} columns, not a multiple of {W} windows")
        x = x.reshape(B, T, W, F // W).transpose(1, 2).reshape(B, W * T, F // W)
    elif rows != WT:
        raise ValueError(f"unit_variance_mlpg: means of shape {tuple(means.shape)} fit neither (T, D*W) "
                         f"nor (W*T, D) for R of shape {tuple(R.shape)}")
    out = torch.matmul(R, x)
    return out[0] if means.dim() == 2 else out


class UnitVarianceMLPG:
    """nnmnkwii's ``UnitVarianceMLPG``: ``UnitVarianceMLPG(R)(means)`` or
    ``UnitVarianceMLPG.apply(means, R)``; see :func:`unit_variance_mlpg`."""

    def __init__(self, R):
        self.R = R

    def __call__(self, means):
        return unit_variance_mlpg(self.R, means)

    forward = __call__

    @staticmethod
    def apply(means, R):
        return unit_variance_mlpg(R, means)
