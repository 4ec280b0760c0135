"""Forward-backward and Viterbi on banded state chains (:mod:`sps.align.graph`), in log space.

Both take a batch of utterances padded to common sizes: ``log_b [B, T, N]`` (the output
log-likelihood of each chain state at each frame), ``trans [B, N, 3]`` (log probability
of entering state ``j`` from itself, from ``j - 1`` and from ``skip[j]``), ``skip
[B, N]`` and the true sizes ``num_frames [B]`` and ``num_states [B]``. A path starts in
state 0 at frame 0 and ends in the last state at the last frame.

Pruning (``beam``, as HTK prunes): at each frame, states whose forward score falls more
than ``beam`` below the frame's best are dropped. The best may be a state that can no
longer reach the end in the frames left (``rest`` of the graph); such states are
dropped as well, after the comparison. So when the search runs ahead of the audio or
falls behind it (a transcript that does not fit the recording, or a model that is not
trained yet), the beam can keep nothing that finishes: the utterance has log-likelihood
``-inf`` and zero occupancies (a *beam failure*). The backward pass visits only the
states the forward pass kept. ``beam=inf`` gives the exact results.

Backends: ``torch`` (batched over utterances, one step per frame; the reference) and
``native`` (``sps/native/align.c``: per utterance, only the states inside the beam,
OpenMP over the batch); ``auto`` picks native when it is available. Both compute in
float64 and return the same numbers to within rounding.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from sps.backend import resolve_backend

NEG_INF = float("-inf")


def _native_library():
    from sps.align import native
    return native.library()


def _pad(arrays, fill, dtype) -> torch.Tensor:
    n = max(a.shape[0] for a in arrays)
    out = torch.full((len(arrays), n) + tuple(arrays[0].shape[1:]), fill, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, :a.shape[0]] = torch.as_tensor(a, dtype=dtype)
    return out


def valid_masks(earliest: torch.Tensor, rest: torch.Tensor, num_frames: torch.Tensor,
                T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T, N]`` bools: state ``j`` can be reached by frame ``t`` (``earliest[j] <= t``;
    padded states have ``earliest`` beyond any frame), and can still finish from frame ``t``
    (``t + rest[j] <= T_b - 1``)."""
    t = torch.arange(T).view(1, T, 1)
    return earliest.unsqueeze(1) <= t, t + rest.unsqueeze(1) <= (num_frames - 1).view(-1, 1, 1)


def _skip_target(skip: torch.Tensor) -> torch.Tensor:
    """``[B, N]``: the state a skip from each state leads to, -1 for none."""
    B, N = skip.shape
    target = torch.full((B, N + 1), -1, dtype=torch.long)
    src = torch.where(skip >= 0, skip, torch.full_like(skip, N))
    target.scatter_(1, src, torch.arange(N).expand(B, N).contiguous())
    return target[:, :N]


def _check(log_b, trans, skip, num_frames, num_states):
    B, T, N = log_b.shape
    if trans.shape != (B, N, 3) or skip.shape != (B, N):
        raise ValueError(f"hmm: log_b {tuple(log_b.shape)} needs trans (B, N, 3) and skip (B, N), "
                         f"got {tuple(trans.shape)} and {tuple(skip.shape)}")
    if num_frames.shape != (B,) or num_states.shape != (B,):
        raise ValueError(f"hmm: num_frames and num_states must have shape ({B},)")
    if (num_frames < 1).any() or (num_frames > T).any() or (num_states < 1).any() or (num_states > N).any():
        raise ValueError(f"hmm: sizes out of range: num_frames {num_frames.tolist()} (T={T}), "
                         f"num_states {num_states.tolist()} (N={N})")


def _prune(a: torch.Tensor, beam: float) -> torch.Tensor:
    if math.isinf(beam):
        return a
    best = a.max(dim=1, keepdim=True).values
    return a.masked_fill(a < best - beam, NEG_INF)


def _forward_torch(log_b, trans, skip, reach, finish, num_frames, beam, viterbi):
    B, T, N = log_b.shape
    neg = torch.full((B, 1), NEG_INF, dtype=log_b.dtype)
    skip_idx = skip.clamp(min=0)
    alpha = torch.full((B, T, N), NEG_INF, dtype=log_b.dtype)
    back = torch.zeros((B, T, N), dtype=torch.int8) if viterbi else None
    a = torch.full((B, N), NEG_INF, dtype=log_b.dtype)
    a[:, 0] = log_b[:, 0, 0]
    a = a.masked_fill(~finish[:, 0], NEG_INF)
    alpha[:, 0] = a
    for t in range(1, T):
        prev = alpha[:, t - 1]
        cand = torch.stack([prev + trans[..., 0],
                            torch.cat([neg, prev[:, :-1]], dim=1) + trans[..., 1],
                            prev.gather(1, skip_idx) + trans[..., 2]], dim=-1)
        if viterbi:
            best, arg = cand.max(dim=-1)
            back[:, t] = arg.to(torch.int8)
            a = best + log_b[:, t]
        else:
            a = torch.logsumexp(cand, dim=-1) + log_b[:, t]
        a = _prune(a.masked_fill(~reach[:, t], NEG_INF), beam).masked_fill(~finish[:, t], NEG_INF)
        alpha[:, t] = torch.where((t < num_frames).view(B, 1), a, prev)
    return alpha, back


