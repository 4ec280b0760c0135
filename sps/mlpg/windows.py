"""Dynamic-feature windows and the banded MLPG system they induce.

A window is a ``(left, right, coefficients)`` triple with
``len(coefficients) == left + right + 1``: the window's output at frame ``t`` is
``sum_j coefficients[j] * x[t + j - left]``. The observation vector of ``W``
windows over ``D`` static dimensions is stored window-major,
``[window 0 (D) | window 1 (D) | ...]``, so feature column ``w * D + d`` holds
window ``w`` of dimension ``d``.

Edge rules (``edge=``; :func:`edge_widths` is the one place they are turned into
numbers, for the PyTorch path and the C kernel alike): window ``w`` gets zero
precision at the first and last ``e_w`` frames of every utterance (its own length
when a batch is padded), with

* ``"zero_dynamic"`` (default): ``e_w = max(left_w, right_w)``, so no window ever
  reaches outside the utterance and edge frames are not pulled toward zero;
* ``"zero_dynamic_shared"``: one width for every dynamic window (one with
  ``max(left, right) > 0``), the largest ``max(left, right)`` of all windows;
  windows of width 0 keep ``e_w = 0`` (current nnmnkwii);
* ``"none"``: ``e_w = 0``: every window is used at every frame and reaches past the
  ends, where the trajectory counts as zero (old nnmnkwii, bandmat's window
  matrices).

Padded frames (``t >= length``) have zero precision in every window; their rows
and columns of the system matrix are replaced by those of the identity and their
right-hand side by 0, which makes their solution 0 and decouples them from the real
frames (with ``"none"`` a window at a real frame may reach into them: the
trajectory there counts as zero, as beyond the end of an utterance alone).

All tensors here are internal layouts: observations ``(B, T, W, D)``, statics
``(B, T, D)``, band ``(B, T, K, D)`` in row form ``band[b, t, k, d] = A[t, t-k]`` of
system ``(b, d)``, ``K = bandwidth + 1``.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from sps.spec import Window

#: edge rules of :func:`edge_widths` (see the module docstring)
EDGE_RULES = ("zero_dynamic", "zero_dynamic_shared", "none")
DEFAULT_EDGE = "zero_dynamic"


def check_edge(edge: str) -> str:
    """``edge`` if it is one of :data:`EDGE_RULES`, else a ``ValueError`` listing them."""
    if edge not in EDGE_RULES:
        raise ValueError(f"mlpg: edge must be one of {', '.join(EDGE_RULES)}; got {edge!r}")
    return edge


@lru_cache(maxsize=64)
def edge_widths(windows: tuple[Window, ...], edge: str = DEFAULT_EDGE) -> tuple[int, ...]:
    """Frames at each end of an utterance where each window has zero precision.

    Parameters
    ----------
    windows : tuple of (left, right, coefficients)
    edge : {"zero_dynamic", "zero_dynamic_shared", "none"}

    Returns
    -------
    tuple of int, length W
        ``e_w``: window ``w`` is used at frame ``t`` of an utterance of ``L`` frames
        when ``e_w <= t < L - e_w``.
    """
    own = [max(left, right) for left, right, _ in windows]
    check_edge(edge)
    if edge == "none":
        return (0,) * len(windows)
    if edge == "zero_dynamic_shared":
        widest = max(own)
        return tuple(widest if e > 0 else 0 for e in own)
    return tuple(own)


def bandwidth(windows: tuple[Window, ...]) -> int:
    """Number of sub-diagonals of ``W^T P W``: ``max(left + right)``."""
    return max(left + right for left, right, _ in windows)


def frame_mask(windows: tuple[Window, ...], T: int, lengths: torch.Tensor | None,
               device: torch.device, edge: str = DEFAULT_EDGE) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Which (frame, window) pairs carry precision, after the edge rule ``edge``
    (:func:`edge_widths`) and padding.

    Returns
    -------
    mask : Tensor [shape=(B or 1, T, W, 1), dtype=bool]
        True where window ``w`` at frame ``t`` is used.
    pad : Tensor [shape=(B, T)] or None
        True on padded frames (``t >= length``); None without ``lengths``.
    """
    t = torch.arange(T, device=device)
    end = torch.full((1, 1), T, device=device) if lengths is None else lengths.view(-1, 1)
    cols = [(t >= e) & (t < end - e) for e in edge_widths(windows, edge)]
    mask = torch.stack(cols, -1).unsqueeze(-1)
    pad = None if lengths is None else t >= end
    return mask, pad


