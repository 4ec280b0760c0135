"""C kernel for :func:`sps.dsp.lfilter` (forward and analytic backward).

The recursion over time cannot be vectorised, so it runs in C with OpenMP over the
flattened ``batch * channel`` rows.  Time-invariant filters of order <= 4 take a
fast path in which the coefficients and the signal histories stay in registers
(the order is a compile-time constant inside each ``switch`` case); everything
else (time-varying coefficients, higher orders) takes a generic path that reads the
histories from memory.  The maths is the one of :mod:`sps.dsp.lfilter`: with
``a[0] = 1`` and coefficients ``a_k(t), b_k(t)`` taken at the output time ``t``

    y[t] = sum_k b_k(t) x[t-k] - sum_{k>=1} a_k(t) y[t-k] + zi[t]   (zi[t] = 0 for t >= K)

and, going backwards in time with the incoming gradient ``gy``,

    g[t]  = gy[t] - sum_{k>=1} a_k(t+k) g[t+k]
    dx[t] = sum_k b_k(t+k) g[t+k],   db_k(t) = g[t] x[t-k],   da_k(t) = -g[t] y[t-k],
    dzi[t] = g[t].

The C source is written once against ``REAL`` (a macro) and ``SFX`` (a name
suffix) and instantiated for float and double.
"""
from __future__ import annotations

import ctypes

import torch

from sps import _native

KMAX = 4  # largest order with a register-resident fast path
LANES = 4  # rows filtered together (interleaved) on the fast path

_MACROS = r"""
/* One time step of the fast paths for L interleaved rows (independent recursions, so the
   CPU overlaps their dependency chains).  Type-neutral; shared by both instantiations. */
#define FWD_STEP(ZI)                                                           \
    for (int l = 0; l < L; l++) {                                              \
        for (int k = K; k > 0; k--) xh[l][k] = xh[l][k - 1];                   \
        xh[l][0] = x[l][t];                                                    \
        REAL acc = (ZI);                                                       \
        for (int k = 0; k <= K; k++) acc += bp[l][k] * xh[l][k];               \
        for (int k = K; k > 1; k--) acc -= ap[l][k] * yh[l][k];                \
        acc -= ap[l][1] * yh[l][1];                                            \
        for (int k = K; k > 1; k--) yh[l][k] = yh[l][k - 1];                   \
        yh[l][1] = acc;                                                        \
        y[l][t] = acc;                                                         \
    }

#define BWD_STEP(CHECKED)                                                      \
    for (int l = 0; l < L; l++) {                                              \
        REAL s = gy[l][t];                                                     \
        for (int k = K; k > 1; k--) s -= ap[l][k] * gh[l][k];                  \
        s -= ap[l][1] * gh[l][1];                                              \
        if (dx[l]) {                                                           \
            REAL d = bp[l][0] * s;                                             \
            for (int k = 1; k <= K; k++) d += bp[l][k] * gh[l][k];             \
            dx[l][t] = d;                                                      \
        }                                                                      \
        for (int k = 0; k <= K; k++)                                           \
            if (!(CHECKED) || t - k >= 0) {                                    \
                db[l][k] += (double)s * x[l][t - k];                           \
                if (k) da[l][k] -= (double)s * y[l][t - k];                    \
            }                                                                  \
        if ((CHECKED) && dzi[l]) dzi[l][t] = s;                                \
        for (int k = K; k > 1; k--) gh[l][k] = gh[l][k - 1];                   \
        gh[l][1] = s;                                                          \
    }

/* dispatch on K so that K and the lane count L are compile-time constants in the fast paths */
#define DISPATCH(FN, LN, ...)                                                  \
    switch (K) {                                                               \
    case 1: FN(__VA_ARGS__, 1, LN); break;                                     \
    case 2: FN(__VA_ARGS__, 2, LN); break;                                     \
    case 3: FN(__VA_ARGS__, 3, LN); break;                                     \
    default: FN(__VA_ARGS__, 4, LN); break;                                    \
    }
"""

