"""Dynamic (delta) features by regression windows, for NumPy arrays and torch tensors.

A window is a triple ``(left, right, coefficients)`` with ``len(coefficients) ==
left + right + 1``; applied at frame ``t`` it gives

    y[t] = sum_k coefficients[k] * x[t - left + k],   k = 0 .. left + right.

Frames outside ``[0, T)`` are, with ``padding="edge"`` (the default), the boundary
frame repeated (``x[-1] := x[0]``, ``x[T] := x[T-1]``), so the delta of a constant
is zero at the edges too; Merlin and HTS's ``window.pl`` do this. With
``padding="zero"`` they are zeros, as in nnmnkwii (its ``delta_features``
correlates each dimension with the window over a zero-padded signal), so the delta
of a constant ``c`` is ``c/2`` at the first frame and ``-c/2`` at the last.
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from sps.spec import DEFAULT_WINDOWS, check_windows


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


#: how frames beyond the edges are filled (see the module docstring)
PADDINGS = ("edge", "zero")


def delta_features(x, windows: Sequence = DEFAULT_WINDOWS, padding: str = "edge"):
    """Append dynamic features computed with regression ``windows``.

    Parameters
    ----------
    x : ndarray or Tensor [shape=(T, D) or (B, T, D)]
        Static features, time on the second-to-last axis.
    windows : sequence of (left, right, coefficients)
        W windows; the first is normally the identity ``(0, 0, [1.0])``.
    padding : {"edge", "zero"}
        Frames beyond the edges: the boundary frame repeated (Merlin, HTS) or zeros
        (nnmnkwii).

    Returns
    -------
    y : same type, dtype and device as ``x`` [shape=(..., T, D * W)]
        Window-major: ``y[..., w * D:(w + 1) * D]`` is window ``w`` applied to every
        dimension, i.e. ``[static | delta | delta-delta]``. Differentiable for tensors.
    """
    windows = check_windows(windows)
    if padding not in PADDINGS:
        raise ValueError(f"delta_features: padding must be one of {', '.join(PADDINGS)}; got {padding!r}")
    if x.ndim not in (2, 3):
        raise ValueError(f"delta_features: expected (T, D) or (B, T, D), got shape {tuple(x.shape)}")
    T = x.shape[-2]
    if T == 0:
        raise ValueError("delta_features: input has 0 frames")
    tensor = _is_tensor(x)
    outputs = []
    for left, right, coeffs in windows:
        acc = None
        for k, c in enumerate(coeffs):
            if c == 0.0:
                continue
            src = np.arange(T) + k - left
            idx = np.clip(src, 0, T - 1)
            inside = (src >= 0) & (src < T)
            if tensor:
                import torch
                idx = torch.as_tensor(idx, device=x.device)
            term = x[..., idx, :] * c
            if padding == "zero" and not inside.all():
                keep = inside[:, None].astype(np.float64)
                term = term * (torch.as_tensor(keep, dtype=x.dtype, device=x.device) if tensor
                               else keep.astype(term.dtype, copy=False))
            acc = term if acc is None else acc + term
        outputs.append(acc if acc is not None else x * 0.0)
    if tensor:
        import torch
        return torch.cat(outputs, dim=-1)
    return np.concatenate(outputs, axis=-1)
