"""The native-kernel layer: C sources, one loader, one thread policy.

Hot loops that cannot be vectorised in PyTorch (recursions over time, sample-by-sample
generation) are plain C files beside this module (``banded.c``, ``lfilter.c``,
``wavenet.c``, ``wavernn.c``; shared helpers in ``common.h`` and ``gemv.h``). They are
compiled once with the system C compiler into a per-user cache and called through
:mod:`ctypes` on tensor/array memory; no torch headers are involved, so a build takes
about a second.

* **Cache key.** The build is keyed by the sources (every file of this directory), the
  flags, the compiler's identity and the CPU (model and feature flags): a library built
  with ``-march=native`` on one CPU is never loaded on another.
* **Signatures.** :data:`KERNELS` declares every exported function once. Every function
  returns a status code (``SPS_OK`` ...) that :func:`check` maps to an exception.
* **Threads.** :func:`threads` picks the OpenMP thread count per call from the work
  size and the idle cores (a cached run-queue reading); threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` for this library's OpenMP
  runtime, unless the user set a policy), so a busy machine costs a descheduled
  thread's share, not spinning rivals.
* **Fallback.** :func:`library` returns None when ``SPS_NO_NATIVE=1``, when no compiler
  is found or when a build fails (logged once); every caller then uses its PyTorch path.

``python -m sps.native --werror`` compiles every kernel with ``-Wall -Wextra -Werror``.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).resolve().parent
CFLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-fopenmp", "-std=c99")
if platform.machine().lower() in ("x86_64", "amd64"):
    # GCC vectorises loops with 256-bit registers even on AVX-512 CPUs unless told otherwise
    CFLAGS += ("-mprefer-vector-width=512",)
WARNINGS = ("-Wall", "-Wextra", "-Werror")

_P, _I64, _I, _F, _LL = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float, ctypes.c_longlong
_ptr = ctypes.POINTER

from sps.native.structs import (GruSeq, WavenetChunk, WavenetLPC, WavenetWeights, WavernnCall, WavernnLPCChunk,  # noqa: E402
                                WavernnLPCWeights, WavernnWeights, ptr)  # noqa: F401

#: status codes of common.h
OK, ENOMEM, EINVAL, ENOTPD, EDOMAIN = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Kernel:
    """One C file and the signatures of the functions it exports (``name: argtypes``;
    every function returns an ``int`` status unless listed in ``plain``)."""
    source: str
    functions: dict = field(default_factory=dict)
    plain: dict = field(default_factory=dict)  # name -> (restype, argtypes)


def _both(functions: dict) -> dict:
    """float32 and float64 instantiations (``_f32``/``_f64`` suffixes) of each function."""
    return {f"{name}_{sfx}": args for name, args in functions.items() for sfx in ("f32", "f64")}


KERNELS: dict[str, Kernel] = {
    "banded": Kernel("banded.c", _both({
        "ldl_solve": [_P] * 8 + [_I64] * 5 + [_I, _P, _I],
        "mlpg_fwd": [_P] * 7 + [_I, _P] + [_I64] * 6 + [_P, _I64, _P, _P, _P, _P, _I64, _P, _P, _P,
                                                        _I64, _I64, _P, _I],
        "mlpg_bwd": [_P] * 12 + [_I64] * 6 + [_P, _I64, _P, _P, _P, _I],
    })),
    "lfilter": Kernel("lfilter.c", _both({
        "lfilter_fwd": [_P, _P, _P, _P, _I64, _I64, _I, _P, _P, _I64, _I64, _I, _P, _I, _P, _I64,
                        _I64, _I],
        "lfilter_bwd": [_P, _P, _P, _P, _P, _P, _I64, _I64, _I, _P, _P, _I64, _I64, _I, _I,
                        _P, _P, _P, _P, _P, _I64, _I64, _I],
    })),
    "align": Kernel("align.c", {
        "align_forward_backward": [_P] * 7 + [_I64] * 3 + [ctypes.c_double] + [_P] * 3 + [_I],
        "align_viterbi": [_P] * 7 + [_I64] * 3 + [ctypes.c_double] + [_P] * 2 + [_I],
    }),
    "wavenet": Kernel("wavenet.c", {
        "wavenet_run": [_ptr(WavenetWeights), _ptr(WavenetChunk)],
        "wavenet_lpc_run": [_ptr(WavenetWeights), _ptr(WavenetChunk), _ptr(WavenetLPC)],
    }),
    "wavernn": Kernel("wavernn.c", {
        "wavernn_run": [_ptr(WavernnWeights), _ptr(WavernnCall)],
        "gru_forward": [_ptr(GruSeq)],
        "gru_backward": [_ptr(GruSeq)],
        "wavernn_lpc_run": [_ptr(WavernnLPCWeights), _ptr(WavernnLPCChunk)],
    }, plain={"wavernn_vector_length": (_I, [])}),
}

_cache: dict[str, ctypes.CDLL | None] = {}
_lock = threading.Lock()


class NativeError(RuntimeError):
    """A kernel reported a failure it cannot describe more precisely."""


def check(status: int, what: str) -> None:
    """Raise the exception of a kernel status code (``what`` names the call)."""
    if status == OK:
        return
    if status == ENOMEM:
        raise MemoryError(f"{what}: out of memory for scratch buffers")
    if status == EINVAL:
        raise ValueError(f"{what}: inconsistent sizes or arguments")
    if status == ENOTPD:
        raise ValueError(f"{what}: matrix is not positive definite")
    if status == EDOMAIN:
        raise ValueError(f"{what}: an input value is outside its domain (NaN, inf or a non-positive variance)")
    raise NativeError(f"{what}: kernel failed with status {status}")


def cache_dir() -> Path:
    """Directory of compiled kernels (``$SPS_CACHE`` or ``~/.cache/sps``)."""
    root = os.environ.get("SPS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "sps")
    return Path(root) / "native"


def compiler() -> str | None:
    """The C compiler to use (``$CC``, else ``cc``/``gcc``), or None."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    return None