_TEMPLATE = r"""
/* ---------- fast path: time-invariant, padded order K <= KMAX, L rows at once ---------- */
typedef struct {
    const REAL *x, *gy, *y, *zi;
    REAL *out, *dx, *dzi, *db, *da;
    REAL bp[KMAX + 1], ap[KMAX + 1];  /* b_0..b_K and (unused) a_0, a_1..a_K, zero padded */
} row_SFX;

static inline __attribute__((always_inline)) void fwd_fast_SFX(row_SFX *rw, int64_t T,
                                                             const int K, const int L)
{
    const REAL *x[LANES], *zi[LANES];
    REAL *y[LANES], bp[LANES][KMAX + 1], ap[LANES][KMAX + 1];
    REAL xh[LANES][KMAX + 1] = {{0}}, yh[LANES][KMAX + 1] = {{0}}; /* x[t-k], y[t-k] */
    for (int l = 0; l < L; l++) {
        x[l] = rw[l].x; zi[l] = rw[l].zi; y[l] = rw[l].out;
        for (int k = 0; k <= K; k++) { bp[l][k] = rw[l].bp[k]; ap[l][k] = rw[l].ap[k]; }
    }
    int64_t t = 0, t0 = T < K ? T : K;
    if (zi[0]) { for (; t < t0; t++) FWD_STEP(zi[l][t]) }
    for (; t < T; t++) FWD_STEP((REAL)0)
}

static inline __attribute__((always_inline)) void bwd_fast_SFX(row_SFX *rw, int M, int N,
                                                             int64_t T, const int K, const int L)
{
    const REAL *x[LANES], *gy[LANES], *y[LANES];
    REAL *dx[LANES], *dzi[LANES], bp[LANES][KMAX + 1], ap[LANES][KMAX + 1];
    REAL gh[LANES][KMAX + 1] = {{0}}; /* g[t+k] */
    double db[LANES][KMAX + 1] = {{0}}, da[LANES][KMAX + 1] = {{0}};
    for (int l = 0; l < L; l++) {
        x[l] = rw[l].x; gy[l] = rw[l].gy; y[l] = rw[l].y; dx[l] = rw[l].dx; dzi[l] = rw[l].dzi;
        for (int k = 0; k <= K; k++) { bp[l][k] = rw[l].bp[k]; ap[l][k] = rw[l].ap[k]; }
    }
    int64_t t = T - 1;
    for (; t >= K; t--) BWD_STEP(0)
    for (; t >= 0; t--) BWD_STEP(1)
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < M; k++) rw[l].db[k] = (REAL)db[l][k];
        for (int k = 0; k < N; k++) rw[l].da[k] = (REAL)da[l][k + 1];
    }
}


/* ---------- generic path: any order, coefficients may vary in time ---------- */
static void fwd_generic_SFX(const REAL *restrict x, const REAL *restrict b, int64_t b_ts, int M,
                            const REAL *restrict a, int64_t a_ts, int N,
                            const REAL *restrict zi, int K, REAL *restrict y, int64_t T)
{
    for (int64_t t = 0; t < T; t++) {
        const REAL *bt = b + t * b_ts, *at = a + t * a_ts;
        REAL acc = (zi && t < K) ? zi[t] : (REAL)0;
        for (int k = 0; k < M && k <= t; k++) acc += bt[k] * x[t - k];
        for (int k = 1; k <= N && k <= t; k++) acc -= at[k - 1] * y[t - k];
        y[t] = acc;
    }
}

static void bwd_generic_SFX(const REAL *restrict gy, const REAL *restrict x, const REAL *restrict y,
                            const REAL *restrict b, int64_t b_ts, int M,
                            const REAL *restrict a, int64_t a_ts, int N, int K,
                            REAL *restrict g, REAL *restrict dx, REAL *restrict dbr,
                            REAL *restrict dar, REAL *restrict dzi, int64_t T)
{
    double accb[M > 0 ? M : 1], acca[N > 0 ? N : 1];
    for (int k = 0; k < M; k++) accb[k] = 0;
    for (int k = 0; k < N; k++) acca[k] = 0;
    for (int64_t t = T - 1; t >= 0; t--) {
        REAL s = gy[t];
        for (int k = 1; k <= N && t + k < T; k++) s -= a[(t + k) * a_ts + k - 1] * g[t + k];
        g[t] = s;
        if (dx) {
            REAL d = 0;
            for (int k = 0; k < M && t + k < T; k++) d += b[(t + k) * b_ts + k] * g[t + k];
            dx[t] = d;
        }
        for (int k = 0; k < M; k++) {
            REAL p = t >= k ? s * x[t - k] : (REAL)0;
            if (b_ts) dbr[t * M + k] = p; else accb[k] += p;
        }
        for (int k = 1; k <= N; k++) {
            REAL p = t >= k ? -s * y[t - k] : (REAL)0;
            if (a_ts) dar[t * N + k - 1] = p; else acca[k - 1] += p;
        }
        if (dzi && t < K) dzi[t] = s;
    }
    if (!b_ts) for (int k = 0; k < M; k++) dbr[k] = (REAL)accb[k];
    if (!a_ts) for (int k = 0; k < N; k++) dar[k] = (REAL)acca[k];
}

/* ---------- entry points: OpenMP over groups of LANES rows ---------- */
static void setup_row_SFX(row_SFX *rw, int64_t r, const REAL *x, const int64_t *xidx,
                          const REAL *b, const int64_t *bidx, int64_t b_rs, int M,
                          const REAL *a, const int64_t *aidx, int64_t a_rs, int N, int64_t T)
{
    const REAL *br = b + bidx[r] * b_rs, *ar = a + aidx[r] * a_rs;
    rw->x = x + xidx[r] * T;
    for (int k = 0; k <= KMAX; k++) {
        rw->bp[k] = k < M ? br[k] : 0;
        rw->ap[k] = (k >= 1 && k <= N) ? ar[k - 1] : 0;
    }
}

void lfilter_fwd_SFX(const REAL *x, const int64_t *xidx,
                     const REAL *b, const int64_t *bidx, int64_t b_rs, int64_t b_ts, int M,
                     const REAL *a, const int64_t *aidx, int64_t a_rs, int64_t a_ts, int N,
                     const REAL *zi, int K, REAL *y, int64_t R, int64_t T, int nthreads)
{
    int fast = b_ts == 0 && a_ts == 0 && K >= 1 && K <= KMAX;
    int64_t G = (R + LANES - 1) / LANES;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t gi = 0; gi < G; gi++) {
        int64_t r0 = gi * LANES, L = R - r0 < LANES ? R - r0 : LANES;
        if (!fast) {
            for (int64_t r = r0; r < r0 + L; r++)
                fwd_generic_SFX(x + xidx[r] * T, b + bidx[r] * b_rs, b_ts, M, a + aidx[r] * a_rs,
                                a_ts, N, zi ? zi + r * K : 0, K, y + r * T, T);
            continue;
        }
        row_SFX rw[LANES];
        for (int l = 0; l < L; l++) {
            int64_t r = r0 + l;
            setup_row_SFX(&rw[l], r, x, xidx, b, bidx, b_rs, M, a, aidx, a_rs, N, T);
            rw[l].zi = zi ? zi + r * K : 0;
            rw[l].out = y + r * T;
        }
        if (L == LANES) {
            DISPATCH(fwd_fast_SFX, LANES, rw, T)
        } else {
            for (int l = 0; l < L; l++) DISPATCH(fwd_fast_SFX, 1, &rw[l], T)
        }
    }
}

/* g may be NULL on the fast path; dx, dzi may be NULL.  db is (R, Tb, M), da (R, Ta, N). */
void lfilter_bwd_SFX(const REAL *gy, const REAL *x, const int64_t *xidx, const REAL *y,
                     const REAL *b, const int64_t *bidx, int64_t b_rs, int64_t b_ts, int M,
                     const REAL *a, const int64_t *aidx, int64_t a_rs, int64_t a_ts, int N, int K,
                     REAL *g, REAL *dx, REAL *db, REAL *da, REAL *dzi,
                     int64_t R, int64_t T, int nthreads)
{
    int fast = b_ts == 0 && a_ts == 0 && K >= 1 && K <= KMAX;
    int64_t db_rs = b_ts ? T * M : M, da_rs = a_ts ? T * N : N;
    int64_t G = (R + LANES - 1) / LANES;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t gi = 0; gi < G; gi++) {
        int64_t r0 = gi * LANES, L = R - r0 < LANES ? R - r0 : LANES;
        if (!fast) {
            for (int64_t r = r0; r < r0 + L; r++)
                bwd_generic_SFX(gy + r * T, x + xidx[r] * T, y + r * T, b + bidx[r] * b_rs, b_ts, M,
                                a + aidx[r] * a_rs, a_ts, N, K, g + r * T, dx ? dx + r * T : 0,
                                db + r * db_rs, da + r * da_rs, dzi ? dzi + r * K : 0, T);
            continue;
        }
        row_SFX rw[LANES];
        for (int l = 0; l < L; l++) {
            int64_t r = r0 + l;
            setup_row_SFX(&rw[l], r, x, xidx, b, bidx, b_rs, M, a, aidx, a_rs, N, T);
            rw[l].gy = gy + r * T; rw[l].y = y + r * T;
            rw[l].dx = dx ? dx + r * T : 0; rw[l].dzi = dzi ? dzi + r * K : 0;
            rw[l].db = db + r * db_rs; rw[l].da = da + r * da_rs;
        }
        if (L == LANES) {
            DISPATCH(bwd_fast_SFX, LANES, rw, M, N, T)
        } else {
            for (int l = 0; l < L; l++) DISPATCH(bwd_fast_SFX, 1, &rw[l], M, N, T)
        }
    }
}
"""

