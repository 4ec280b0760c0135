"""The native-kernel loader: cache keys, status codes, thread policy, fallback."""
from __future__ import annotations

import ctypes
import subprocess

import pytest
import torch

from sps import native

needs_cc = pytest.mark.skipif(native.compiler() is None or native.library("lfilter") is None,
                              reason="no C compiler (or SPS_NO_NATIVE=1)")


def test_status_codes_map_to_exceptions():
    native.check(native.OK, "x")
    with pytest.raises(MemoryError, match="kern: out of memory"):
        native.check(native.ENOMEM, "kern")
    with pytest.raises(ValueError, match="kern: inconsistent"):
        native.check(native.EINVAL, "kern")
    with pytest.raises(ValueError, match="not positive definite"):
        native.check(native.ENOTPD, "kern")
    with pytest.raises(native.NativeError, match="status 42"):
        native.check(42, "kern")


def test_disabled_gives_none(monkeypatch):
    monkeypatch.setenv("SPS_NO_NATIVE", "1")
    assert all(native.library(name) is None for name in native.KERNELS)


@needs_cc
def test_cache_key_follows_sources_compiler_and_cpu(monkeypatch, tmp_path):
    cc = native.compiler()
    key = native.build_key("lfilter", cc)
    assert key == native.build_key("lfilter", cc) and key != native.build_key("wavenet", cc)
    # a library built on another CPU is never picked up: the key (and file name) differ
    monkeypatch.setattr(native, "cpu_fingerprint", lambda: "another-cpu")
    assert native.build_key("lfilter", cc) != key
    monkeypatch.setattr(native, "_compiler_id", lambda cc: "another compiler 1.0")
    assert native.build_key("lfilter", cc) != key


@needs_cc
def test_fresh_build_into_a_new_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SPS_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_cache", {})
    lib = native.library("banded")
    assert lib is not None
    built = list((tmp_path / "native").glob("banded-*.so"))
    assert len(built) == 1 and native.build_key("banded", native.compiler()) in built[0].name
    assert lib.ldl_solve_f32.restype is ctypes.c_int and len(lib.ldl_solve_f32.argtypes) == 16


def test_broken_build_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("SPS_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_cache", {})
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setattr(native, "compiler", lambda: "false")   # a "compiler" that always fails
    assert native.library("lfilter") is None


def test_thread_policy(monkeypatch):
    monkeypatch.delenv("SPS_THREADS", raising=False)
    monkeypatch.setattr(native, "idle_cores", lambda: 1e9)          # a quiet machine
    n = torch.get_num_threads()
    assert native.threads(parallel=1, work=1e12) == 1              # one independent piece
    assert native.threads(parallel=64, work=10.0) == 1             # too little work to share
    assert native.threads(parallel=64, work=1e12) == n
    monkeypatch.setenv("SPS_THREADS", "3")
    assert native.threads(parallel=64, work=1e12) == 3


