"""C kernels (OpenMP across systems) for the banded LDL^T solve and fused CPU MLPG.

Layouts and algorithms are those of :func:`sps.mlpg.banded.ldl_solve_torch` and of
the PyTorch path in :mod:`sps.mlpg.core`, which are the references these kernels
are tested against. Systems are processed in chunks of up to ``CH`` neighbouring
inner indices so the innermost loops run over contiguous memory and vectorise;
OpenMP spreads the chunks over threads.

* ``ldl_solve``: factorise a row-form band (or reuse a factor) and solve.
* ``mlpg_fwd``: MLPG forward for one (utterance, chunk of dimensions) at a time:
  precisions, the band of ``W^T P W`` and the right-hand side ``W^T P mu`` are
  formed on the fly from a small ring buffer of frames, so means and variances are
  read once and only the factor and the solution are written.
* ``mlpg_bwd``: the adjoint solve ``A lam = g`` with the forward factor, then the
  gradients ``P W lam`` (means) and ``-p^2 (W lam) (mu - W x)`` (variances).
The window algebra comes from the tables of :func:`sps.mlpg.windows.taps` and
:func:`sps.mlpg.windows.band_terms`, shared with the PyTorch path.
"""
from __future__ import annotations

import ctypes
from functools import lru_cache

import torch

from .. import _native
from .windows import band_terms, bandwidth, taps

