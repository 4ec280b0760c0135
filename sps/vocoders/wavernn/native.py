"""Fused C kernel for WaveRNN sampling on CPU (loaded through :mod:`sps._native`).

One call runs the whole sample loop for ``S`` independent rows (utterances or
folded segments). Each OpenMP thread takes blocks of up to four rows and runs
every time step for them: one product ``R h_{t-1}`` (weights read once per step
for the four rows), the coarse half-step, the coarse output layers and inverse-CDF
sampling with a pre-drawn uniform number, then the fine half-step with ``c_t``,
the fine output layers and sampling. Rows never wait on each other, so there are
no barriers. Weights are float32 or bfloat16 (stored as the upper 16 bits of a
float32 and widened exactly on load); all arithmetic is float32.

The arithmetic follows :func:`sps.vocoders.wavernn.generate.step` operation by
operation (same interpolation formula, same order of additions, float64 running
sum in the softmax CDF like :func:`torch.cumsum`), so with the same uniform
numbers the two produce the same samples except where a number falls within
rounding error of a CDF boundary.
"""
from __future__ import annotations

import ctypes
import os

import torch

from sps import _native

C_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NCLS 256

static inline float bf2f(uint16_t x) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)x << 16;
    return v.f;
}

#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
/* Portable VL-lane vectors (GCC/Clang vector extensions, mapped to AVX-512, AVX2 or
   NEON registers); loads are unaligned. */
#if defined(__AVX512F__)
#define VL 16
#else
#define VL 8
#endif
typedef float vf __attribute__((vector_size(4 * VL), aligned(4), may_alias));
typedef uint32_t vu __attribute__((vector_size(4 * VL)));

static inline vf ld_f32(const float *p) { return *(const vf *)p; }
/* Two vectors (2 VL consecutive outputs) of weights. bf16 matrices are packed so
   that 32-bit word i of each chunk of 2 VL holds output i (low half) and VL + i
   (high half): one load, a shift and a mask widen both exactly. */
static inline void ld2_f32(const float *p, vf *a, vf *b) { *a = ld_f32(p); *b = ld_f32(p + VL); }
static inline void ld2_bf16(const uint16_t *p, vf *a, vf *b) {
    const vu u = *(const vu *)p;
    *a = (vf)(u << 16);
    *b = (vf)(u & 0xFFFF0000u);
}
#define F32(x) (x)

/* Matrices are stored transposed, WT[k * M + m] = W[m, k] (bf16: chunks of 2 VL
   outputs interleaved as above, a tail of M % (2 VL) outputs in plain order), so a
   product is a sum of scaled weight rows: no horizontal sums. A tile keeps NR x NV
   vector accumulators (NR batch rows, NV * VL outputs, NV even) and per k loads
   NV weight vectors and NR scalars. */
#define DEFINE_TILE(NAME, WT, LD2, NR, NV)                                              \
static inline void NAME(const WT *W, const float *bias, int M, int K, int m0,          \
                        const float *const *x, float *const *y) {                      \
    vf acc[NR][NV];                                                                    \
    for (int r = 0; r < NR; r++)                                                       \
        for (int v = 0; v < NV; v++) acc[r][v] = (vf){0};                              \
    for (int k = 0; k < K; k++) {                                                      \
        const WT *wk = W + (size_t)k * M + m0;                                         \
        vf wv[NV];                                                                     \
        for (int v = 0; v < NV; v += 2) LD2(wk + v * VL, &wv[v], &wv[v + 1]);          \
        for (int r = 0; r < NR; r++) {                                                 \
            const float xr = x[r][k];                                                  \
            for (int v = 0; v < NV; v++) acc[r][v] += wv[v] * xr;                      \
        }                                                                              \
    }                                                                                  \
    for (int r = 0; r < NR; r++)                                                       \
        for (int v = 0; v < NV; v++)                                                   \
            *(vf *)(y[r] + m0 + v * VL) = acc[r][v] + ld_f32(bias + m0 + v * VL);      \
}

