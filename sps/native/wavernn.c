/* CPU WaveRNN kernels (loaded by sps.native; driven by sps/vocoders/wavernn/native.py):
   generation and the teacher-forced GRU recurrence with its backward pass.

Generation runs the whole sample loop for S independent rows (utterances or folded
segments). Each OpenMP thread takes blocks of up to four rows and runs every time step
for them: one product R h_{t-1} (weights read once per step for the four rows), the
coarse half-step, the coarse output layers and inverse-CDF sampling with a pre-drawn
uniform number, then the fine half-step with c_t, the fine output layers and sampling.
Rows never wait on each other, so there are no barriers. Weights are float32 or
bfloat16 (stored as the upper 16 bits of a float32 and widened exactly on load); all
arithmetic is float32, following sps.vocoders.wavernn.generate.step operation by
operation. */
#include <stdlib.h>
#include "common.h"

#define NCLS 256


#include "gemv.h"
#include "excitation.h"
#include "wavernn.h"

int wavernn_vector_length(void) { return VL; }


/* One GRU half-step on units [lo, hi) of a row: x (3H) input part, rh (3H) = R h. */
static void half_step(int H, int lo, int hi, const float *restrict x,
                      const float *restrict rh, float *restrict h) {
    #pragma omp simd
    for (int i = lo; i < hi; i++) {
        float r = sps_sigmoid(rh[i] + x[i]);
        float u = sps_sigmoid(rh[H + i] + x[H + i]);
        float e = sps_tanh(r * rh[2 * H + i] + x[2 * H + i]);
        h[i] = u * h[i] + (1.0f - u) * e;
    }
}

/* The plain model: every sample of S rows in one call (see wavernn.h). */
int wavernn_run(const wavernn_weights *w, const wavernn_call *c) {
    if (!w || !c || !w->mats || !w->Ix || !w->bias || !w->b1 || !w->b2 || !w->b3 || !w->b4 || !c->P || !c->u
        || !c->out || c->S < 1 || c->N < 0 || c->hop < 1 || c->T2 < 2 || w->H < 2 || (w->H & 1))
        return SPS_EINVAL;
    const int S = c->S, H = w->H, hop = c->hop, T2 = c->T2, nthreads = c->nthreads;
    const int64_t N = c->N;
    const float *P = c->P, *Ix = w->Ix, *bias = w->bias, *U = c->u;
    const float *b1 = w->b1, *b2 = w->b2, *b3 = w->b3, *b4 = w->b4, inv_temp = c->inv_temp;
    int64_t *out = c->out;
    const sps_mat *R = w->mats, *O1 = w->mats + 1, *O2 = w->mats + 2, *O3 = w->mats + 3, *O4 = w->mats + 4;
    const int G = 3 * H, H2 = H / 2, nblk = (S + 3) / 4;
    int failed = 0;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(|:failed)
    for (int blk = 0; blk < nblk; blk++) {
        const int s0 = 4 * blk, nb = S - s0 < 4 ? S - s0 : 4;
        float *buf = (float *)calloc((size_t)4 * (H + 2 * G + H2 + NCLS + 2) + 4 * G, sizeof(float));
        if (!buf) { failed |= SPS_ENOMEM; continue; }
        float *h = buf, *rh = h + 4 * H, *x = rh + 4 * G, *a1 = x + 4 * G;
        float *lg = a1 + 4 * H2, *prev = lg + 4 * NCLS, *zero = prev + 8;
        /* the columns of Ix (3H x 3) contiguous, so the input loops vectorise */
        float *I0 = zero + G, *I1 = I0 + G, *I2 = I1 + G;
        for (int j = 0; j < G; j++) { I0[j] = Ix[3 * j]; I1[j] = Ix[3 * j + 1]; I2[j] = Ix[3 * j + 2]; }
        for (int b = 0; b < nb; b++) { prev[2 * b] = 128.0f / 127.5f - 1.0f; prev[2 * b + 1] = -1.0f; }
        for (int64_t t = 0; t < N; t++) {
            const double p = (t + 0.5) / hop + 0.5, pk = floor(p);
            const int k0 = (int)pk;
            const float a = (float)(p - pk);
            if (k0 + 1 >= T2) { failed |= SPS_EINVAL; break; }
            mat_gemv(R, zero, G, H, h, H, nb, rh, G);
            for (int b = 0; b < nb; b++) {
                const float *p0 = P + ((size_t)(s0 + b) * T2 + k0) * G, *p1 = p0 + G;
                const float xc = prev[2 * b], xf = prev[2 * b + 1];
                float *xb = x + (size_t)b * G;
                for (int j = 0; j < G; j++) {
                    float v = p0[j] + a * (p1[j] - p0[j]);
                    v = v + bias[j];
                    v = v + I0[j] * xc;
                    xb[j] = v + I1[j] * xf;
                }
                half_step(H, 0, H2, xb, rh + (size_t)b * G, h + (size_t)b * H);
            }
            mat_gemv(O1, b1, H2, H2, h, H, nb, a1, H2);
            for (int j = 0; j < nb * H2; j++) a1[j] = a1[j] > 0.f ? a1[j] : 0.f;
            mat_gemv(O2, b2, NCLS, H2, a1, H2, nb, lg, NCLS);
            for (int b = 0; b < nb; b++) {
                const size_t o = ((size_t)(s0 + b) * N + t) * 2;
                const int c = sps_sample(lg + b * NCLS, NCLS, inv_temp, U[o]);
                const float cur = (float)c / 127.5f - 1.0f;
                float *xb = x + (size_t)b * G;
                out[o] = c;
                prev[2 * b] = cur;
                for (int g = 0; g < 3; g++)
                    for (int i = g * H + H2; i < (g + 1) * H; i++) xb[i] = xb[i] + I2[i] * cur;
                half_step(H, H2, H, xb, rh + (size_t)b * G, h + (size_t)b * H);
            }
            mat_gemv(O3, b3, H2, H2, h + H2, H, nb, a1, H2);
            for (int j = 0; j < nb * H2; j++) a1[j] = a1[j] > 0.f ? a1[j] : 0.f;
            mat_gemv(O4, b4, NCLS, H2, a1, H2, nb, lg, NCLS);
            for (int b = 0; b < nb; b++) {
                const size_t o = ((size_t)(s0 + b) * N + t) * 2 + 1;
                const int f = sps_sample(lg + b * NCLS, NCLS, inv_temp, U[o]);
                out[o] = f;
                prev[2 * b + 1] = (float)f / 127.5f - 1.0f;
            }
        }
        free(buf);
    }
    return (failed & SPS_EINVAL) ? SPS_EINVAL : failed ? SPS_ENOMEM : SPS_OK;
}