_TEMPLATE = r"""
/* one factorisation step for n lanes: A[k][c] = A[t][t-k] -> factor row t
   (F0 points at t = 0 of this block; f1, f2, f3: time, k, lane strides) */
static void factor_row_SUF(REAL A[][CH], REAL u[][CH], REAL *F0, int64_t f1, int64_t f2,
                           int64_t f3, int64_t t, int64_t K, int64_t n) {
    int64_t P = K - 1, p = t < P ? t : P;
    REAL *F = F0 + t * f1, v[CH];
    for (int64_t k = p; k >= 1; k--) {
        const REAL *Fj = F0 + (t - k) * f1;
        for (int64_t c = 0; c < n; c++) v[c] = A[k][c];
        for (int64_t m = k + 1; m <= p; m++)
            for (int64_t c = 0; c < n; c++) v[c] -= u[m][c] * Fj[(m - k) * f2 + c * f3];
        for (int64_t c = 0; c < n; c++) {
            u[k][c] = v[c];
            F[k * f2 + c * f3] = v[c] * Fj[c * f3];
        }
    }
    for (int64_t k = p + 1; k < K; k++)
        for (int64_t c = 0; c < n; c++) F[k * f2 + c * f3] = 0;
    for (int64_t c = 0; c < n; c++) v[c] = A[0][c];
    for (int64_t k = 1; k <= p; k++)
        for (int64_t c = 0; c < n; c++) v[c] -= u[k][c] * F[k * f2 + c * f3];
    for (int64_t c = 0; c < n; c++) F[c * f3] = 1 / v[c];
}

/* forward substitution step: X[t] = r - sum_k L[t][t-k] X[t-k] */
static void forward_sub_SUF(const REAL *F0, int64_t f1, int64_t f2, int64_t f3, REAL *X0,
                            int64_t x1, int64_t x2, const REAL *r, int64_t t, int64_t K,
                            int64_t n) {
    const REAL *F = F0 + t * f1;
    REAL v[CH];
    for (int64_t c = 0; c < n; c++) v[c] = r[c];
    for (int64_t k = 1; k < K && k <= t; k++) {
        const REAL *Xk = X0 + (t - k) * x1;
        for (int64_t c = 0; c < n; c++) v[c] -= F[k * f2 + c * f3] * Xk[c * x2];
    }
    REAL *X = X0 + t * x1;
    for (int64_t c = 0; c < n; c++) X[c * x2] = v[c];
}

/* back substitution over the whole block: x_t = z_t / D_t - sum_k L[t+k][t] x_{t+k} */
static void back_sub_SUF(const REAL *F0, int64_t f1, int64_t f2, int64_t f3, REAL *X0,
                         int64_t x1, int64_t x2, int64_t T, int64_t K, int64_t n) {
    REAL v[CH];
    for (int64_t t = T - 1; t >= 0; t--) {
        const REAL *F = F0 + t * f1;
        REAL *X = X0 + t * x1;
        for (int64_t c = 0; c < n; c++) v[c] = X[c * x2] * F[c * f3];
        for (int64_t k = 1; k < K && t + k < T; k++) {
            const REAL *Fk = F0 + (t + k) * f1 + k * f2;
            const REAL *Xk = X0 + (t + k) * x1;
            for (int64_t c = 0; c < n; c++) v[c] -= Fk[c * f3] * Xk[c * x2];
        }
        for (int64_t c = 0; c < n; c++) X[c * x2] = v[c];
    }
}

/* band/fac: (NO, T, K, NI), strides sb/sf; rhs/x: (NO, T, NI), strides sr/sx.
   factorize: fac is computed from band, else read (strides may be 0 = broadcast). */
void ldl_solve_SUF(const REAL *band, const int64_t *sb, const REAL *rhs, const int64_t *sr,
                   REAL *fac, const int64_t *sf, REAL *x, const int64_t *sx, int64_t NO,
                   int64_t T, int64_t K, int64_t NI, int64_t ch, int factorize, int nt) {
    int64_t nch = (NI + ch - 1) / ch;
    #pragma omp parallel for schedule(dynamic) num_threads(nt) if (NO * T * NI * K > PAR_MIN)
    for (int64_t blk = 0; blk < NO * nch; blk++) {
        int64_t o = blk / nch, i0 = (blk % nch) * ch;
        int64_t n = NI - i0 < ch ? NI - i0 : ch;
        REAL A[K][CH], u[K][CH], r[CH];
        REAL *F0 = fac + o * sf[0] + i0 * sf[3];
        REAL *X0 = x + o * sx[0] + i0 * sx[2];
        for (int64_t t = 0; t < T; t++) {
            if (factorize) {
                const REAL *Bt = band + o * sb[0] + t * sb[1] + i0 * sb[3];
                for (int64_t k = 0; k < K; k++)
                    for (int64_t c = 0; c < n; c++) A[k][c] = Bt[k * sb[2] + c * sb[3]];
                factor_row_SUF(A, u, F0, sf[1], sf[2], sf[3], t, K, n);
            }
            const REAL *Rt = rhs + o * sr[0] + t * sr[1] + i0 * sr[2];
            for (int64_t c = 0; c < n; c++) r[c] = Rt[c * sr[2]];
            forward_sub_SUF(F0, sf[1], sf[2], sf[3], X0, sx[1], sx[2], r, t, K, n);
        }
        back_sub_SUF(F0, sf[1], sf[2], sf[3], X0, sx[1], sx[2], T, K, n);
    }
}

/* MLPG forward. mu: (B, T, W*D), contiguous last axis, strides sm (b, t);
   var: like mu with strides sv (b, t) (0 = broadcast) or NULL for unit variances;
   len: (B,) or NULL; fac: (B, T, K, D) written when factorize, else read with
   strides sf; x: (B, T, D) contiguous. Term tables as in sps.mlpg.windows. */
void mlpg_fwd_SUF(const REAL *mu, const int64_t *sm, const REAL *var, const int64_t *sv,
                  const int64_t *len, REAL *fac, const int64_t *sf, int factorize, REAL *x,
                  int64_t B, int64_t T, int64_t W, int64_t D, int64_t K, int64_t ch,
                  const int64_t *edge, int64_t nbt, const int64_t *bt_k, const int64_t *bt_s,
                  const int64_t *bt_w, const double *bt_r, int64_t ntap, const int64_t *tp_w,
                  const int64_t *tp_s, const double *tp_c, int64_t smin, int64_t smax,
                  int nt) {
    int64_t nch = (D + ch - 1) / ch, R = smax - smin + 1;
    #pragma omp parallel for schedule(dynamic) num_threads(nt) if (B * T * D * K > PAR_MIN)
    for (int64_t blk = 0; blk < B * nch; blk++) {
        int64_t b = blk / nch, i0 = (blk % nch) * ch;
        int64_t n = D - i0 < ch ? D - i0 : ch;
        int64_t L = len ? len[b] : T, next = 0;
        REAL A[K][CH], u[K][CH], r[CH], pr[R][W][CH], pm[R][W][CH];
        REAL *F0 = fac + b * sf[0] + i0 * sf[3];
        REAL *X0 = x + b * T * D + i0;
        for (int64_t t = 0; t < T; t++) {
            for (; next < T && next <= t - smin; next++) {  /* precisions of a new frame */
                int64_t slot = next % R;
                const REAL *m = mu + b * sm[0] + next * sm[1] + i0;
                const REAL *v = var ? var + b * sv[0] + next * sv[1] + i0 : 0;
                for (int64_t w = 0; w < W; w++) {
                    REAL *p = pr[slot][w], *q = pm[slot][w];
                    if (!used(next, w, L, edge))
                        for (int64_t c = 0; c < n; c++) p[c] = q[c] = 0;
                    else if (v)
                        for (int64_t c = 0; c < n; c++) {
                            p[c] = 1 / v[w * D + c];
                            q[c] = p[c] * m[w * D + c];
                        }
                    else
                        for (int64_t c = 0; c < n; c++) { p[c] = 1; q[c] = m[w * D + c]; }
                }
            }
            if (factorize) {
                for (int64_t k = 0; k < K; k++)
                    for (int64_t c = 0; c < n; c++) A[k][c] = 0;
                for (int64_t e = 0; e < nbt; e++) {
                    int64_t f = t - bt_s[e];
                    if (f < 0 || f >= T) continue;
                    const REAL *p = pr[f % R][bt_w[e]];
                    REAL rr = (REAL)bt_r[e], *a = A[bt_k[e]];
                    for (int64_t c = 0; c < n; c++) a[c] += rr * p[c];
                }
                if (t >= L)
                    for (int64_t c = 0; c < n; c++) A[0][c] += 1;
                factor_row_SUF(A, u, F0, sf[1], sf[2], sf[3], t, K, n);
            }
            for (int64_t c = 0; c < n; c++) r[c] = 0;
            for (int64_t e = 0; e < ntap; e++) {
                int64_t f = t - tp_s[e];
                if (f < 0 || f >= T) continue;
                const REAL *q = pm[f % R][tp_w[e]];
                REAL cc = (REAL)tp_c[e];
                for (int64_t c = 0; c < n; c++) r[c] += cc * q[c];
            }
            forward_sub_SUF(F0, sf[1], sf[2], sf[3], X0, D, 1, r, t, K, n);
        }
        back_sub_SUF(F0, sf[1], sf[2], sf[3], X0, D, 1, T, K, n);
    }
}

/* MLPG backward: solve A lam = g with the forward factor (strides sf), then
   gmu = P W lam and gvar = -p^2 (W lam) (mu - W x). g, x, lam: (B, T, D) contiguous;
   mu/var/len as in mlpg_fwd; gmu, gvar: (B, T, W*D) contiguous (gvar unused when
   var is NULL). */
void mlpg_bwd_SUF(const REAL *g, const REAL *fac, const int64_t *sf, const REAL *x,
                  const REAL *mu, const int64_t *sm, const REAL *var, const int64_t *sv,
                  const int64_t *len, REAL *lam, REAL *gmu, REAL *gvar, int64_t B, int64_t T,
                  int64_t W, int64_t D, int64_t K, int64_t ch, const int64_t *edge,
                  int64_t ntap, const int64_t *tp_w, const int64_t *tp_s, const double *tp_c,
                  int nt) {
    int64_t nch = (D + ch - 1) / ch;
    #pragma omp parallel for schedule(dynamic) num_threads(nt) if (B * T * D * W > PAR_MIN)
    for (int64_t blk = 0; blk < B * nch; blk++) {
        int64_t b = blk / nch, i0 = (blk % nch) * ch;
        int64_t n = D - i0 < ch ? D - i0 : ch;
        int64_t L = len ? len[b] : T;
        const REAL *F0 = fac + b * sf[0] + i0 * sf[3];
        REAL *l0 = lam + b * T * D + i0, wl[CH], wx[CH];
        for (int64_t t = 0; t < T; t++)
            forward_sub_SUF(F0, sf[1], sf[2], sf[3], l0, D, 1, g + (b * T + t) * D + i0, t, K, n);
        back_sub_SUF(F0, sf[1], sf[2], sf[3], l0, D, 1, T, K, n);
        for (int64_t t = 0; t < T; t++) {
            for (int64_t w = 0; w < W; w++) {
                int64_t o = ((b * T + t) * W + w) * D + i0;
                REAL *gm = gmu + o, *gv = var ? gvar + o : 0;
                if (!used(t, w, L, edge)) {
                    for (int64_t c = 0; c < n; c++) gm[c] = 0;
                    if (gv) for (int64_t c = 0; c < n; c++) gv[c] = 0;
                    continue;
                }
                for (int64_t c = 0; c < n; c++) wl[c] = wx[c] = 0;
                for (int64_t e = 0; e < ntap; e++) {
                    if (tp_w[e] != w) continue;
                    const REAL *lt = l0 + (t + tp_s[e]) * D, *xt = x + (b * T + t + tp_s[e]) * D + i0;
                    REAL cc = (REAL)tp_c[e];
                    for (int64_t c = 0; c < n; c++) { wl[c] += cc * lt[c]; wx[c] += cc * xt[c]; }
                }
                const REAL *m = mu + b * sm[0] + t * sm[1] + w * D + i0;
                if (gv) {
                    const REAL *v = var + b * sv[0] + t * sv[1] + w * D + i0;
                    for (int64_t c = 0; c < n; c++) {
                        REAL p = 1 / v[c];
                        gm[c] = p * wl[c];
                        gv[c] = -p * p * wl[c] * (m[c] - wx[c]);
                    }
                } else {
                    for (int64_t c = 0; c < n; c++) gm[c] = wl[c];
                }
            }
        }
    }
}
"""

