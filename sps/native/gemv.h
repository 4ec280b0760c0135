/* Vectorised matrix-vector products for small batches (GCC/Clang vector extensions):
   float32 or bfloat16 weights stored transposed, used by the WaveRNN kernels. */
#ifndef SPS_GEMV_H
#define SPS_GEMV_H
#include "common.h"
#include "mat.h"

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
DEFINE_GEMV(gemv_bf16, uint16_t, ld2_bf16, sps_bf16)

/* ---- block-sparse products: blocks of 16 consecutive outputs of one input (16 x 1).
   Block-CSR: block row r (outputs 16 r .. 16 r + 15) holds blocks ptr[r] .. ptr[r+1] - 1,
   block j multiplies input idx[j] with the 16 weights val[16 j .. 16 j + 15] (float32 or
   bf16, in output order). A block is one 16-lane vector (one AVX-512 register, two AVX2
   ones). */
typedef float v16f __attribute__((vector_size(64), aligned(4), may_alias));
typedef uint16_t v16h __attribute__((vector_size(32), aligned(2), may_alias));
typedef uint32_t v16u __attribute__((vector_size(64)));
#define SP_BLOCK 16

static inline v16f sp_ld_f32(const float *p) { return *(const v16f *)p; }
static inline v16f sp_ld_bf16(const uint16_t *p) {
    return (v16f)(__builtin_convertvector(*(const v16h *)p, v16u) << 16);
}

/* One batch row: four block rows at a time, each with its own accumulator, step in
   lockstep over their common number of blocks (four independent FMA chains instead of
   one latency-bound chain), then finish their tails one by one. Every output still sums
   its non-zero blocks in column order, exactly as the dense kernel sums its columns. */
#define DEFINE_SPGEMV(NAME, WT, LD)                                                    \
static void NAME##_row(const int32_t *ptr, const int32_t *idx, const WT *val, const float *bias, \
                       int M, const float *x, float *y) {                              \
    const int R = M / SP_BLOCK;                                                        \
    int r = 0;                                                                         \
    for (; r + 4 <= R; r += 4) {                                                       \
        v16f acc[4] = {{0}, {0}, {0}, {0}};                                            \
        int n = ptr[r + 1] - ptr[r];                                                   \
        for (int i = 1; i < 4; i++)                                                    \
            if (ptr[r + i + 1] - ptr[r + i] < n) n = ptr[r + i + 1] - ptr[r + i];      \
        const int j0 = ptr[r], j1 = ptr[r + 1], j2 = ptr[r + 2], j3 = ptr[r + 3];      \
        for (int t = 0; t < n; t++) {                                                  \
            acc[0] += LD(val + (size_t)(j0 + t) * SP_BLOCK) * x[idx[j0 + t]];          \
            acc[1] += LD(val + (size_t)(j1 + t) * SP_BLOCK) * x[idx[j1 + t]];          \
            acc[2] += LD(val + (size_t)(j2 + t) * SP_BLOCK) * x[idx[j2 + t]];          \
            acc[3] += LD(val + (size_t)(j3 + t) * SP_BLOCK) * x[idx[j3 + t]];          \
        }                                                                              \
        for (int i = 0; i < 4; i++) {                                                  \
            for (int j = ptr[r + i] + n; j < ptr[r + i + 1]; j++)                      \
                acc[i] += LD(val + (size_t)j * SP_BLOCK) * x[idx[j]];                  \
            for (int c = 0; c < SP_BLOCK; c++)                                         \
                y[(r + i) * SP_BLOCK + c] = acc[i][c] + bias[(r + i) * SP_BLOCK + c];  \
        }                                                                              \
    }                                                                                  \
    for (; r < R; r++) {                                                               \
        v16f acc = {0};                                                                \
        for (int j = ptr[r]; j < ptr[r + 1]; j++)                                      \
            acc += LD(val + (size_t)j * SP_BLOCK) * x[idx[j]];                         \
        for (int c = 0; c < SP_BLOCK; c++) y[r * SP_BLOCK + c] = acc[c] + bias[r * SP_BLOCK + c]; \
    }                                                                                  \
}                                                                                      \
/* Several batch rows: one accumulator per batch row (up to four chains). */           \
static void NAME(const int32_t *ptr, const int32_t *idx, const WT *val, const float *bias, \
                 int M, const float *X, int ldx, int nb, float *Y, int ldy) {          \
    if (nb == 1) {                                                                     \
        NAME##_row(ptr, idx, val, bias, M, X, Y);                                      \
        return;                                                                        \
    }                                                                                  \
    for (int b0 = 0; b0 < nb; b0 += 4) {                                               \
        const int nr = nb - b0 < 4 ? nb - b0 : 4;                                      \
        for (int r = 0; r < M / SP_BLOCK; r++) {                                       \
            v16f acc[4] = {{0}, {0}, {0}, {0}};                                        \
            for (int j = ptr[r]; j < ptr[r + 1]; j++) {                                \
                const v16f w = LD(val + (size_t)j * SP_BLOCK);                         \
                const int k = idx[j];                                                  \
                for (int q = 0; q < nr; q++) acc[q] += w * X[(size_t)(b0 + q) * ldx + k]; \
            }                                                                          \
            for (int q = 0; q < nr; q++) {                                             \
                float *y = Y + (size_t)(b0 + q) * ldy + r * SP_BLOCK;                  \
                const float *bi = bias + r * SP_BLOCK;                                 \
                for (int c = 0; c < SP_BLOCK; c++) y[c] = acc[q][c] + bi[c];           \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
}
DEFINE_SPGEMV(spgemv_f32, float, sp_ld_f32)
DEFINE_SPGEMV(spgemv_bf16, uint16_t, sp_ld_bf16)

#pragma GCC pop_options

typedef void (*gemv_fn)(const void *, const float *, int, int, const float *, int, int,
                        float *, int);


/* Y = bias + W X for nb rows: M outputs, K inputs. */
static inline void mat_gemv(const sps_mat *m, const float *bias, int M, int K, const float *X,
                            int ldx, int nb, float *Y, int ldy) {
    if (m->sparse) {
        if (m->bf16) spgemv_bf16(m->ptr, m->idx, (const uint16_t *)m->w, bias, M, X, ldx, nb, Y, ldy);
        else spgemv_f32(m->ptr, m->idx, (const float *)m->w, bias, M, X, ldx, nb, Y, ldy);
    } else {
        (m->bf16 ? gemv_bf16 : gemv_f32)(m->w, bias, M, K, X, ldx, nb, Y, ldy);
    }
}

#endif