@lru_cache(maxsize=64)
def taps(windows: tuple[Window, ...]) -> tuple[tuple[int, int, float], ...]:
    """Non-zero window taps ``(w, s, c)``: window ``w`` at frame ``t`` adds ``c * x[t + s]``."""
    return tuple((w, j - left, c) for w, (left, _, coef) in enumerate(windows)
                 for j, c in enumerate(coef) if c != 0.0)


@lru_cache(maxsize=64)
def band_terms(windows: tuple[Window, ...]) -> tuple[tuple[int, int, int, float], ...]:
    """Terms ``(k, s, w, r)`` of ``A = W^T P W``: ``A[i, i-k] += r * p[i - s, w]``.

    From ``A[i, i-k] = sum_w sum_j c_w[j] c_w[j-k] p[i - j + left_w, w]``.
    """
    K = bandwidth(windows) + 1
    terms = []
    for w, (left, _, coef) in enumerate(windows):
        for k in range(K):
            for j in range(k, len(coef)):
                r = coef[j] * coef[j - k]
                if r != 0.0:
                    terms.append((k, j - left, w, r))
    return tuple(terms)


def build_band(prec: torch.Tensor, windows: tuple[Window, ...],
               pad: torch.Tensor | None = None) -> torch.Tensor:
    """Row-form band of ``A = W^T P W`` for every system (see :func:`band_terms`).

    Parameters
    ----------
    prec : Tensor [shape=(B, T, W, D)]
        Precisions, already zero where the edge rule or padding applies.
    pad : Tensor [shape=(B, T), dtype=bool], optional
        Padded frames: their rows become rows of the identity (as do their columns,
        which in row form are entries of the rows of later padded frames).

    Returns
    -------
    Tensor [shape=(B, T, K, D)]
    """
    B, T, _, D = prec.shape
    band = prec.new_zeros(B, T, bandwidth(windows) + 1, D)
    for k, s, w, r in band_terms(windows):
        if abs(s) < T:
            lo, hi = max(0, s), min(T, T + s)
            band[:, lo:hi, k].add_(prec[:, lo - s:hi - s, w], alpha=r)
    if pad is not None:  # padding is a suffix: a padded row couples only to real or padded frames before it
        unit = torch.zeros(band.shape[2], dtype=band.dtype, device=band.device)
        unit[0] = 1
        band = torch.where(pad[:, :, None, None], unit[:, None], band)
    return band


def apply_windows(x: torch.Tensor, windows: tuple[Window, ...]) -> torch.Tensor:
    """``W x``: window outputs of static trajectories, zero beyond the ends.

    Parameters
    ----------
    x : Tensor [shape=(B, T, D)]

    Returns
    -------
    Tensor [shape=(B, T, W, D)]
    """
    B, T, D = x.shape
    out = x.new_zeros(B, T, len(windows), D)
    for w, s, c in taps(windows):
        if abs(s) < T:
            lo, hi = max(0, -s), min(T, T - s)
            out[:, lo:hi, w].add_(x[:, lo + s:hi + s], alpha=c)
    return out


def apply_windows_t(y: torch.Tensor, windows: tuple[Window, ...]) -> torch.Tensor:
    """``W^T y``: adjoint of :func:`apply_windows`.

    Parameters
    ----------
    y : Tensor [shape=(B, T, W, D)]

    Returns
    -------
    Tensor [shape=(B, T, D)]
    """
    B, T, _, D = y.shape
    out = y.new_zeros(B, T, D)
    for w, s, c in taps(windows):
        if abs(s) < T:
            lo, hi = max(0, s), min(T, T + s)
            out[:, lo:hi].add_(y[:, lo - s:hi - s, w], alpha=c)
    return out