_HEADER = r"""
#include <stdint.h>
#define CH 64
#define PAR_MIN 200000  /* below this much work a parallel region costs more than it saves */

/* does window w carry precision at frame f (edge rule, padding)? */
static int used(int64_t f, int64_t w, int64_t len, const int64_t *edge) {
    return f >= edge[w] && f < len - edge[w];
}
"""

_SOURCE = (_HEADER
           + _TEMPLATE.replace("REAL", "float").replace("SUF", "f32")
           + _TEMPLATE.replace("REAL", "double").replace("SUF", "f64"))

_lib = None
_loaded = False
_P = ctypes.c_void_p
_I = ctypes.c_int64
_ARGTYPES = {
    "ldl_solve": [_P] * 8 + [_I] * 5 + [ctypes.c_int] * 2,
    "mlpg_fwd": [_P] * 7 + [ctypes.c_int, _P] + [_I] * 6 + [_P, _I, _P, _P, _P, _P, _I, _P, _P, _P, _I, _I]
    + [ctypes.c_int],
    "mlpg_bwd": [_P] * 12 + [_I] * 6 + [_P, _I, _P, _P, _P, ctypes.c_int],
}


def library():
    """The compiled kernels, or None (no compiler / ``SPS_NO_NATIVE=1``)."""
    global _lib, _loaded
    if not _loaded:
        _lib = _native.load("mlpg_banded", _SOURCE)
        if _lib is not None:
            for name, args in _ARGTYPES.items():
                for suf in ("f32", "f64"):
                    fn = getattr(_lib, f"{name}_{suf}")
                    fn.restype, fn.argtypes = None, args
        _loaded = True
    return _lib


