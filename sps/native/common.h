/* Shared by every sps kernel: status codes, fast float32 exp/tanh/sigmoid (written so
   loops calling them auto-vectorise), bfloat16 widening and the inverse-CDF sampler. */
#ifndef SPS_COMMON_H
#define SPS_COMMON_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Status codes returned by every exported kernel (sps.native maps them to exceptions). */
#define SPS_OK 0
#define SPS_ENOMEM 1     /* scratch allocation failed */
#define SPS_EINVAL 2     /* inconsistent sizes or arguments */
#define SPS_ENOTPD 3     /* a matrix that must be positive definite is not */
#define SPS_EDOMAIN 4    /* an input value outside its domain (NaN, a non-positive variance ...) */

/* exp for float32 in [-87, 88] (clamped), ~1 ulp: 2^n * Taylor-7 on |r| <= ln2/2. */
static inline float sps_exp(float x) {
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

static inline float sps_sigmoid(float x) { return 1.0f / (1.0f + sps_exp(-x)); }
static inline float sps_tanh(float x) { return 2.0f / (1.0f + sps_exp(-2.0f * x)) - 1.0f; }

/* bfloat16 bit pattern (upper half of a float32) -> float32, exact. */
static inline float sps_bf16(uint16_t x) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)x << 16;
    return v.f;
}

/* Inverse-CDF draw from softmax(logit * inv_temp) over n <= 1024 classes: the first class
   whose cumulative (unnormalised) probability exceeds u * total, u uniform in [0, 1).
   The running sum is float64, like torch.cumsum of the reference samplers, so both pick
   the same class except within rounding of a CDF boundary. */
static inline int sps_sample(const float *logit, int n, float inv_temp, float u) {
    float cs[1024], m = -INFINITY;
    for (int k = 0; k < n; k++) m = logit[k] * inv_temp > m ? logit[k] * inv_temp : m;
    for (int k = 0; k < n; k++) cs[k] = sps_exp(logit[k] * inv_temp - m);
    double acc = 0.0;
    for (int k = 0; k < n; k++) { acc += (double)cs[k]; cs[k] = (float)acc; }
    const float target = u * cs[n - 1];
    int cnt = 0;
    for (int k = 0; k < n; k++) cnt += cs[k] <= target;
    return cnt > n - 1 ? n - 1 : cnt;
}

#endif
