"""The sampler and the CUDA-graph runner every autoregressive vocoder shares.

Sampling is inverse-CDF with uniform numbers drawn up front (on the CPU, from a
``torch.Generator``), so every backend of every vocoder sees the same draws and the
C kernels (``sps_sample`` of ``sps/native/common.h``) pick the same classes as the
PyTorch references, except within rounding of a CDF boundary.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


def sample_cdf(logits: Tensor, u: Tensor, temperature: float = 1.0, argmax: bool = False) -> Tensor:
    """Inverse-CDF draw from ``softmax(logits / temperature)``.

    Parameters
    ----------
    logits : Tensor [shape=(S, A)]
    u : Tensor [shape=(S,)]
        Uniform numbers in [0, 1).
    temperature : float
        Softmax temperature (> 0).
    argmax : bool
        Take the most likely class instead of sampling.

    Returns
    -------
    Tensor [shape=(S,)], int64
        The first class whose cumulative (unnormalised) probability exceeds
        ``u * total``.
    """
    if argmax:
        return logits.argmax(-1)
    z = logits * (1.0 / temperature)   # as the C sampler: one multiply per logit
    cs = torch.exp(z - z.max(-1, keepdim=True).values).cumsum(-1)
    target = u * cs[:, -1]
    return (cs <= target[:, None]).sum(-1).clamp_max(logits.shape[-1] - 1)


def capture_cuda_graph(step: Callable[[], None], state: Sequence[Tensor]) -> "torch.cuda.CUDAGraph":
    """Capture ``step`` (which advances the static ``state`` tensors in place) in a CUDA graph.

    ``step`` runs once on a side stream first (capture needs the allocator and cuBLAS
    handles warmed up), then once under capture; ``state`` is restored afterwards, so
    the first replay starts where the caller left it.
    """
    saved = [t.clone() for t in state]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for t, s in zip(state, saved):
        t.copy_(s)
    return graph