@lru_cache(maxsize=4)
def _compiler_id(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out.splitlines()[0] if out else cc


@lru_cache(maxsize=1)
def cpu_fingerprint() -> str:
    """The machine's CPU identity: architecture, model and feature flags (Linux), so that
    ``-march=native`` code built on one CPU is never run on another."""
    parts = [platform.machine(), platform.processor()]
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip()
            if key in ("model name", "flags", "Features", "CPU part", "CPU implementer"):
                parts.append(line)
                if key in ("flags", "Features"):
                    break
    except OSError:
        pass
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]


@lru_cache(maxsize=1)
def _sources_digest() -> str:
    h = hashlib.sha1()
    for path in sorted(SOURCE_DIR.glob("*.[ch]")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def build_key(name: str, cc: str) -> str:
    text = "\n".join([name, _sources_digest(), " ".join(CFLAGS), _compiler_id(cc), cpu_fingerprint(),
                      sys.platform])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def compile_kernel(name: str, out: Path, cc: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Compile kernel ``name`` to the shared library ``out``."""
    src = SOURCE_DIR / KERNELS[name].source
    return subprocess.run([cc, *CFLAGS, *extra, f"-I{SOURCE_DIR}", str(src), "-o", str(out), "-lm"],
                          capture_output=True, text=True)


def library(name: str) -> ctypes.CDLL | None:
    """The compiled kernel ``name`` of :data:`KERNELS` with its signatures declared, or None
    when native code is disabled (``SPS_NO_NATIVE=1``), no compiler exists or the build
    failed (the failure is logged once; callers use their PyTorch path)."""
    if os.environ.get("SPS_NO_NATIVE") == "1":
        return None
    with _lock:
        if name not in _cache:
            _cache[name] = _load(name)
        return _cache[name]


def _load(name: str) -> ctypes.CDLL | None:
    cc = compiler()
    if cc is None:
        logger.warning("no C compiler found: %s uses the PyTorch fallback", name)
        return None
    out = cache_dir() / f"{name}-{build_key(name, cc)}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            so = Path(tmp) / f"{name}.so"
            proc = compile_kernel(name, so, cc)
            if proc.returncode != 0:
                logger.warning("building native kernel %s failed, using the PyTorch fallback:\n%s",
                               name, proc.stderr[-2000:])
                return None
            os.replace(so, out)  # atomic: concurrent builders race harmlessly
    try:
        lib = _dlopen(out)
    except OSError as err:  # pragma: no cover - corrupt cache
        logger.warning("loading native kernel %s failed (%s), using the PyTorch fallback", name, err)
        return None
    kernel = KERNELS[name]
    for fn, args in kernel.functions.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = ctypes.c_int, args
    for fn, (restype, args) in kernel.plain.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = restype, args
    return lib


def _dlopen(path: Path) -> ctypes.CDLL:
    """Load a kernel; its OpenMP runtime (initialised at first load) waits passively
    unless the user chose a policy."""
    key = "OMP_WAIT_POLICY"
    if key in os.environ:
        return ctypes.CDLL(str(path))
    os.environ[key] = "PASSIVE"
    try:
        return ctypes.CDLL(str(path))
    finally:
        del os.environ[key]


#: floating-point operations below which one more thread costs more than it saves
WORK_PER_THREAD = 1 << 18


#: Linux's run-queue counts (4th field: runnable / total scheduling entities)
LOADAVG = "/proc/loadavg"


def runnable_others(samples: int = 3, interval: float = 0.002) -> float | None:
    """Threads of other work runnable right now: the run-queue count of :data:`LOADAVG`
    less the caller, the smallest of ``samples`` readings ``interval`` s apart (a thread
    that only briefly wakes is not a busy core; a CPU-bound job is runnable in every
    reading). None where the file is missing or unreadable."""
    import time
    counts = []
    try:
        for i in range(samples):
            if i:
                time.sleep(interval)
            with open(LOADAVG) as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
    except (OSError, ValueError, IndexError):
        return None
    return float(max(0, min(counts)))


#: seconds an idle-core reading is reused (a reading costs ~4 ms: two 2 ms pauses)
IDLE_CACHE_S = 0.5
_idle_cache: list = [float("-inf"), 0.0]      # [monotonic time of the reading, idle cores]


def idle_cores(max_age: float | None = None) -> float:
    """Cores the other processes leave free now: the core count minus the other
    runnable threads (:func:`runnable_others`, Linux), else minus the 1-minute load
    average (macOS and others; it lags a change of load by about a minute); all cores
    where neither is known. A reading younger than ``max_age`` seconds is reused, so a
    training loop calling a kernel every few milliseconds pays for one reading every
    half second, not one per call (``max_age`` defaults to :data:`IDLE_CACHE_S`)."""
    import time
    now = time.monotonic()
    if now - _idle_cache[0] < (IDLE_CACHE_S if max_age is None else max_age):
        return _idle_cache[1]
    cores = os.cpu_count() or 1
    busy = runnable_others()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            busy = 0.0
    _idle_cache[:] = [now, max(0.0, cores - busy)]
    return _idle_cache[1]


def threads(parallel: int, work: float) -> int:
    """OpenMP threads for one kernel call.

    ``$SPS_THREADS`` is taken as given. Otherwise torch's intra-op thread count, capped by

    * the number of independent pieces of work (``parallel``);
    * ``work / WORK_PER_THREAD`` (a small call runs on one thread, with no fork/join cost);
    * the idle cores (:func:`idle_cores`, rounded, at least one). A kernel's threads meet
      at a barrier (the end of a parallel loop, or every generated sample for the
      lockstep generators): a thread that shares its core with another job is
      descheduled and every barrier waits for it, so on a saturated machine two threads
      were 1.8x slower than one (MLPG fwd+bwd, B=32, T=500; ``benchmarks/threads.py``).
    """
    import torch
    env = os.environ.get("SPS_THREADS")
    n = int(env or torch.get_num_threads())
    n = max(1, min(n, int(parallel), int(work // WORK_PER_THREAD) or 1))
    if n > 1 and not env:
        n = min(n, max(1, int(idle_cores() + 0.5)))
    return n
