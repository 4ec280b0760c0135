"""ctypes mirrors of the C structures of the kernels' typed boundary.

Each class lists the fields of the C ``typedef struct`` of the same (snake_case) name in
the header :attr:`HEADER` in the same order and with the same types;
``tests/test_native.py`` compiles an ``offsetof`` probe and compares every size and
offset, so a drift fails the tests. Build one with keyword arguments: tensors become
their data pointers (None stays NULL), and the structure holds a reference to each, so
nothing it points into is freed while it lives.
"""
from __future__ import annotations

import ctypes

_I, _F, _LL, _P = ctypes.c_int, ctypes.c_float, ctypes.c_longlong, ctypes.c_void_p


def ptr(t) -> ctypes.c_void_p | None:
    """Raw data pointer of a contiguous torch tensor, NumPy array or ctypes object (None passes through)."""
    if t is None or isinstance(t, ctypes.c_void_p):
        return t
    if isinstance(t, (ctypes.Array, ctypes.Structure)):      # e.g. an array of SpsMat
        return ctypes.c_void_p(ctypes.addressof(t))
    if hasattr(t, "data_ptr"):
        return ctypes.c_void_p(t.data_ptr())
    return ctypes.c_void_p(t.ctypes.data)


class Struct(ctypes.Structure):
    """A kernel structure; keyword arguments may be tensors (their data pointer) or None."""

    C_NAME: str = ""
    HEADER: str = ""

    def __init__(self, **fields):
        pointers = self._pointers()
        super().__init__(**{k: (ptr(v) if k in pointers else v) for k, v in fields.items()})
        self._targets = [v for k, v in fields.items() if k in pointers]   # kept alive with the structure

    @classmethod
    def _pointers(cls) -> set:
        return {name for name, t in cls._fields_ if t is ctypes.c_void_p}


class WavenetWeights(Struct):
    C_NAME, HEADER = "wavenet_weights", "wavenet.h"
    _fields_ = [(n, _I) for n in ("A", "R", "S", "L", "D1", "embed_tanh", "bf16")] + [
        (n, _P) for n in ("dil", "Ep", "Ec", "E", "wph", "WprevT", "WcurT", "WresT", "bres",
                           "WskipT", "bskip", "WoutT", "WendT")]


class WavenetChunk(Struct):
    C_NAME, HEADER = "wavenet_chunk", "wavenet.h"
    _fields_ = [(n, _I) for n in ("B", "n", "nthreads", "argmax")] + [("inv_temp", _F), ("t0", _LL)] + [
        (n, _P) for n in ("cond", "u", "buf", "yprev", "ycurr", "out")]


class WavenetLPC(Struct):
    C_NAME, HEADER = "wavenet_lpc", "wavenet.h"
    _fields_ = [(n, _I) for n in ("T", "hop", "p", "HL")] + [
        (n, _P) for n in ("a", "lag", "itemp", "ring_s", "ring_e", "out_s", "ph", "pd")]


class SpsMat(Struct):
    """A dense (packed) or block-sparse weight matrix of the WaveRNN kernels."""
    C_NAME, HEADER = "sps_mat", "mat.h"
    _fields_ = [("sparse", _I), ("bf16", _I), ("w", _P), ("ptr", _P), ("idx", _P)]


class WavernnWeights(Struct):
    C_NAME, HEADER = "wavernn_weights", "wavernn.h"
    _fields_ = [("H", _I)] + [(n, _P) for n in ("mats", "Ix", "bias", "b1", "b2", "b3", "b4")]


class WavernnCall(Struct):
    C_NAME, HEADER = "wavernn_call", "wavernn.h"
    _fields_ = [(n, _I) for n in ("S", "hop", "T2", "nthreads")] + [("N", _LL), ("inv_temp", _F)] + [
        (n, _P) for n in ("P", "u", "out")]


class WavernnLPCWeights(Struct):
    C_NAME, HEADER = "wavernn_lpc_weights", "wavernn.h"
    _fields_ = [("H", _I)] + [(n, _P) for n in ("mats", "E", "b1", "b2", "wph")]


class WavernnLPCChunk(Struct):
    C_NAME, HEADER = "wavernn_lpc_chunk", "wavernn.h"
    _fields_ = [(n, _I) for n in ("S", "T", "hop", "p", "HL", "nthreads")] + [("n0", _LL), ("n", _LL)] + [
        (n, _P) for n in ("P", "a", "lag", "itemp", "u", "ph", "pd", "h", "ring_s", "ring_e", "out_s", "out_q")]


class GruSeq(Struct):
    C_NAME, HEADER = "gru_seq", "wavernn.h"
    _fields_ = [(n, _I) for n in ("B", "N", "H", "nthreads")] + [
        (n, _P) for n in ("xi", "RT", "R", "hs", "gates", "ghe", "dout", "dxi", "dgh", "dh0")]


STRUCTS = (WavenetWeights, WavenetChunk, WavenetLPC, SpsMat, WavernnWeights, WavernnCall, WavernnLPCWeights,
           WavernnLPCChunk, GruSeq)