def forward_backward(log_b, trans, skip, num_frames, num_states, earliest, rest, beam: float = math.inf,
                     backend: str | None = "auto"):
    """State occupancies and log-likelihoods of a batch of utterances.

    Parameters
    ----------
    log_b : Tensor [shape=(B, T, N)]
        Output log-likelihood of every chain state at every frame (padding: any value).
    trans : Tensor [shape=(B, N, 3)]
        Log probabilities of entering each state from itself, from the previous state and
        from ``skip`` (-inf where there is no such transition).
    skip : LongTensor [shape=(B, N)]
        Source state of the skip transition into each state, -1 for none.
    num_frames, num_states : LongTensor [shape=(B,)]
        True sizes ``T_b <= T`` and ``N_b <= N``.
    earliest, rest : LongTensor [shape=(B, N)]
        :class:`sps.align.graph.Graph` fields (for padded states any values).
    beam : float
        Pruning beam in natural-log units (inf: exact).
    backend : {"auto", "torch", "native"}

    Returns
    -------
    gamma : Tensor [shape=(B, T, N), float64]
        Posterior probability of each state at each frame; sums to 1 over the states of
        every frame ``t < T_b``; 0 elsewhere and for a beam failure.
    entries : Tensor [shape=(B, N), float64]
        Expected number of transitions into each state from another state.
    loglik : Tensor [shape=(B,), float64]
        Log-likelihood of each utterance (sum over all paths), -inf for a beam failure.
    """
    args, backend = _prepare(log_b, trans, skip, num_frames, num_states, earliest, rest, backend, "forward_backward")
    if backend == "native":
        from sps.align import native
        return native.forward_backward(*args, beam)
    return _forward_backward_torch(*args, beam)


def _prepare(log_b, trans, skip, num_frames, num_states, earliest, rest, backend, what):
    """CPU float64/int64 copies of the inputs (checked) and the backend to run."""
    args = (log_b.double().cpu(), trans.double().cpu(), skip.long().cpu(), num_frames.long().cpu(),
            num_states.long().cpu(), earliest.long().cpu(), rest.long().cpu())
    _check(*args[:5])
    return args, resolve_backend(backend, args[0].device, what=what, choices=("native", "torch"),
                                 native=_native_library)


def _padded_states(earliest, num_states, T):
    N = earliest.shape[1]
    pad = torch.arange(N).view(1, N) >= num_states.view(-1, 1)
    return earliest.masked_fill(pad, T + 1)


def _forward_backward_torch(log_b, trans, skip, num_frames, num_states, earliest, rest, beam):
    B, T, N = log_b.shape
    reach, finish = valid_masks(_padded_states(earliest, num_states, T), rest, num_frames, T)
    alpha, _ = _forward_torch(log_b, trans, skip, reach, finish, num_frames, beam, viterbi=False)
    b_idx = torch.arange(B)
    loglik = alpha[b_idx, num_frames - 1, num_states - 1]
    ok = torch.isfinite(loglik)
    # backward over the states the forward pass kept
    kept = torch.isfinite(alpha)
    target = _skip_target(skip)
    target_idx = target.clamp(min=0)
    # log p of leaving i: to itself, to i + 1, along its skip (to target[i])
    out_self = trans[..., 0]
    out_next = torch.cat([trans[:, 1:, 1], torch.full((B, 1), NEG_INF, dtype=trans.dtype)], dim=1)
    out_skip = torch.where(target >= 0, trans[..., 2].gather(1, target_idx),
                           torch.full_like(trans[..., 2], NEG_INF))
    beta = torch.full((B, T, N), NEG_INF, dtype=log_b.dtype)
    end = torch.full((B, N), NEG_INF, dtype=log_b.dtype)
    end[b_idx, num_states - 1] = 0.0
    beta[b_idx, num_frames - 1] = end[b_idx]
    neg = torch.full((B, 1), NEG_INF, dtype=log_b.dtype)
    for t in range(T - 2, -1, -1):
        e = log_b[:, t + 1] + beta[:, t + 1]
        cand = torch.stack([out_self + e, out_next + torch.cat([e[:, 1:], neg], dim=1),
                            out_skip + e.gather(1, target_idx)], dim=-1)
        bt = torch.logsumexp(cand, dim=-1).masked_fill(~kept[:, t], NEG_INF)
        beta[:, t] = torch.where((t < num_frames - 1).view(B, 1), bt, beta[:, t])
    ll = torch.where(ok, loglik, torch.zeros_like(loglik)).view(B, 1, 1)
    gamma = torch.exp(alpha + beta - ll)
    gamma = torch.where(ok.view(B, 1, 1), gamma, torch.zeros_like(gamma))
    gamma = torch.nan_to_num(gamma, nan=0.0)
    # expected entries into j: from j - 1 and from skip[j], frames 1 .. T_b - 1
    e = log_b[:, 1:] + beta[:, 1:] - ll                                         # (B, T-1, N)
    from_prev = torch.cat([torch.full((B, T - 1, 1), NEG_INF, dtype=log_b.dtype), alpha[:, :-1, :-1]], dim=2)
    from_skip = alpha[:, :-1].gather(2, skip.clamp(min=0).unsqueeze(1).expand(B, T - 1, N))
    xi = torch.logaddexp(from_prev + trans[:, None, :, 1], from_skip + trans[:, None, :, 2]) + e
    entries = torch.exp(xi).nan_to_num(nan=0.0).sum(dim=1)
    entries = torch.where(ok.view(B, 1), entries, torch.zeros_like(entries))
    return gamma, entries, loglik


