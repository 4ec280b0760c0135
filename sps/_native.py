"""Build and load small C kernels at first use.

Hot loops that cannot be vectorised (recursions over time, sample-by-sample
generation) are written in plain C, compiled once with the system C compiler
into a per-user cache and called through :mod:`ctypes` on tensor/array memory.
No torch headers are involved, so a build takes well under a second.

Every caller keeps a pure-torch/NumPy path: :func:`load` returns ``None`` when no
compiler is available (or ``SPS_NO_NATIVE=1``), and the caller falls back.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

CFLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fopenmp", "-std=c99"]
_cache: dict[str, ctypes.CDLL | None] = {}
_lock = threading.Lock()


def cache_dir() -> Path:
    """Directory holding compiled kernels (``$SPS_CACHE`` or ``~/.cache/sps``)."""
    root = os.environ.get("SPS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "sps")
    return Path(root) / "native"


def compiler() -> str | None:
    """The C compiler to use (``$CC``, else ``cc``/``gcc``), or None."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    return None


def load(name: str, source: str) -> ctypes.CDLL | None:
    """Compile ``source`` (C99, may use OpenMP) once and return the loaded library.

    Parameters
    ----------
    name : str
        Short name used in the cached file name and in log messages.
    source : str
        C source text. Functions should take plain pointers and integers.

    Returns
    -------
    ctypes.CDLL or None
        None when native kernels are disabled (``SPS_NO_NATIVE=1``) or the build
        fails; the failure is logged once and callers use their fallback.
    """
    if os.environ.get("SPS_NO_NATIVE") == "1":
        return None
    cc = compiler()
    key = hashlib.sha1((source + " ".join(CFLAGS) + str(cc) + sys.platform).encode()).hexdigest()[:16]
    with _lock:
        if key in _cache:
            return _cache[key]
        lib = None
        if cc is None:
            logger.warning("no C compiler found: %s uses the pure-PyTorch fallback", name)
        else:
            lib = _build(name, source, key, cc)
        _cache[key] = lib
        return lib


def _build(name: str, source: str, key: str, cc: str) -> ctypes.CDLL | None:
    out = cache_dir() / f"{name}-{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            src = Path(tmp) / f"{name}.c"
            src.write_text(source)
            so = Path(tmp) / f"{name}.so"
            proc = subprocess.run([cc, *CFLAGS, str(src), "-o", str(so), "-lm"],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                logger.warning("building native kernel %s failed, using the fallback:\n%s",
                               name, proc.stderr[-2000:])
                return None
            os.replace(so, out)  # atomic: concurrent builders race harmlessly
    try:
        return ctypes.CDLL(str(out))
    except OSError as err:  # pragma: no cover - corrupt cache
        logger.warning("loading native kernel %s failed (%s), using the fallback", name, err)
        return None


def ptr(t) -> ctypes.c_void_p:
    """Raw data pointer of a contiguous torch tensor or NumPy array."""
    if hasattr(t, "data_ptr"):
        return ctypes.c_void_p(t.data_ptr())
    return ctypes.c_void_p(t.ctypes.data)
