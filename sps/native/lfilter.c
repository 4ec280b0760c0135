/* Batched IIR filtering, forward and analytic backward (see sps/dsp/lfilter.py). */
#include "common.h"
#include <stddef.h>


#define KMAX 4
#define LANES 4

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
#define DISPATCH(F_, LN, ...)                                                  \
    switch (K) {                                                               \
    case 1: F_(__VA_ARGS__, 1, LN); break;                                     \
    case 2: F_(__VA_ARGS__, 2, LN); break;                                     \
    case 3: F_(__VA_ARGS__, 3, LN); break;                                     \
    default: F_(__VA_ARGS__, 4, LN); break;                                    \
    }

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

#define REAL float
#define FN(name) CAT(name, _f32)
#include "lfilter_impl.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) CAT(name, _f64)
#include "lfilter_impl.h"
#undef REAL
#undef FN
