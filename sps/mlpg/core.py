"""Differentiable maximum-likelihood parameter generation (MLPG).

For one static dimension with frames ``t = 0 .. T-1`` and windows ``w``, MLPG solves

    (W^T P W) x = W^T P mu

where ``mu`` are the predicted window outputs (static, delta, ...), ``P`` the
diagonal precisions ``1 / variance`` (zeroed by the edge rule ``edge`` of
:mod:`sps.mlpg.windows`) and ``W`` maps a trajectory to its window outputs. The
matrix is symmetric positive definite and banded, so it is factorised with the
batched banded LDL^T of :mod:`sps.mlpg.banded`, one system per (utterance,
dimension). Gradients come from the adjoint system with the same factor:
``lam = A^{-1} g``, ``dL/dmu = P W lam``, ``dL/dp = (W lam) * (mu - W x)`` and
``dL/dvariance = -p^2 dL/dp``.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from . import native
from .banded import ldl_solve, pick_backend
from sps.spec import check_windows, default_windows

from .windows import DEFAULT_EDGE, apply_windows, apply_windows_t, build_band, check_edge, frame_mask

_UNIT_FACTORS: OrderedDict = OrderedDict()
_UNIT_CACHE_SIZE = 16


def _factorise(band: torch.Tensor, backend: str | None) -> torch.Tensor:
    rhs = band.new_zeros(band.shape[0], band.shape[1], band.shape[3])
    return ldl_solve(band, rhs, backend=backend)[0]


def _unit_factor(windows, T, mask, pad, lengths, dtype, backend, edge):
    """Factor of ``W^T M W`` (``M`` the 0/1 edge mask of rule ``edge``): shape (B or 1, T, K, 1)."""
    key = (windows, T, str(mask.device), dtype, backend, edge)
    if lengths is None and key in _UNIT_FACTORS:
        _UNIT_FACTORS.move_to_end(key)
        return _UNIT_FACTORS[key]
    factor = _factorise(build_band(mask.to(dtype), windows, pad), backend)
    if lengths is None:
        _UNIT_FACTORS[key] = factor
        if len(_UNIT_FACTORS) > _UNIT_CACHE_SIZE:
            _UNIT_FACTORS.popitem(last=False)
    return factor


class _MLPGFunction(torch.autograd.Function):
    """means (B, T, W*D), variances broadcastable to it or None (unit) -> (B, T, D)."""

    @staticmethod
    def forward(ctx, means, variances, windows, lengths, backend, edge):
        B, T, F = means.shape
        W = len(windows)
        D = F // W
        backend = pick_backend(means.device, means.dtype, backend)
        mask, pad = frame_mask(windows, T, lengths, means.device, edge)
        factor = prec = None
        if variances is None:
            factor = _unit_factor(windows, T, mask, pad, lengths, means.dtype, backend, edge)
        if backend == "native":  # fused C kernel: band and right-hand side formed on the fly
            factor, x = native.mlpg_forward(means, variances, windows, lengths, factor, edge)
        else:
            _check_inputs(means, variances, mask, W, D)
            mu = means.reshape(B, T, W, D)
            if variances is None:
                prec = mask.to(means.dtype)  # (B or 1, T, W, 1)
            else:
                var = variances.reshape(variances.shape[:-1] + (W, D))
                prec = torch.where(mask, 1 / var, torch.zeros((), dtype=var.dtype, device=var.device))
            rhs = apply_windows_t(torch.where(mask, prec * mu, torch.zeros((), dtype=mu.dtype, device=mu.device)),
                                  windows)   # unused entries carry no weight, whatever their value
            if pad is not None:  # a window reaching into padding (edge="none") leaves nothing there
                rhs = rhs.masked_fill(pad.unsqueeze(-1), 0)
            x = None
            if factor is None:
                band = build_band(prec, windows, pad)
                if band.shape[0] == B:
                    factor, x = ldl_solve(band, rhs, backend=backend)
                else:  # one system matrix shared by the whole batch
                    factor = _factorise(band, backend)
            if x is None:
                _, x = ldl_solve(None, rhs, factor, backend=backend)
        ctx.save_for_backward(means, variances, prec, factor, x)
        ctx.windows, ctx.backend, ctx.lengths, ctx.edge, ctx.pad = windows, backend, lengths, edge, pad
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        means, variances, prec, factor, x = ctx.saved_tensors
        windows = ctx.windows
        B, T, F = means.shape
        need_means, need_var = ctx.needs_input_grad[:2]
        # adjoint system A lam = grad: A is symmetric, so the forward factor serves
        if ctx.backend == "native":
            grad_means, grad_var = native.mlpg_backward(grad, factor, x, means, variances, windows,
                                                          ctx.lengths, ctx.edge)
        else:
            if ctx.pad is not None:  # padded outputs are constant 0: their gradient goes nowhere
                grad = grad.masked_fill(ctx.pad.unsqueeze(-1), 0)
            _, lam = ldl_solve(None, grad.contiguous(), factor, backend=ctx.backend)
            wlam = apply_windows(lam, windows)  # (B, T, W, D)
            grad_means = (prec * wlam).reshape(B, T, F)
            grad_var = None
            if need_var:
                resid = means.reshape(wlam.shape) - apply_windows(x, windows)
                grad_var = (-(wlam * resid) * prec.square()).reshape(B, T, F)
        grad_means = grad_means if need_means else None
        grad_var = grad_var if need_var else None
        if grad_var is not None:
            grad_var = grad_var.sum_to_size(variances.shape)
        return grad_means, grad_var, None, None, None, None


def _check_inputs(means, variances, mask, W: int, D: int) -> None:
    """ValueError naming the first used entry with a bad variance or mean (PyTorch paths;
    the C kernel checks while it forms the precisions)."""
    B, T, F = means.shape
    used = mask.expand(B, T, W, 1).expand(B, T, W, D).reshape(B, T, F)
    ok = torch.isfinite(means)
    if variances is not None:
        v = variances.expand(B, T, F)
        ok = ok & (v > 0) & torch.isfinite(v)
    bad = (~ok & used).reshape(-1).nonzero()
    if len(bad):
        raise ValueError(native.describe_bad(int(bad[0, 0]), means, variances, W, D))


def _as_lengths(lengths, B: int, T: int, device) -> torch.Tensor | None:
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex:
        raise ValueError(f"lengths must be integers (frames) or a boolean mask, got dtype {lengths.dtype}")
    if lengths.dim() == 2:  # (B, T) mask of valid frames (a prefix of each row)
        if lengths.shape != (B, T):
            raise ValueError(f"mask shape {tuple(lengths.shape)} does not match (B, T) = {(B, T)}")
        valid = lengths.bool()
        lengths = valid.sum(-1)
        prefix = torch.arange(T, device=device)[None, :] < lengths[:, None]
        if not torch.equal(prefix, valid):
            row = int((prefix != valid).any(-1).nonzero()[0, 0])
            raise ValueError(f"mask row {row} is not a prefix of valid frames (True ... True False ... False)")
    lengths = lengths.reshape(-1).long()
    if lengths.numel() != B:
        raise ValueError(f"lengths has {lengths.numel()} entries for a batch of {B}")
    if bool(((lengths < 0) | (lengths > T)).any()):
        raise ValueError(f"lengths must lie in [0, T={T}], got {lengths.tolist()}")
    return lengths


def _run(means, variances, windows, lengths, backend, edge=DEFAULT_EDGE):
    windows = check_windows(default_windows() if windows is None else windows)
    check_edge(edge)
    as_numpy = isinstance(means, np.ndarray)
    means = torch.as_tensor(means)
    if variances is not None:
        variances = torch.as_tensor(variances, device=means.device)
    if means.dim() not in (2, 3):
        raise ValueError(f"means must be (T, D*W) or (B, T, D*W), got shape {tuple(means.shape)}")
    W = len(windows)
    F = means.shape[-1]
    if F % W != 0:
        raise ValueError(f"means: last dimension {F} is not a multiple of the {W} windows")
    if variances is not None:
        if variances.shape[-1] != F or variances.dim() > means.dim():
            raise ValueError(f"variances shape {tuple(variances.shape)} does not match means "
                             f"{tuple(means.shape)} (expected (..., T, {F}) or ({F},))")
        try:
            torch.broadcast_shapes(variances.shape, means.shape)
        except RuntimeError as err:
            raise ValueError(f"variances shape {tuple(variances.shape)} does not broadcast to "
                             f"means {tuple(means.shape)}") from err
    unbatched = means.dim() == 2
    x = means.unsqueeze(0) if unbatched else means
    B, T, _ = x.shape
    lengths = _as_lengths(lengths, B, T, means.device)
    out_dtype = means.dtype
    work = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    with torch.autocast(device_type=means.device.type, enabled=False):
        v = None if variances is None else variances.to(work)
        y = _MLPGFunction.apply(x.to(work), v, windows, lengths, backend, edge).to(out_dtype)
    y = y[0] if unbatched else y
    return y.detach().numpy() if as_numpy else y


def mlpg(means, variances, windows=None, lengths=None, *, backend: str | None = None,
         edge: str = DEFAULT_EDGE):
    """Maximum-likelihood parameter generation, batched and differentiable.

    Parameters
    ----------
    means : Tensor or ndarray [shape=(B, T, D*W) or (T, D*W)]
        Predicted window outputs, window-major: column ``w * D + d`` is window ``w``
        of static dimension ``d`` (``[static (D) | delta (D) | delta-delta (D)]``).
    variances : Tensor or ndarray [shape=(B, T, D*W), (T, D*W) or (D*W,)]
        Per-frame or global variances (anything broadcasting to ``means`` with the
        same last dimension). Must be positive where used; values on edge-rule
        and padded frames are ignored (they may be zero).
    windows : list of (int, int, list of float), optional
        ``(left, right, coefficients)`` triples; default :func:`default_windows`.
    lengths : Tensor, ndarray or list [shape=(B,)] or bool mask [shape=(B, T)], optional
        Valid frames per utterance. Padded frames do not affect the result, which
        is 0 there; the edge rule applies at each utterance's own end.
    backend : {None, "torch", "native", "triton"}
        Banded-solver backend; see :func:`sps.mlpg.banded.pick_backend`.
    edge : {"zero_dynamic", "zero_dynamic_shared", "none"}
        What happens at the first and last frames of an utterance (see
        :mod:`sps.mlpg.windows` and ``docs/mlpg.md``). ``"zero_dynamic"`` (default):
        window ``w`` has zero precision on the first and last ``max(left_w,
        right_w)`` frames, so no window reaches past an end.
        ``"zero_dynamic_shared"``: every dynamic window uses the largest width of
        all windows (current nnmnkwii). ``"none"``: every window is used at every
        frame and the trajectory counts as zero beyond the ends (old nnmnkwii).

    Returns
    -------
    Tensor or ndarray [shape=(B, T, D) or (T, D)]
        Static trajectories, same type (NumPy in, NumPy out), device and dtype as
        ``means``. Half and bfloat16 inputs (and autocast regions) are solved in
        float32. Differentiable with respect to ``means`` and ``variances``.
    """
    if variances is None:
        raise ValueError("mlpg: variances is None; use unit_variance_mlpg for unit variances")
    return _run(means, variances, windows, lengths, backend, edge)


def unit_variance_mlpg(means, windows=None, lengths=None, *, backend: str | None = None,
                       edge: str = DEFAULT_EDGE):
    """MLPG with all variances equal to one (a linear map of ``means``).

    The system matrix then depends only on ``T``, the windows and the lengths, so
    it is factorised once (cached across calls when ``lengths`` is None, per window
    set, length, dtype, backend and edge rule) and that
    factor is shared by every utterance and dimension; the backward pass is one
    solve with the same factor.

    Parameters
    ----------
    means : Tensor or ndarray [shape=(B, T, D*W) or (T, D*W)]
    windows, lengths, backend, edge
        As in :func:`mlpg`.

    Returns
    -------
    Tensor or ndarray [shape=(B, T, D) or (T, D)]
    """
    return _run(means, None, windows, lengths, backend, edge)


class MLPG(nn.Module):
    """Module wrapper of :func:`mlpg` / :func:`unit_variance_mlpg`.

    Parameters
    ----------
    windows : list of (int, int, list of float), optional
        Default :func:`default_windows`.
    backend : {None, "torch", "native", "triton"}
    edge : {"zero_dynamic", "zero_dynamic_shared", "none"}
        Edge rule, as in :func:`mlpg`.
    """

    def __init__(self, windows=None, backend: str | None = None, edge: str = DEFAULT_EDGE):
        super().__init__()
        self.windows = check_windows(default_windows() if windows is None else windows)
        self.backend = backend
        self.edge = check_edge(edge)

    def forward(self, means, variances=None, lengths=None):
        """``means [shape=(B, T, D*W)]``, ``variances`` as in :func:`mlpg` or None
        for unit variances -> ``(B, T, D)``."""
        return _run(means, variances, self.windows, lengths, self.backend, self.edge)

    def extra_repr(self) -> str:
        return f"windows={list(self.windows)}, edge={self.edge!r}"