/* ---- teacher-forced training: the recurrence of a GRU layer with precomputed input
   projections xi (B, N, 3H) [r | u | e], forward and backward (BPTT); rows are
   independent, so OpenMP threads take blocks of four rows. */
int gru_forward(const gru_seq *s) {
    if (!s || !s->xi || !s->RT || !s->hs || !s->gates || !s->ghe || s->B < 1 || s->N < 0 || s->H < 1)
        return SPS_EINVAL;
    const int B = s->B, N = s->N, H = s->H, nthreads = s->nthreads;
    const float *xi = s->xi, *RT = s->RT;
    float *hs = s->hs, *gates = s->gates, *ghe = s->ghe;
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
                    const float r = sps_sigmoid(g[i] + x[i]);
                    const float u = sps_sigmoid(g[H + i] + x[H + i]);
                    const float e = sps_tanh(r * g[2 * H + i] + x[2 * H + i]);
                    h[i] = u * hp[i] + (1.0f - u) * e;
                    gt[i] = r; gt[H + i] = u; gt[2 * H + i] = e; ge[i] = g[2 * H + i];
                }
            }
        }
        free(gh);
    }
    return failed ? SPS_ENOMEM : SPS_OK;
}

int gru_backward(const gru_seq *s) {
    if (!s || !s->dout || !s->R || !s->hs || !s->gates || !s->ghe || !s->dxi || !s->dgh || !s->dh0 || s->B < 1
        || s->N < 0 || s->H < 1)
        return SPS_EINVAL;
    const int B = s->B, N = s->N, H = s->H, nthreads = s->nthreads;
    const float *dout = s->dout, *R = s->R, *hs = s->hs, *gates = s->gates, *ghe = s->ghe;
    float *dxi = s->dxi, *dgh = s->dgh, *dh0 = s->dh0;
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
    return failed ? SPS_ENOMEM : SPS_OK;
}

/* ---- LPC WaveRNN generation (sps/vocoders/wavernn/lpc.py): a GRU over the summed input
   embeddings of the excitation inputs plus the interpolated frame projection, one
   256-way softmax over the mu-law excitation. One call draws samples [n0, n0 + n) of S
   rows of N = T * hop samples; the GRU state and the excitation rings live in the chunk
   structure (wavernn.h), so a caller can stop between calls and resume. */