def test_threads_follow_the_idle_cores(monkeypatch):
    # every multi-threaded call is capped by the idle cores: a thread sharing its core
    # with another job stalls every barrier of the call
    monkeypatch.delenv("SPS_THREADS", raising=False)
    monkeypatch.setattr(native.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(native, "LOADAVG", "/nonexistent/loadavg")   # the load-average fallback
    monkeypatch.setattr(native, "IDLE_CACHE_S", 0.0)                  # a fresh reading per call
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(8)
    try:
        for load, expected in [(0.2, 8), (5.4, 3), (7.6, 1), (12.0, 1)]:   # 7.8, 2.6, 0.4, 0 cores free
            monkeypatch.setattr(native.os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
            assert native.threads(64, 1e12) == expected, load
        monkeypatch.setattr(native.os, "getloadavg", lambda: (5.4, 0.0, 0.0))
        assert native.threads(2, 1e12) == 2                   # fewer pieces than free cores
        monkeypatch.setenv("SPS_THREADS", "4")                # the user's choice stands
        assert native.threads(64, 1e12) == 4
    finally:
        torch.set_num_threads(torch_threads)


def test_idle_core_readings_are_cached(monkeypatch):
    calls = []
    monkeypatch.setattr(native, "runnable_others", lambda: calls.append(1) or 6.0)
    monkeypatch.setattr(native.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(native, "_idle_cache", [float("-inf"), 0.0])
    assert native.idle_cores(0.0) == 2.0 and native.idle_cores() == 2.0
    assert len(calls) == 1                                   # the second call reused the reading
    assert native.idle_cores(max_age=0.0) == 2.0 and len(calls) == 2


def test_one_thread_calls_take_no_reading_and_old_readings_are_renewed(monkeypatch):
    # a reading sleeps 4 ms: a call that gets one thread anyway takes none; a reading
    # older than IDLE_CACHE_S is taken again, so a load that starts is seen
    import time
    monkeypatch.delenv("SPS_THREADS", raising=False)
    monkeypatch.setattr(native.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(native, "_idle_cache", [float("-inf"), 0.0])
    clock, busy, calls = [100.0], [0.0], []
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(native, "runnable_others", lambda: calls.append(1) or busy[0])
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert native.threads(64, 10.0) == 1 and native.threads(1, 1e12) == 1 and not calls
        assert native.threads(64, 1e12) == 2 and len(calls) == 1
        busy[0] = 2.0                                             # both cores taken now
        clock[0] += native.IDLE_CACHE_S / 2
        assert native.threads(64, 1e12) == 2 and len(calls) == 1  # the cached reading
        clock[0] += native.IDLE_CACHE_S
        assert native.threads(64, 1e12) == 1 and len(calls) == 2  # a fresh one sees the load
    finally:
        torch.set_num_threads(torch_threads)


def test_idle_cores_count_the_run_queue_now(tmp_path, monkeypatch):
    monkeypatch.setattr(native, "IDLE_CACHE_S", 0.0)
    # /proc/loadavg: the run queue counts the caller; the 1-minute average (9.0, lagging
    # a job that just ended) is ignored where the run queue is known
    f = tmp_path / "loadavg"
    monkeypatch.setattr(native, "LOADAVG", str(f))
    monkeypatch.setattr(native.os, "cpu_count", lambda: 8)
    f.write_text("9.00 4.00 2.00 3/412 12345\n")
    assert native.runnable_others() == 2.0
    assert native.idle_cores(0.0) == 6.0
    f.write_text("0.10 0.00 0.00 1/412 12345\n")           # only the caller
    assert native.idle_cores(0.0) == 8.0
    f.write_text("0.10 0.00 0.00 12/412 12345\n")          # more runnable than cores
    assert native.idle_cores(0.0) == 0.0
    f.write_text("garbage\n")
    assert native.runnable_others() is None


def test_struct_layouts_match_the_c_headers(tmp_path):
    """Every ctypes structure of the kernels' boundary has the size and field offsets of
    its C twin, as a compiled offsetof probe reports them."""
    from sps.native.structs import STRUCTS
    cc = native.compiler()
    if cc is None:
        pytest.skip("no C compiler: the layout probe cannot be built")
    headers = sorted({s.HEADER for s in STRUCTS})
    lines = ["#include <stddef.h>", "#include <stdio.h>", *(f'#include "{h}"' for h in headers),
             "int main(void) {"]
    for s in STRUCTS:
        lines.append(f'    printf("{s.__name__} size %zu\\n", sizeof({s.C_NAME}));')
        for name, _ in s._fields_:
            lines.append(f'    printf("{s.__name__} {name} %zu\\n", offsetof({s.C_NAME}, {name}));')
    lines += ["    return 0;", "}"]
    (tmp_path / "probe.c").write_text("\n".join(lines) + "\n")
    subprocess.run([cc, "-std=c99", f"-I{native.SOURCE_DIR}", str(tmp_path / "probe.c"), "-o",
                    str(tmp_path / "probe")], check=True, capture_output=True)
    c_side = subprocess.run([str(tmp_path / "probe")], check=True, capture_output=True, text=True).stdout
    py_side = []
    for s in STRUCTS:
        py_side.append(f"{s.__name__} size {ctypes.sizeof(s)}")
        py_side += [f"{s.__name__} {name} {getattr(s, name).offset}" for name, _ in s._fields_]
    assert c_side.split("\n")[:-1] == py_side


@needs_cc
def test_wavernn_kernels_reject_missing_or_inconsistent_arguments():
    """NULL weights or state, a chunk past the end, or pitch-phase weights without inputs:
    SPS_EINVAL before anything is allocated or drawn."""
    import torch
    from sps.native.structs import WavernnCall, WavernnLPCChunk, WavernnLPCWeights, WavernnWeights
    lib = native.library("wavernn")
    assert lib.wavernn_run(WavernnWeights(H=4), WavernnCall(S=1, hop=1, T2=3, N=1)) == 2
    z = torch.zeros(64)
    mats = (native.structs.SpsMat * 3)()
    w = WavernnLPCWeights(H=2, mats=mats, E=z, b1=z, b2=z)
    ok = dict(S=1, T=2, hop=2, p=1, HL=8, nthreads=1, n0=0, n=4, P=z, a=z, lag=z, itemp=z, u=z, h=z,
              ring_s=z, ring_e=z, out_s=z, out_q=torch.zeros(4, dtype=torch.int64))
    for bad in ({"h": None}, {"n0": 1}, {"HL": 6}, {"ph": z}, {"u": None}):
        assert lib.wavernn_lpc_run(w, WavernnLPCChunk(**{**ok, **bad})) == 2, bad
    assert torch.all(z == 0)
    from sps.native.structs import GruSeq
    assert lib.gru_forward(GruSeq(B=1, N=1, H=2, xi=z, RT=z, hs=z, gates=z)) == 2       # no ghe
    assert lib.gru_backward(GruSeq(B=1, N=1, H=2, dout=z, R=z, hs=z, gates=z, ghe=z, dxi=z, dgh=z)) == 2   # no dh0


@needs_cc
def test_wavenet_kernels_reject_missing_arguments():
    """A NULL weight or state pointer is refused (SPS_EINVAL) before anything is allocated."""
    from sps.native.structs import WavenetChunk, WavenetLPC, WavenetWeights
    lib = native.library("wavenet")
    w, c = WavenetWeights(A=4, R=4, S=4, L=1, D1=2), WavenetChunk(B=1, n=1)
    assert lib.wavenet_run(w, c) == 2
    assert lib.wavenet_lpc_run(w, c, WavenetLPC(T=1, hop=1, p=1, HL=8)) == 2


def test_a_structure_keeps_what_it_points_into_alive():
    """A tensor given only to a structure (e.g. a temporary slice) lives as long as the
    structure: its pointer never dangles into freed memory."""
    import gc
    import weakref
    from sps.native.structs import WavenetChunk
    t = torch.arange(6, dtype=torch.float32) * 2
    ref = weakref.ref(t)
    st = WavenetChunk(B=1, n=6, cond=t)
    del t
    gc.collect()
    assert ref() is not None
    assert list((ctypes.c_float * 6).from_address(st.cond)) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    del st
    gc.collect()
    assert ref() is None
