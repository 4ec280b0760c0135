"""One backend vocabulary for every compiled or accelerated path.

Every function with more than one implementation takes ``backend=`` with a value from
:data:`BACKENDS` and resolves it here, so the names, the automatic choice and the
errors are the same everywhere:

==============  ====================================================================
``auto``        the fastest implementation available for the tensors' device (the
                caller lists its implementations fastest first)
``torch``       the pure-PyTorch reference: any device, the test oracle and fallback
``native``      the C kernels of :mod:`sps.native` (CPU; needs a C compiler)
``triton``      Triton kernels (CUDA, or any device under ``TRITON_INTERPRET=1``; needs
                the ``triton`` package)
``cuda_graph``  the PyTorch step captured once in CUDA graphs and replayed (CUDA)
==============  ====================================================================
"""
from __future__ import annotations

import importlib.util
import os
from typing import Callable, Sequence

BACKENDS = ("auto", "torch", "native", "triton", "cuda_graph")


def triton_available() -> bool:
    """True when the ``triton`` package is installed."""
    return importlib.util.find_spec("triton") is not None


def _requirement(name: str, device, native: Callable[[], object] | None, auto: bool = False) -> str | None:
    """Why ``name`` cannot run on ``device`` (None when it can). The Triton interpreter
    runs Triton kernels on the CPU when asked for by name, never by ``auto``."""
    kind = getattr(device, "type", str(device))
    if name == "native":
        if kind != "cpu":
            return f"CPU tensors (got {kind})"
        if native is None or native() is None:
            return "a C compiler (and SPS_NO_NATIVE unset)"
    elif name == "triton":
        if kind != "cuda" and (auto or os.environ.get("TRITON_INTERPRET") != "1"):
            return f"CUDA tensors, or TRITON_INTERPRET=1 (got {kind})"
        if not triton_available():
            return "the triton package"
    elif name == "cuda_graph" and kind != "cuda":
        return f"CUDA tensors (got {kind})"
    return None


def resolve_backend(backend: str | None, device, *, what: str, choices: Sequence[str],
                    native: Callable[[], object] | None = None,
                    unusable: dict[str, str] | None = None) -> str:
    """The concrete backend to run.

    Parameters
    ----------
    backend : str or None
        A name of :data:`BACKENDS`; None means ``"auto"``.
    device : torch.device
        Where the tensors live.
    what : str
        The function's name, for messages.
    choices : sequence of str
        The implementations the function has, fastest first (``auto`` takes the first
        that can run here; ``torch`` should be last).
    native : callable, optional
        Returns the native library or None (its availability).
    unusable : dict name -> reason, optional
        Implementations ruled out by the inputs (e.g. a dtype), with the reason.

    Raises
    ------
    ValueError
        An unknown name, a backend the function does not have, or one that cannot run
        on these inputs; the message says which and why.
    """
    name = "auto" if backend is None else backend
    if name not in BACKENDS:
        raise ValueError(f"{what}: unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    unusable = dict(unusable or {})
    if name == "auto":
        for cand in choices:
            if cand not in unusable and _requirement(cand, device, native, auto=True) is None:
                return cand
        raise ValueError(f"{what}: no backend can run here (tried {', '.join(choices)})")
    if name not in choices:
        raise ValueError(f"{what}: no {name!r} backend; choose from auto, {', '.join(choices)}")
    reason = unusable.get(name) or _requirement(name, device, native)
    if reason is not None:
        raise ValueError(f"{what}: backend {name!r} needs {reason}")
    return name