_HEADER = "#include <stdint.h>\n#include <stddef.h>\n#define KMAX %d\n#define LANES %d\n" % (KMAX, LANES)


def _source() -> str:
    body = [f"#define REAL {real}\n" + _TEMPLATE.replace("SFX", sfx) + "#undef REAL\n"
            for real, sfx in (("float", "f32"), ("double", "f64"))]
    return "\n".join([_HEADER, _MACROS, *body])


_P = ctypes.c_void_p
_I = ctypes.c_int64
_C = ctypes.c_int
_FWD_ARGS = [_P, _P, _P, _P, _I, _I, _C, _P, _P, _I, _I, _C, _P, _C, _P, _I, _I, _C]
_BWD_ARGS = [_P, _P, _P, _P, _P, _P, _I, _I, _C, _P, _P, _I, _I, _C, _C,
             _P, _P, _P, _P, _P, _I, _I, _C]


def library() -> ctypes.CDLL | None:
    """The compiled kernel library, or None (no compiler / ``SPS_NO_NATIVE=1``)."""
    lib = _native.load("sps_lfilter", _source())
    if lib is not None and not getattr(lib, "_sps_ready", False):
        for sfx in ("f32", "f64"):
            getattr(lib, f"lfilter_fwd_{sfx}").argtypes = _FWD_ARGS
            getattr(lib, f"lfilter_fwd_{sfx}").restype = None
            getattr(lib, f"lfilter_bwd_{sfx}").argtypes = _BWD_ARGS
            getattr(lib, f"lfilter_bwd_{sfx}").restype = None
        lib._sps_ready = True
    return lib


