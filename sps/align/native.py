"""Calls into the aligner's C kernels (``sps/native/align.c``): forward-backward and Viterbi
over a padded batch, one utterance per OpenMP thread, only the states inside the beam."""
from __future__ import annotations

import ctypes

import torch

from sps import native


def library() -> ctypes.CDLL | None:
    """The compiled kernel library, or None (no compiler / ``SPS_NO_NATIVE=1``)."""
    return native.library("align")


def _args(log_b, trans, skip, num_frames, num_states, earliest, rest):
    tensors = [t.contiguous() for t in (log_b, trans, skip, earliest, rest, num_frames, num_states)]
    return tensors, [native.ptr(t) for t in tensors]


def _threads(log_b: torch.Tensor) -> int:
    B, T, N = log_b.shape
    return native.threads(B, 20.0 * B * T * N)


def forward_backward(log_b, trans, skip, num_frames, num_states, earliest, rest, beam):
    """See :func:`sps.align.hmm.forward_backward` (float64 CPU tensors)."""
    lib = library()
    B, T, N = log_b.shape
    keep, ptrs = _args(log_b, trans, skip, num_frames, num_states, earliest, rest)
    gamma = torch.zeros(B, T, N, dtype=torch.float64)
    entries = torch.zeros(B, N, dtype=torch.float64)
    loglik = torch.empty(B, dtype=torch.float64)
    native.check(lib.align_forward_backward(*ptrs, B, T, N, float(beam), native.ptr(gamma), native.ptr(entries),
                                            native.ptr(loglik), _threads(log_b)), "align_forward_backward")
    del keep
    return gamma, entries, loglik


def viterbi(log_b, trans, skip, num_frames, num_states, earliest, rest, beam):
    """See :func:`sps.align.hmm.viterbi` (float64 CPU tensors)."""
    lib = library()
    B, T, N = log_b.shape
    keep, ptrs = _args(log_b, trans, skip, num_frames, num_states, earliest, rest)
    path = torch.empty(B, T, dtype=torch.long)
    score = torch.empty(B, dtype=torch.float64)
    native.check(lib.align_viterbi(*ptrs, B, T, N, float(beam), native.ptr(path), native.ptr(score),
                                   _threads(log_b)), "align_viterbi")
    del keep
    return path, score