def _fn(name: str, dtype: torch.dtype):
    return getattr(library(), f"{name}_{'f32' if dtype == torch.float32 else 'f64'}")


def _strides(t: torch.Tensor):
    s = [st if n > 1 else 0 for st, n in zip(t.stride(), t.shape)]
    return (ctypes.c_int64 * len(s))(*s)


def _chunk(n: int) -> int:
    """Lanes per block: at most 64, balanced over the blocks a row splits into."""
    nch = max(1, -(-n // 64))
    return max(1, -(-n // nch))


def ldl_solve(band, rhs, factor):
    """See :func:`sps.mlpg.banded.ldl_solve`; CPU tensors, float32 or float64."""
    NO, T, NI = rhs.shape
    x = torch.empty(NO, T, NI, dtype=rhs.dtype)
    factorize = factor is None
    if factorize:
        factor = torch.empty(NO, T, band.shape[2], NI, dtype=rhs.dtype)
    src = band if factorize else factor  # band is not read when the factor is given
    _fn("ldl_solve", rhs.dtype)(
        _native.ptr(src), _strides(src), _native.ptr(rhs), _strides(rhs), _native.ptr(factor),
        _strides(factor), _native.ptr(x), _strides(x), NO, T, factor.shape[2], NI, _chunk(NI),
        int(factorize), torch.get_num_threads())
    return factor, x


@lru_cache(maxsize=64)
def _tables(windows):
    def arr(ctype, values):
        return (ctype * max(1, len(values)))(*values)
    bt, tp = band_terms(windows), taps(windows)
    edge = arr(_I, [max(left, right) for left, right, _ in windows])
    shifts = [s for _, s, _ in tp]
    return (edge, len(bt), arr(_I, [e[0] for e in bt]), arr(_I, [e[1] for e in bt]),
            arr(_I, [e[2] for e in bt]), arr(ctypes.c_double, [e[3] for e in bt]),
            len(tp), arr(_I, [e[0] for e in tp]), arr(_I, [e[1] for e in tp]),
            arr(ctypes.c_double, [e[2] for e in tp]), min(shifts), max(shifts))


def _bt_strides(t: torch.Tensor, B: int, T: int):
    """(b, t) strides of a (..., T, F) tensor broadcast to (B, T, F); 0 where broadcast."""
    t = t.expand(B, T, t.shape[-1])
    return (ctypes.c_int64 * 2)(*_strides(t)[:2])


def _prep(means, variances, lengths):
    B, T, F = means.shape
    var = None
    if variances is not None:
        var = variances if variances.stride(-1) == 1 else variances.contiguous()
    ln = None if lengths is None else lengths.to(torch.int64).contiguous()
    return (_native.ptr(means), _bt_strides(means, B, T),
            None if var is None else _native.ptr(var),
            None if var is None else _bt_strides(var, B, T),
            None if ln is None else _native.ptr(ln)), (var, ln)


def mlpg_forward(means, variances, windows, lengths, factor=None):
    """Fused MLPG forward on CPU.

    Parameters
    ----------
    means : Tensor [shape=(B, T, W*D)], last axis contiguous
    variances : Tensor broadcasting to ``means`` with the same last axis, or None
        (unit variances; then ``factor`` must be given).
    lengths : Tensor [shape=(B,)] or None
    factor : Tensor [shape=(B or 1, T, K, D or 1)], optional
        Reuse this factor instead of factorising.

    Returns
    -------
    factor : Tensor [shape=(B, T, K, D)] (or the given one)
    x : Tensor [shape=(B, T, D)]
    """
    B, T, F = means.shape
    W = len(windows)
    D = F // W
    K = bandwidth(windows) + 1
    if means.stride(-1) != 1:
        means = means.contiguous()
    args, keep = _prep(means, variances, lengths)  # keep: buffers behind the pointers
    factorize = factor is None
    if factorize:
        factor = torch.empty(B, T, K, D, dtype=means.dtype)
    x = torch.empty(B, T, D, dtype=means.dtype)
    _fn("mlpg_fwd", means.dtype)(*args, _native.ptr(factor), _strides(factor), int(factorize),
                                 _native.ptr(x), B, T, W, D, K, _chunk(D), *_tables(windows),
                                 torch.get_num_threads())
    return factor, x


def mlpg_backward(grad, factor, x, means, variances, windows, lengths):
    """Fused MLPG backward on CPU: the adjoint solve with ``factor`` and the gradients.

    Returns ``(grad_means, grad_var)``, both of shape (B, T, W*D); ``grad_var`` is
    None for unit variances (``variances`` None).
    """
    B, T, F = means.shape
    W = len(windows)
    D = F // W
    if means.stride(-1) != 1:
        means = means.contiguous()
    grad, x = grad.contiguous(), x.contiguous()
    args, keep = _prep(means, variances, lengths)  # keep: buffers behind the pointers
    lam = torch.empty(B, T, D, dtype=means.dtype)
    gmu = torch.empty(B, T, F, dtype=means.dtype)
    gvar = torch.empty(B, T, F, dtype=means.dtype) if variances is not None else None
    tables = _tables(windows)
    _fn("mlpg_bwd", means.dtype)(
        _native.ptr(grad), _native.ptr(factor), _strides(factor), _native.ptr(x), *args,
        _native.ptr(lam), _native.ptr(gmu), None if gvar is None else _native.ptr(gvar),
        B, T, W, D, factor.shape[2], _chunk(D), tables[0], *tables[6:10], torch.get_num_threads())
    return gmu, gvar