def viterbi(log_b, trans, skip, num_frames, num_states, earliest, rest, beam: float = math.inf,
            backend: str | None = "auto"):
    """Best state path of each utterance.

    Parameters are those of :func:`forward_backward`.

    Returns
    -------
    path : LongTensor [shape=(B, T)]
        Chain state at every frame; -1 beyond ``T_b`` and for a beam failure.
    score : Tensor [shape=(B,), float64]
        Log-likelihood of the best path, -inf for a beam failure.
    """
    args, backend = _prepare(log_b, trans, skip, num_frames, num_states, earliest, rest, backend, "viterbi")
    if backend == "native":
        from sps.align import native
        return native.viterbi(*args, beam)
    log_b, trans, skip, num_frames, num_states, earliest, rest = args
    B, T, N = log_b.shape
    reach, finish = valid_masks(_padded_states(earliest, num_states, T), rest, num_frames, T)
    delta, back = _forward_torch(log_b, trans, skip, reach, finish, num_frames, beam, viterbi=True)
    score = delta[torch.arange(B), num_frames - 1, num_states - 1]
    path = torch.full((B, T), -1, dtype=torch.long)
    back_np, skip_np = back.numpy(), skip.numpy()
    for b in range(B):
        if not torch.isfinite(score[b]):
            continue
        j = int(num_states[b]) - 1
        p = np.empty(int(num_frames[b]), dtype=np.int64)
        for t in range(int(num_frames[b]) - 1, -1, -1):
            p[t] = j
            if t:
                slot = back_np[b, t, j]
                j = j if slot == 0 else (j - 1 if slot == 1 else int(skip_np[b, j]))
        path[b, :p.size] = torch.from_numpy(p)
    return path, score


def batch_graphs(graphs, log_bs, log_loop, log_enter):
    """Pad per-utterance inputs into the batch layout of :func:`forward_backward`.

    Parameters
    ----------
    graphs : list of Graph
    log_bs : list of Tensor [shape=(T_b, N_b)]
        Output log-likelihoods per chain state.
    log_loop, log_enter : ndarray
        Transition parameters (:meth:`sps.align.graph.Graph.log_transitions`).

    Returns
    -------
    dict with ``log_b, trans, skip, num_frames, num_states, earliest, rest``.
    """
    return dict(
        log_b=_pad_2d(log_bs),
        trans=_pad([g.log_transitions(log_loop, log_enter) for g in graphs], NEG_INF, torch.float64),
        skip=_pad([g.skip for g in graphs], -1, torch.long),
        num_frames=torch.tensor([lb.shape[0] for lb in log_bs]),
        num_states=torch.tensor([len(g) for g in graphs]),
        earliest=_pad([g.earliest for g in graphs], 0, torch.long),
        rest=_pad([g.rest for g in graphs], 0, torch.long),
    )


def _pad_2d(arrays) -> torch.Tensor:
    if len(arrays) == 1:                 # nothing to pad: no copy
        return arrays[0].double().unsqueeze(0)
    T = max(a.shape[0] for a in arrays)
    N = max(a.shape[1] for a in arrays)
    out = torch.zeros((len(arrays), T, N), dtype=torch.float64)
    for i, a in enumerate(arrays):
        out[i, :a.shape[0], :a.shape[1]] = a
    return out
