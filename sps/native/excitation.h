/* Linear-prediction excitation of one stream, one sample at a time (the C twin of
   sps.vocoders.excitation.ExcitationState): ring buffers of the pre-emphasised samples
   s and the excitation e, the four mu-law network inputs of the next sample, and the
   update with the drawn excitation. */
#ifndef SPS_EXCITATION_H
#define SPS_EXCITATION_H
#include "common.h"

#define EXC_INPUTS 4

/* mu-law class (256 levels) of x, as sps.dsp.mu_law_encode */
static inline int mulaw_encode(float x) {
    x = x < -1.0f ? -1.0f : (x > 1.0f ? 1.0f : x);
    const float mu = 255.0f;
    float f = log1pf(mu * fabsf(x)) / log1pf(mu);
    f = x < 0 ? -f : (x > 0 ? f : 0.0f);
    int q = (int)floorf((f + 1.0f) / 2.0f * mu + 0.5f);
    return q < 0 ? 0 : (q > 255 ? 255 : q);
}

/* sample values of the 256 classes, as sps.dsp.mu_law_decode */
static inline void mulaw_table(float *table) {
    const float mu = 255.0f;
    for (int q = 0; q < 256; q++) {
        float f = 2.0f * (float)q / mu - 1.0f;
        float v = expm1f(fabsf(f) * log1pf(mu)) / mu;
        table[q] = f < 0 ? -v : (f > 0 ? v : 0.0f);
    }
}

/* Ring buffers s[], e[] of length mask + 1 (a power of two > max lag + order + 2); the
   sample n lives at index n & mask. */
typedef struct {
    float *s, *e;
    int64_t mask;
    float pred;
} exc_state;

static inline float exc_at(const float *buf, int64_t mask, int64_t i) { return i < 0 ? 0.0f : buf[i & mask]; }

/* Inputs of sample n: a (p) the frame's LPC a_1..a_p, lag the pitch period (samples).
   Writes q[4] (classes of s[n-1], p[n], e[n-1], e[n-T0]) and keeps pred. */
static inline void exc_inputs(exc_state *st, int64_t n, const float *a, int p, float lag, int *q) {
    float pred = 0.0f;
    for (int k = 1; k <= p; k++) pred += exc_at(st->s, st->mask, n - k) * a[k - 1];
    pred = -pred;
    const float whole = floorf(lag), frac = lag - whole;
    const int64_t i0 = n - (int64_t)whole;
    const float e_lag = exc_at(st->e, st->mask, i0) * (1.0f - frac) + exc_at(st->e, st->mask, i0 - 1) * frac;
    st->pred = pred;
    q[0] = mulaw_encode(exc_at(st->s, st->mask, n - 1));
    q[1] = mulaw_encode(pred);
    q[2] = mulaw_encode(exc_at(st->e, st->mask, n - 1));
    q[3] = mulaw_encode(e_lag);
}

/* Sample n gets excitation e: returns s[n] = pred + e. */
static inline float exc_push(exc_state *st, int64_t n, float e) {
    const float s = st->pred + e;
    st->s[n & st->mask] = s;
    st->e[n & st->mask] = e;
    return s;
}

#endif
