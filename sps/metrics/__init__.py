"""Objective measures of generated speech parameters against natural ones.

Every function compares a reference (natural) with a generated sequence frame by
frame, so both must be on the same time axis (synthesis with natural durations).
Inputs are NumPy arrays or torch tensors, one utterance ``(T, ...)`` or a padded
batch ``(B, T, ...)`` with ``lengths`` [shape=(B,)] giving the valid frames; a
single utterance gives a float, a batch a value per utterance (same library as the
input). Computation is in float64.

==================  =========================================================  =======
function            per utterance                                              unit
==================  =========================================================  =======
mcd                 mean_t (10 / ln 10) sqrt(2 sum_{d>=1} (c_td - c'_td)^2)    dB
bap_distortion      mean_t sqrt(sum_d (b_td - b'_td)^2)                        dB
f0_rmse             sqrt(mean_{t in V} (f_t - f'_t)^2)                         Hz
f0_corr             Pearson correlation of f_t and f'_t over t in V            -
vuv_error           mean_t [voiced_t != voiced'_t]                             fraction
duration_rmse       sqrt(mean_{n,s} (d_ns - d'_ns)^2)                          frames
==================  =========================================================  =======

``V`` is the set of frames voiced in both (F0 > 0 in both). The mel-cepstral
distortion leaves out the energy coefficient ``c0``; band aperiodicities from
``pyworld.code_aperiodicity`` are in dB already. An utterance without frames voiced
in both has F0 RMSE and correlation NaN (left out of means by :func:`nanmean`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["mcd", "bap_distortion", "f0_rmse", "f0_corr", "vuv_error", "duration_rmse",
           "MCD_CONST", "nanmean", "dtw_path"]

#: (10 / ln 10) * sqrt(2): mel-cepstral distance -> dB
MCD_CONST = 10.0 / math.log(10.0) * math.sqrt(2.0)


def _prepare(ref, gen, lengths, name: str, vector: bool):
    """-> (ref, gen) float64 tensors (B, T, D) or (B, T), mask (B, T), batched, numpy_in."""
    numpy_in = not isinstance(ref, torch.Tensor)
    r = torch.as_tensor(np.asarray(ref) if numpy_in else ref).detach().to(torch.float64).cpu()
    g = torch.as_tensor(np.asarray(gen) if not isinstance(gen, torch.Tensor) else gen).detach().to(torch.float64).cpu()
    if r.shape != g.shape:
        raise ValueError(f"{name}: reference shape {tuple(r.shape)} != generated shape {tuple(g.shape)}")
    base = 2 if vector else 1
    if r.ndim == base:
        batched = False
        r, g = r[None], g[None]
    elif r.ndim == base + 1:
        batched = True
    else:
        kind = "(T, D) or (B, T, D)" if vector else "(T,) or (B, T)"
        raise ValueError(f"{name}: expected {kind}, got shape {tuple(r.shape)}")
    B, T = r.shape[:2]
    if lengths is None:
        mask = torch.ones(B, T, dtype=torch.bool)
    else:
        if not batched:
            raise ValueError(f"{name}: lengths need batched (B, T, ...) inputs")
        lengths = torch.as_tensor(np.asarray(lengths) if not isinstance(lengths, torch.Tensor) else lengths).cpu()
        if lengths.shape != (B,) or (lengths > T).any() or (lengths < 0).any():
            raise ValueError(f"{name}: lengths {lengths.tolist()} do not fit a batch of shape {tuple(r.shape)}")
        mask = torch.arange(T)[None] < lengths[:, None]
    return r, g, mask, batched, numpy_in


def _finish(values: torch.Tensor, batched: bool, numpy_in: bool):
    if not batched:
        return float(values[0])
    return values.numpy() if numpy_in else values


def _frame_mean(per_frame: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    n = mask.sum(1)
    return torch.where(n > 0, (per_frame * mask).sum(1) / n.clamp_min(1), torch.nan)


def mcd(ref, gen, lengths=None):
    """Mel-cepstral distortion in dB, leaving out ``c0``.

    Parameters
    ----------
    ref, gen : ndarray or Tensor [shape=(T, M+1) or (B, T, M+1)]
        Mel-cepstra ``c0 .. cM`` (natural, generated).
    lengths : array [shape=(B,)], optional
        Valid frames of each batch item.

    Returns
    -------
    float or array [shape=(B,)]
        ``mean_t (10 / ln 10) sqrt(2 sum_{d=1}^{M} (c_td - c'_td)^2)``, dB.
    """
    r, g, mask, batched, np_in = _prepare(ref, gen, lengths, "mcd", vector=True)
    dist = MCD_CONST * torch.sqrt(((r[..., 1:] - g[..., 1:]) ** 2).sum(-1))
    return _finish(_frame_mean(dist, mask), batched, np_in)


def bap_distortion(ref, gen, lengths=None):
    """Band-aperiodicity distortion: mean Euclidean distance per frame, in dB.

    Parameters
    ----------
    ref, gen : ndarray or Tensor [shape=(T, D) or (B, T, D)]
        Coded aperiodicity (dB) of each band.
    lengths : array [shape=(B,)], optional
    """
    r, g, mask, batched, np_in = _prepare(ref, gen, lengths, "bap_distortion", vector=True)
    dist = torch.sqrt(((r - g) ** 2).sum(-1))
    return _finish(_frame_mean(dist, mask), batched, np_in)


def _voiced_both(r, g, mask):
    return (r > 0) & (g > 0) & mask


def f0_rmse(ref, gen, lengths=None):
    """F0 root-mean-square error in Hz over the frames voiced in both.

    Parameters
    ----------
    ref, gen : ndarray or Tensor [shape=(T,) or (B, T)]
        F0 in Hz, 0 for unvoiced frames.
    lengths : array [shape=(B,)], optional

    Returns
    -------
    float or array [shape=(B,)]
        Hz; NaN for an utterance with no frame voiced in both.
    """
    r, g, mask, batched, np_in = _prepare(ref, gen, lengths, "f0_rmse", vector=False)
    v = _voiced_both(r, g, mask)
    return _finish(torch.sqrt(_frame_mean((r - g) ** 2, v)), batched, np_in)


def f0_corr(ref, gen, lengths=None):
    """Pearson correlation of natural and generated F0 over the frames voiced in both.

    Parameters
    ----------
    ref, gen : ndarray or Tensor [shape=(T,) or (B, T)]
        F0 in Hz, 0 for unvoiced frames.
    lengths : array [shape=(B,)], optional

    Returns
    -------
    float or array [shape=(B,)]
        In [-1, 1]; NaN with fewer than 2 frames voiced in both or a constant F0.
    """
    r, g, mask, batched, np_in = _prepare(ref, gen, lengths, "f0_corr", vector=False)
    v = _voiced_both(r, g, mask)
    mr, mg = _frame_mean(r, v)[:, None], _frame_mean(g, v)[:, None]
    dr, dg = (r - mr) * v, (g - mg) * v
    den = torch.sqrt((dr ** 2).sum(1) * (dg ** 2).sum(1))
    corr = torch.where((v.sum(1) >= 2) & (den > 0), (dr * dg).sum(1) / den.clamp_min(1e-300), torch.nan)
    return _finish(corr, batched, np_in)


def vuv_error(ref, gen, lengths=None):
    """Voiced/unvoiced error rate: the fraction of frames whose voicing differs.

    Parameters
    ----------
    ref, gen : ndarray or Tensor [shape=(T,) or (B, T)]
        F0 in Hz (or any voicing value): a frame is voiced when the value is > 0.
    lengths : array [shape=(B,)], optional

    Returns
    -------
    float or array [shape=(B,)]
        In [0, 1] (multiply by 100 for %).
    """
    r, g, mask, batched, np_in = _prepare(ref, gen, lengths, "vuv_error", vector=False)
    return _finish(_frame_mean(((r > 0) != (g > 0)).to(torch.float64), mask), batched, np_in)


def duration_rmse(ref, gen, lengths=None):
    """Duration root-mean-square error in frames.

    Parameters
    ----------
    ref, gen : ndarray or Tensor [shape=(N, S) or (B, N, S)]
        Frames per phone (S = 1) or per state (S states) of N phones.
    lengths : array [shape=(B,)], optional
        Valid phones per batch item.

    Returns
    -------
    float or array [shape=(B,)]
        ``sqrt(mean_{n, s} (d_ns - d'_ns)^2)``, frames.
    """
    r, g, mask, batched, np_in = _prepare(ref, gen, lengths, "duration_rmse", vector=True)
    mse = _frame_mean(((r - g) ** 2).mean(-1), mask)
    return _finish(torch.sqrt(mse), batched, np_in)


def nanmean(values) -> float:
    """Mean of the finite values (NaN when there are none)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else math.nan


from sps.metrics.dtw import dtw_path  # noqa: E402 - re-exported