def _threads(R: int, T: int) -> int:
    """OpenMP threads: torch's setting, but one for small problems (no fork/join cost)."""
    return 1 if R * T < (1 << 16) else max(1, min(torch.get_num_threads(), -(-R // LANES)))


def _p(t: torch.Tensor | None):
    return None if t is None else _native.ptr(t)


def _sfx(dtype: torch.dtype) -> str:
    return "f32" if dtype == torch.float32 else "f64"


def forward(lib, x2, xidx, b2, bidx, a2, aidx, zi2, K: int) -> torch.Tensor:
    """``y (R, T)`` from flattened operands (see :class:`sps.dsp.lfilter._Flat`)."""
    R, T = xidx.numel(), x2.shape[-1]
    M, N = b2.shape[-1], a2.shape[-1]
    y = torch.empty(R, T, dtype=x2.dtype)
    b_ts = M if b2.shape[1] > 1 else 0
    a_ts = N if a2.shape[1] > 1 else 0
    getattr(lib, f"lfilter_fwd_{_sfx(x2.dtype)}")(
        _p(x2), _p(xidx), _p(b2), _p(bidx), b2.shape[1] * M, b_ts, M,
        _p(a2), _p(aidx), a2.shape[1] * N, a_ts, N, _p(zi2), K, _p(y), R, T,
        _threads(R, T))
    return y


def backward(lib, gy, x2, xidx, y, b2, bidx, a2, aidx, K: int, need_x: bool, need_zi: bool):
    """Row-wise gradients ``(dx (R, T) | None, db (R, Tb, M), da (R, Ta, N), dzi (R, K) | None)``."""
    R, T = y.shape
    M, N = b2.shape[-1], a2.shape[-1]
    Tb, Ta = b2.shape[1], a2.shape[1]
    fast = Tb == 1 and Ta == 1 and 1 <= K <= KMAX
    g = None if fast else torch.empty(R, T, dtype=y.dtype)
    dx = torch.empty(R, T, dtype=y.dtype) if need_x else None
    db = torch.empty(R, Tb, M, dtype=y.dtype)
    da = torch.empty(R, Ta, N, dtype=y.dtype)
    dzi = torch.zeros(R, K, dtype=y.dtype) if need_zi else None
    getattr(lib, f"lfilter_bwd_{_sfx(y.dtype)}")(
        _p(gy), _p(x2), _p(xidx), _p(y), _p(b2), _p(bidx), Tb * M, M if Tb > 1 else 0, M,
        _p(a2), _p(aidx), Ta * N, N if Ta > 1 else 0, N, K,
        _p(g), _p(dx), _p(db), _p(da), _p(dzi), R, T, _threads(R, T))
    return dx, db, da, dzi