int wavernn_lpc_run(const wavernn_lpc_weights *w, const wavernn_lpc_chunk *c) {
    if (!w || !c || !w->mats || !w->E || !w->b1 || !w->b2 || !c->P || !c->a || !c->lag || !c->itemp || !c->u
        || !c->h || !c->ring_s || !c->ring_e || !c->out_s || !c->out_q || (!w->wph) != (!c->ph))
        return SPS_EINVAL;
    const int S = c->S, T = c->T, hop = c->hop, H = w->H, p = c->p, HL = c->HL, nthreads = c->nthreads;
    const int64_t n0 = c->n0, nc = c->n, N = (int64_t)T * hop;
    if (S < 1 || T < 1 || hop < 1 || p < 1 || H < 1 || HL < 1 || (HL & (HL - 1)) || n0 < 0 || nc < 0
        || n0 + nc > N)
        return SPS_EINVAL;
    const float *P = c->P, *E = w->E, *b1 = w->b1, *b2 = w->b2, *A = c->a, *LAG = c->lag;
    const float *ITEMP = c->itemp, *U = c->u, *PH = c->ph, *WPH = w->wph, *PD = c->pd;
    float *out_s = c->out_s;
    int64_t *out_q = c->out_q;
    const sps_mat *RT = w->mats, *O1 = w->mats + 1, *O2 = w->mats + 2;
    const int G = 3 * H, nblk = (S + 3) / 4;
    int failed = 0;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(|:failed)
    for (int blk = 0; blk < nblk; blk++) {
        const int s0 = 4 * blk, nb = S - s0 < 4 ? S - s0 : 4;
        float *buf = (float *)calloc((size_t)4 * (2 * G + 2 * NCLS) + G + NCLS, sizeof(float));
        if (!buf) { failed |= SPS_ENOMEM; continue; }
        float *h = c->h + (size_t)s0 * H;                  /* the block's rows, kept between calls */
        float *rh = buf, *x = rh + 4 * G, *a1 = x + 4 * G, *lg = a1 + 4 * NCLS;
        float *zero = lg + 4 * NCLS, *table = zero + G;
        mulaw_table(table);
        exc_state st[4];
        for (int b = 0; b < nb; b++) {
            st[b].s = c->ring_s + (size_t)(s0 + b) * HL;
            st[b].e = c->ring_e + (size_t)(s0 + b) * HL;
            st[b].mask = HL - 1;
        }
        for (int64_t n = n0; n < n0 + nc; n++) {
            const int k0 = (int)(n / hop), k1 = k0 + 1 < T ? k0 + 1 : T - 1;
            const float fr = (float)(n - (int64_t)k0 * hop) / (float)hop;
            int f = (int)((n + hop / 2) / hop);
            f = f < T ? f : T - 1;
            mat_gemv(RT, zero, G, H, h, H, nb, rh, G);
            for (int b = 0; b < nb; b++) {
                const size_t row = (size_t)(s0 + b);
                const float *p0 = P + (row * T + k0) * G, *p1 = P + (row * T + k1) * G;
                int q[EXC_INPUTS];
                exc_inputs(&st[b], n, A + (row * T + f) * p, p, LAG[row * T + f], q);
                float *xb = x + (size_t)b * G;
                for (int j = 0; j < G; j++) xb[j] = p0[j] + fr * (p1[j] - p0[j]);
                for (int i = 0; i < EXC_INPUTS; i++) {
                    const float *Ei = E + ((size_t)i * NCLS + q[i]) * G;
                    for (int j = 0; j < G; j++) xb[j] = xb[j] + Ei[j];
                }
                if (PH) {
                    const size_t i = 2 * (row * (size_t)nc + (size_t)(n - n0));
                    const float ps = PH[i], pc = PH[i + 1];
                    for (int j = 0; j < G; j++) xb[j] = xb[j] + (WPH[2 * j] * ps + WPH[2 * j + 1] * pc);
                }
                half_step(H, 0, H, xb, rh + (size_t)b * G, h + (size_t)b * H);
            }
            mat_gemv(O1, b1, NCLS, H, h, H, nb, a1, NCLS);
            for (int j = 0; j < nb * NCLS; j++) a1[j] = a1[j] > 0.f ? a1[j] : 0.f;
            mat_gemv(O2, b2, NCLS, NCLS, a1, NCLS, nb, lg, NCLS);
            for (int b = 0; b < nb; b++) {
                const size_t row = (size_t)(s0 + b), o = row * (size_t)nc + (size_t)(n - n0);
                const int c = sps_sample(lg + b * NCLS, NCLS, ITEMP[row * T + f], U[o]);
                out_q[o] = c;
                out_s[o] = exc_push(&st[b], n, PD ? table[c] + PD[o] : table[c]);
            }
        }
        free(buf);
    }
    return failed ? SPS_ENOMEM : SPS_OK;
}