/* Y[b * ldy + m] = bias[m] + sum_k W[m, k] X[b * ldx + k]  for b < nb, m < M. */
#define DEFINE_GEMV(NAME, WT, LD2, CONV)                                               \
DEFINE_TILE(NAME##_4x4, WT, LD2, 4, 4)                                                 \
DEFINE_TILE(NAME##_4x2, WT, LD2, 4, 2)                                                 \
DEFINE_TILE(NAME##_1x8, WT, LD2, 1, 8)                                                 \
DEFINE_TILE(NAME##_1x4, WT, LD2, 1, 4)                                                 \
DEFINE_TILE(NAME##_1x2, WT, LD2, 1, 2)                                                 \
static void NAME(const void *Wv, const float *bias, int M, int K, const float *X,      \
                 int ldx, int nb, float *Y, int ldy) {                                 \
    const WT *W = (const WT *)Wv;                                                      \
    for (int b0 = 0; b0 < nb;) {                                                       \
        const int nr = nb - b0 >= 4 ? 4 : 1;                                           \
        const float *x[4];                                                             \
        float *y[4];                                                                   \
        for (int r = 0; r < nr; r++) {                                                 \
            x[r] = X + (size_t)(b0 + r) * ldx;                                         \
            y[r] = Y + (size_t)(b0 + r) * ldy;                                         \
        }                                                                              \
        int m = 0;                                                                     \
        if (nr == 4) {                                                                 \
            for (; m + 4 * VL <= M; m += 4 * VL) NAME##_4x4(W, bias, M, K, m, x, y);   \
            for (; m + 2 * VL <= M; m += 2 * VL) NAME##_4x2(W, bias, M, K, m, x, y);   \
        } else {                                                                       \
            for (; m + 8 * VL <= M; m += 8 * VL) NAME##_1x8(W, bias, M, K, m, x, y);   \
            for (; m + 4 * VL <= M; m += 4 * VL) NAME##_1x4(W, bias, M, K, m, x, y);   \
            for (; m + 2 * VL <= M; m += 2 * VL) NAME##_1x2(W, bias, M, K, m, x, y);   \
        }                                                                              \
        for (; m < M; m++)                                                             \
            for (int r = 0; r < nr; r++) {                                             \
                float s = 0.f;                                                         \
                for (int k = 0; k < K; k++) s += CONV(W[(size_t)k * M + m]) * x[r][k]; \
                y[r][m] = s + bias[m];                                                 \
            }                                                                          \
        b0 += nr;                                                                      \
    }                                                                                  \
}
DEFINE_GEMV(gemv_f32, float, ld2_f32, F32)
DEFINE_GEMV(gemv_bf16, uint16_t, ld2_bf16, bf2f)

int wavernn_vector_length(void) { return VL; }
#pragma GCC pop_options

/* exp for float32 in [-87, 88] (clamped), ~1 ulp: 2^n * Taylor-7 on |r| <= ln2/2.
   Written so loops calling it auto-vectorise. */
static inline float fexp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round */
    float r = x - n * 0.693145751953125f;
    r = r - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { int32_t i; float f; } s;
    s.i = ((int32_t)n + 127) << 23;
    return p * s.f;
}

typedef void (*gemv_fn)(const void *, const float *, int, int, const float *, int, int,
                        float *, int);

static inline float sigm(float x) { return 1.0f / (1.0f + fexp(-x)); }
static inline float ftanh(float x) { return 2.0f / (1.0f + fexp(-2.0f * x)) - 1.0f; }

/* Inverse-CDF sampling of softmax(logit * inv_temp) with uniform u in [0, 1). */
static int sample(const float *logit, float inv_temp, float u) {
    float z[NCLS], cs[NCLS], m = -INFINITY;
    for (int k = 0; k < NCLS; k++) z[k] = logit[k] * inv_temp;
    #pragma omp simd reduction(max:m)
    for (int k = 0; k < NCLS; k++) m = z[k] > m ? z[k] : m;
    for (int k = 0; k < NCLS; k++) cs[k] = fexp(z[k] - m);
    double acc = 0.0;
    for (int k = 0; k < NCLS; k++) { acc += (double)cs[k]; cs[k] = (float)acc; }
    float target = u * cs[NCLS - 1];
    int cnt = 0;
    #pragma omp simd reduction(+:cnt)
    for (int k = 0; k < NCLS; k++) cnt += cs[k] <= target;
    return cnt > NCLS - 1 ? NCLS - 1 : cnt;
}

/* One GRU half-step on units [lo, hi) of a row: x (3H) input part, rh (3H) = R h. */
static void half_step(int H, int lo, int hi, const float *restrict x,
                      const float *restrict rh, float *restrict h) {
    #pragma omp simd
    for (int i = lo; i < hi; i++) {
        float r = sigm(rh[i] + x[i]);
        float u = sigm(rh[H + i] + x[H + i]);
        float e = ftanh(r * rh[2 * H + i] + x[2 * H + i]);
        h[i] = u * h[i] + (1.0f - u) * e;
    }
}

int wavernn_run(int bf16, int S, int N, int H, int hop, int T2, const float *P,
                const float *Ix, const float *bias, const void *R, const void *O1,
                const float *b1, const void *O2, const float *b2, const void *O3,
                const float *b3, const void *O4, const float *b4, const float *U,
                float inv_temp, int64_t *out, int nthreads) {
    gemv_fn gemv = bf16 ? gemv_bf16 : gemv_f32;
    const int G = 3 * H, H2 = H / 2, nblk = (S + 3) / 4;
    int failed = 0;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(|:failed)
    for (int blk = 0; blk < nblk; blk++) {
        const int s0 = 4 * blk, nb = S - s0 < 4 ? S - s0 : 4;
        float *buf = (float *)calloc((size_t)4 * (H + 2 * G + H2 + NCLS + 2) + G, sizeof(float));
        if (!buf) { failed = 1; continue; }
        float *h = buf, *rh = h + 4 * H, *x = rh + 4 * G, *a1 = x + 4 * G;
        float *lg = a1 + 4 * H2, *prev = lg + 4 * NCLS, *zero = prev + 8;
        for (int b = 0; b < nb; b++) { prev[2 * b] = 128.0f / 127.5f - 1.0f; prev[2 * b + 1] = -1.0f; }
        for (int t = 0; t < N; t++) {
            const double p = (t + 0.5) / hop + 0.5, pk = floor(p);
            const int k0 = (int)pk;
            const float a = (float)(p - pk);
            if (k0 + 1 >= T2) { failed = 1; break; }
            gemv(R, zero, G, H, h, H, nb, rh, G);
            for (int b = 0; b < nb; b++) {
                const float *p0 = P + ((size_t)(s0 + b) * T2 + k0) * G, *p1 = p0 + G;
                const float xc = prev[2 * b], xf = prev[2 * b + 1];
                float *xb = x + (size_t)b * G;
                for (int j = 0; j < G; j++) {
                    float v = p0[j] + a * (p1[j] - p0[j]);
                    v = v + bias[j];
                    v = v + Ix[3 * j] * xc;
                    xb[j] = v + Ix[3 * j + 1] * xf;
                }
                half_step(H, 0, H2, xb, rh + (size_t)b * G, h + (size_t)b * H);
            }
            gemv(O1, b1, H2, H2, h, H, nb, a1, H2);
            for (int j = 0; j < nb * H2; j++) a1[j] = a1[j] > 0.f ? a1[j] : 0.f;
            gemv(O2, b2, NCLS, H2, a1, H2, nb, lg, NCLS);
            for (int b = 0; b < nb; b++) {
                const size_t o = ((size_t)(s0 + b) * N + t) * 2;
                const int c = sample(lg + b * NCLS, inv_temp, U[o]);
                const float cur = (float)c / 127.5f - 1.0f;
                float *xb = x + (size_t)b * G;
                out[o] = c;
                prev[2 * b] = cur;
                for (int g = 0; g < 3; g++)
                    for (int i = g * H + H2; i < (g + 1) * H; i++) xb[i] = xb[i] + Ix[3 * i + 2] * cur;
                half_step(H, H2, H, xb, rh + (size_t)b * G, h + (size_t)b * H);
            }
            gemv(O3, b3, H2, H2, h + H2, H, nb, a1, H2);
            for (int j = 0; j < nb * H2; j++) a1[j] = a1[j] > 0.f ? a1[j] : 0.f;
            gemv(O4, b4, NCLS, H2, a1, H2, nb, lg, NCLS);
            for (int b = 0; b < nb; b++) {
                const size_t o = ((size_t)(s0 + b) * N + t) * 2 + 1;
                const int f = sample(lg + b * NCLS, inv_temp, U[o]);
                out[o] = f;
                prev[2 * b + 1] = (float)f / 127.5f - 1.0f;
            }
        }
        free(buf);
    }
    return failed;
}

/* ---- teacher-forced training: the recurrence of a GRU layer with precomputed input
   projections xi (B, N, 3H) [r | u | e], forward and backward (BPTT); rows are
   independent, so OpenMP threads take blocks of four rows. */
int gru_forward(int B, int N, int H, const float *xi, const float *RT, float *hs,
                float *gates, float *ghe, int nthreads) {
    const int G = 3 * H, nblk = (B + 3) / 4;
    int failed = 0;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(|:failed)
    for (int blk = 0; blk < nblk; blk++) {
        const int b0 = 4 * blk, nb = B - b0 < 4 ? B - b0 : 4;
        float *gh = (float *)calloc((size_t)5 * G, sizeof(float));
        if (!gh) { failed = 1; continue; }
        const float *zero = gh + 4 * G;
        for (int t = 0; t < N; t++) {
            gemv_f32(RT, zero, G, H, hs + ((size_t)b0 * (N + 1) + t) * H, (N + 1) * H, nb, gh, G);
            for (int b = 0; b < nb; b++) {
                const size_t row = (size_t)(b0 + b) * N + t;
                const float *x = xi + row * G, *g = gh + (size_t)b * G;
                const float *hp = hs + ((size_t)(b0 + b) * (N + 1) + t) * H;
                float *h = (float *)hp + H, *gt = gates + row * G, *ge = ghe + row * H;
                #pragma omp simd
                for (int i = 0; i < H; i++) {
                    const float r = sigm(g[i] + x[i]);
                    const float u = sigm(g[H + i] + x[H + i]);
                    const float e = ftanh(r * g[2 * H + i] + x[2 * H + i]);
                    h[i] = u * hp[i] + (1.0f - u) * e;
                    gt[i] = r; gt[H + i] = u; gt[2 * H + i] = e; ge[i] = g[2 * H + i];
                }
            }
        }
        free(gh);
    }
    return failed;
}

int gru_backward(int B, int N, int H, const float *dout, const float *R, const float *hs,
                 const float *gates, const float *ghe, float *dxi, float *dgh, float *dh0,
                 int nthreads) {
    const int G = 3 * H, nblk = (B + 3) / 4;
    int failed = 0;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(|:failed)
    for (int blk = 0; blk < nblk; blk++) {
        const int b0 = 4 * blk, nb = B - b0 < 4 ? B - b0 : 4;
        float *dh = (float *)calloc((size_t)9 * H, sizeof(float));
        if (!dh) { failed = 1; continue; }
        float *tmp = dh + 4 * H;
        const float *zero = tmp + 4 * H;
        for (int t = N - 1; t >= 0; t--) {
            for (int b = 0; b < nb; b++) {
                const size_t row = (size_t)(b0 + b) * N + t;
                const float *go = dout + row * H, *gt = gates + row * G, *ge = ghe + row * H;
                const float *hp = hs + ((size_t)(b0 + b) * (N + 1) + t) * H;
                float *d = dh + (size_t)b * H, *dx = dxi + row * G, *dg = dgh + row * G;
                #pragma omp simd
                for (int i = 0; i < H; i++) {
                    const float r = gt[i], u = gt[H + i], e = gt[2 * H + i];
                    const float dht = d[i] + go[i];
                    const float de = dht * (1.0f - u) * (1.0f - e * e);
                    const float du = dht * (hp[i] - e) * u * (1.0f - u);
                    const float dr = de * ge[i] * r * (1.0f - r);
                    dx[i] = dr; dx[H + i] = du; dx[2 * H + i] = de;
                    dg[i] = dr; dg[H + i] = du; dg[2 * H + i] = de * r;
                    d[i] = dht * u;
                }
            }
            /* dh_{t-1} = dh_t * u + dgh_t R   (R as a (H x 3H) product: transposed store) */
            gemv_f32(R, zero, H, G, dgh + ((size_t)b0 * N + t) * G, N * G, nb, tmp, H);
            for (int j = 0; j < nb * H; j++) dh[j] += tmp[j];
        }
        memcpy(dh0 + (size_t)b0 * H, dh, (size_t)nb * H * sizeof(float));
        free(dh);
    }
    return failed;
}
"""

_ARGTYPES = ([ctypes.c_int] * 6 + [ctypes.c_void_p] * 12 + [ctypes.c_void_p, ctypes.c_float,
             ctypes.c_void_p, ctypes.c_int])


def library() -> ctypes.CDLL | None:
    """The compiled kernel, or None (no compiler or ``SPS_NO_NATIVE=1``)."""
    lib = _native.load("wavernn", C_SOURCE)
    if lib is not None and lib.wavernn_run.argtypes is None:
        lib.wavernn_run.argtypes = _ARGTYPES
        lib.wavernn_run.restype = ctypes.c_int
        i, p = ctypes.c_int, ctypes.c_void_p
        lib.gru_forward.argtypes = [i, i, i] + [p] * 5 + [i]
        lib.gru_backward.argtypes = [i, i, i] + [p] * 8 + [i]
        lib.gru_forward.restype = lib.gru_backward.restype = i
    return lib


def pack(m: torch.Tensor, bf16: bool, vl: int) -> torch.Tensor:
    """Lay a weight matrix ``(M, K)`` out as the kernel reads it.

    Transposed to ``(K, M)``; for bf16, each full chunk of ``2 vl`` outputs of a
    row is interleaved ``[o_0, o_vl, o_1, o_vl+1, ...]`` (16-bit words) so that a
    32-bit word holds outputs ``i`` and ``vl + i``; the remaining outputs keep their
    order. Returns float32 or the bf16 bit patterns as int16.
    """
    t = m.detach().float().t().contiguous()
    if not bf16:
        return t
    K, M = t.shape
    t = t.bfloat16().view(torch.int16)
    full = M - M % (2 * vl)
    head = t[:, :full].reshape(K, -1, 2, vl).transpose(2, 3).reshape(K, full)
    return torch.cat([head, t[:, full:]], 1).contiguous()


def default_threads() -> int:
    """OpenMP threads for the kernel: ``$SPS_THREADS``, else torch's intra-op count."""
    return int(os.environ.get("SPS_THREADS", torch.get_num_threads()))


def run(w, P: torch.Tensor, u: torch.Tensor, hop: int, temperature: float = 1.0,
        threads: int | None = None) -> torch.Tensor:
    """Sample bytes with the C kernel.

    Parameters
    ----------
    w : GenWeights
        Generation weights (:func:`sps.vocoders.wavernn.generate.gen_weights`);
        ``w.bf16`` selects bfloat16 storage of the matrices.
    P : Tensor [shape=(S, T + 2, 3H)]
        Edge-padded per-frame conditioning projections (float32, CPU).
    u : Tensor [shape=(S, T * hop, 2)]
        Uniform numbers in [0, 1) for the coarse and the fine draw of each sample.

    Returns
    -------
    Tensor [shape=(S, T * hop, 2)], int64
        Coarse and fine bytes.
    """
    lib = library()
    if lib is None:
        raise RuntimeError("the WaveRNN C kernel is not available (no compiler or SPS_NO_NATIVE=1)")
    S, T2, G = P.shape
    N = (T2 - 2) * hop
    if u.shape != (S, N, 2):
        raise ValueError(f"uniform numbers must have shape {(S, N, 2)}, got {tuple(u.shape)}")
    P = P.detach().float().contiguous()
    u = u.detach().float().contiguous()
    out = torch.empty(S, N, 2, dtype=torch.int64)
    if not w._packed:
        vl = lib.wavernn_vector_length()
        w._packed = [pack(m, w.bf16, vl) for m in w.matrices()]
    mats = w._packed
    p = _native.ptr
    rc = lib.wavernn_run(int(w.bf16), S, N, w.H, hop, T2, p(P), p(w.Ix), p(w.bias),
                         p(mats[0]), p(mats[1]), p(w.b1), p(mats[2]), p(w.b2), p(mats[3]),
                         p(w.b3), p(mats[4]), p(w.b4), p(u), 1.0 / temperature, p(out),
                         threads or default_threads())
    if rc:
        raise RuntimeError("WaveRNN C kernel failed (out of memory or bad conditioning length)")
    return out
