/* CPU WaveNet generation (loaded by sps.native; driven by sps/vocoders/wavenet/native.py).

One call runs ``n`` consecutive samples for ``B`` streams. OpenMP threads form groups;
each group advances its streams in lockstep (a weight row loaded into cache serves all
of them) and, when a group has several threads (fewer streams than threads), they split
the rows of every weight matrix so each slice stays in its core's cache, combining
partial sums after a light barrier. Matrix-vector products are sums of rows of the
transposed weight (out += x[j] * W^T[j, :]), which vectorise without reassociation.

State between calls: buf (B, L, D + 1, R) ring buffers of past layer inputs (slot
t % (D + 1) holds x_l[t], zero before the start; with one slot more than the largest
dilation D the slot read never equals the slot written), yprev/ycurr (B,) classes
y[t-2], y[t-1]. */
#define _GNU_SOURCE
#pragma GCC optimize("fp-contract=fast")   /* fused multiply-adds under -std=c99 */
#include <sched.h>
#include <stdlib.h>
#include <omp.h>
#include "common.h"
#include "excitation.h"
#include "wavenet.h"


/* out[b][lo:hi] += sum_j x[b][j] * WT[j, lo:hi]  for j in [j0, j1) and b < nb  (WT is k x m,
   float32 or bfloat16 bit patterns). Blocks of BLK outputs are accumulated in registers over
   all j (weights streamed once per stream; a block of rows stays in L1 for the next stream):
   64 outputs are four AVX-512 (eight AVX2) accumulators, enough independent FMA chains to
   hide their latency; the 16-wide blocks and the tail serve the narrow slices of a split
   group. Every output sums its terms in order of j whatever the path, and a bf16 weight
   widens to float32 exactly, so both precisions give what a float32 product of the same
   (rounded) weights gives. bf16 halves the bytes streamed per sample: the recipe's stack
   (1.5 MB in float32) then fits a 1 MB L2 cache. */
#define DEFINE_MATVEC(NAME, WT_T, LOAD)                                                        \
static inline void NAME##_block(int BLK, int nb, int j0, int j1, int m, int i0,                \
                                const WT_T *restrict WT, const float *restrict x, int xstride, \
                                float *restrict out, int ostride) {                            \
    for (int b = 0; b < nb; b++) {                                                             \
        const float *restrict xb = x + (size_t)b * xstride;                                    \
        float *restrict o = out + (size_t)b * ostride + i0;                                    \
        float acc[64];                                                                         \
        for (int c = 0; c < BLK; c++) acc[c] = o[c];                                           \
        for (int j = j0; j < j1; j++) {                                                        \
            const float xv = xb[j];                                                            \
            const WT_T *restrict w = WT + (size_t)j * m + i0;                                  \
            _Pragma("omp simd")                                                                \
            for (int c = 0; c < BLK; c++) acc[c] += xv * LOAD(w[c]);                           \
        }                                                                                      \
        for (int c = 0; c < BLK; c++) o[c] = acc[c];                                           \
    }                                                                                          \
}                                                                                              \
static void NAME(int nb, int j0, int j1, int m, int lo, int hi, const WT_T *restrict WT,       \
                 const float *restrict x, int xstride, float *restrict out, int ostride) {     \
    int i0 = lo;                                                                               \
    for (; i0 + 64 <= hi; i0 += 64) NAME##_block(64, nb, j0, j1, m, i0, WT, x, xstride, out, ostride); \
    for (; i0 + 16 <= hi; i0 += 16) NAME##_block(16, nb, j0, j1, m, i0, WT, x, xstride, out, ostride); \
    for (int j = j0; j < j1 && i0 < hi; j++) {                                                 \
        const WT_T *restrict w = WT + (size_t)j * m;                                           \
        for (int b = 0; b < nb; b++) {                                                         \
            const float xv = x[(size_t)b * xstride + j];                                       \
            float *restrict o = out + (size_t)b * ostride;                                     \
            for (int i = i0; i < hi; i++) o[i] += xv * LOAD(w[i]);                             \
        }                                                                                      \
    }                                                                                          \
}
#define LOAD_F32(v) (v)
DEFINE_MATVEC(matvec_f32, float, LOAD_F32)
DEFINE_MATVEC(matvec_bf16, uint16_t, sps_bf16)

/* A weight matrix of either precision (bf16 set once per call). */
static inline void matvec_acc(int bf16, int nb, int j0, int j1, int m, int lo, int hi, const void *WT,
                              size_t offset, const float *x, int xstride, float *out, int ostride) {
    if (bf16) matvec_bf16(nb, j0, j1, m, lo, hi, (const uint16_t *)WT + offset, x, xstride, out, ostride);
    else matvec_f32(nb, j0, j1, m, lo, hi, (const float *)WT + offset, x, xstride, out, ostride);
}

/* A barrier for the k threads of one group: sense reversal on one cache line; waiting
   threads pause, then yield the core (a busy machine must not stall on a descheduled peer). */
typedef struct { int count; int sense; char pad[56]; } group_barrier;

static void barrier_wait(group_barrier *g, int k, int *local_sense) {
    if (k <= 1) return;
    const int s = !*local_sense;
    *local_sense = s;
    if (__atomic_add_fetch(&g->count, 1, __ATOMIC_ACQ_REL) == k) {
        __atomic_store_n(&g->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&g->sense, s, __ATOMIC_RELEASE);
    } else {
        int spins = 0;
        while (__atomic_load_n(&g->sense, __ATOMIC_ACQUIRE) != s) {
            if (++spins > 4000) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
            else __builtin_ia32_pause();
#endif
        }
    }
}

/* Threads form G = min(threads, B) groups of k; group g generates streams [b0, b1) in
   lockstep (a weight row loaded into cache serves all of them). The k threads of a
   group split every matrix, so each one's weight slice stays in its own core's cache:
   member q owns gate units [r0, r1) (rows r and R + r of the dilated convolutions,
   hence z[r0:r1]), inputs [r0, r1) of the skip and residual products (partial sums,
   combined after a barrier), output classes [a0, a1) of W_out and inputs [a0, a1) of
   W_end. Cheap vector work (embedding, x update, softmax, sampling) is repeated by
   every member in the same order, so all hold identical values. Barriers per sample:
   one per residual layer, two at the output (none when k = 1). */
/* The LPC variant (sps/vocoders/wavenet/lpc.py): layer-0 input from the four mu-law
   excitation inputs (sps/native/excitation.h) through the tables E (4, A, R); the class
   drawn is the excitation; per-frame LPC, pitch lag and inverse temperature. */
typedef struct {
    const float *E;                 /* (4, A, R) input embeddings */
    const float *a, *lag, *itemp;   /* (B, T, p), (B, T), (B, T) */
    float *ring_s, *ring_e;         /* (B, HL) excitation state, kept between calls */
    float *out_s;                   /* (B, n) pre-emphasised samples */
    const float *ph, *wph;          /* (B, n, 2) pitch-phase inputs of the chunk, (R, 2) weights; or NULL */
    const float *pd;                /* (B, n) pulse train of the chunk added to the excitation, or NULL */
    int T, hop, p, HL;
} lpc_args;

static int wavenet_core(int B, int n, int A, int R, int S, int L, int D1, const int *dil,
                const float *Ep, const float *Ec, int embed_tanh, int bf16, /* bf16: the matrices below */
                const void *WprevT, const void *WcurT,            /* L x R x 2R */
                const void *WresT, const float *bres,             /* (L-1) x R x R, (L-1) x R */
                const void *WskipT, const float *bskip,           /* L x R x S, S (summed) */
                const void *WoutT, const void *WendT,             /* S x A, A x A */
                const float *cond,                                /* B x n x L x 2R (all gate biases) */
                const float *u, float inv_temp, int argmax,      /* B x n */
                float *buf, int *yprev, int *ycurr, long long t0, /* buf: B x L x D1 x R, D1 > max dil */
                int *out, int nthreads, const lpc_args *lp) {
    const int R2 = 2 * R;
    if (A > 1024 || B < 1) return SPS_EINVAL;
    if (lp && (lp->HL & (lp->HL - 1))) return SPS_EINVAL;
    if (nthreads < 1) nthreads = 1;
    const int G = nthreads < B ? nthreads : B;
    int k = nthreads / G;
    if (k > R / 4) k = R / 4 > 0 ? R / 4 : 1;
    const int nt = G * k;
    float *pres = malloc(sizeof(float) * 2 * (size_t)nt * B * R);
    float *psk = malloc(sizeof(float) * (size_t)nt * B * S);
    float *plg = malloc(sizeof(float) * (size_t)nt * B * A);
    group_barrier *bars = calloc((size_t)G, sizeof(group_barrier));
    int fail = !pres || !psk || !plg || !bars;
    if (!fail) {
    #pragma omp parallel num_threads(nt)
    {
        const int p = omp_get_thread_num();
        const int g = p / k, q = p % k, gp0 = g * k;    /* group, rank in group, first member */
        const int b0 = B * g / G, b1 = B * (g + 1) / G, nb = b1 - b0;
        const int r0 = R * q / k, r1 = R * (q + 1) / k, a0 = A * q / k, a1 = A * (q + 1) / k;
        group_barrier *bar = bars + g;
        int sense = 0;
        float *x = malloc(sizeof(float) * (size_t)nb * R);
        float *xp = malloc(sizeof(float) * (size_t)nb * R);
        float *h = malloc(sizeof(float) * (size_t)nb * R2);
        float *z = malloc(sizeof(float) * (size_t)nb * R);
        float *sk = malloc(sizeof(float) * (size_t)nb * S);
        float *o1 = malloc(sizeof(float) * (size_t)nb * A);
        float *lg = malloc(sizeof(float) * (size_t)nb * A);
        int *yp = malloc(sizeof(int) * (size_t)nb), *yc = malloc(sizeof(int) * (size_t)nb);
        /* LPC: every member keeps its own copy of the excitation history (identical values) */
        float *ring = lp ? malloc(sizeof(float) * 2 * (size_t)nb * (lp ? lp->HL : 1) + sizeof(float) * 256) : 0;
        exc_state *st = lp ? malloc(sizeof(exc_state) * (size_t)nb) : 0;
        int ok = x && xp && h && z && sk && o1 && lg && yp && yc && (!lp || (ring && st));
        #pragma omp atomic update
        fail += !ok;
        #pragma omp barrier
        if (!fail) {
            /* partial sums of member m of this group for local stream j: base + (m * B + b0 + j) * dim */
            float *mysk = psk + ((size_t)p * B + b0) * S, *mylg = plg + ((size_t)p * B + b0) * A;
            float *table = 0;
            if (lp) {
                const size_t HL = (size_t)lp->HL;
                table = ring + 2 * (size_t)nb * HL;
                mulaw_table(table);
                for (int b = 0; b < nb; b++) {
                    st[b].s = ring + 2 * (size_t)b * HL;
                    st[b].e = st[b].s + HL;
                    st[b].mask = lp->HL - 1;
                    memcpy(st[b].s, lp->ring_s + (size_t)(b0 + b) * HL, sizeof(float) * HL);
                    memcpy(st[b].e, lp->ring_e + (size_t)(b0 + b) * HL, sizeof(float) * HL);
                }
            } else {
                memcpy(yp, yprev + b0, sizeof(int) * nb);
                memcpy(yc, ycurr + b0, sizeof(int) * nb);
            }
            for (int i = 0; i < n; i++) {
                const long long t = t0 + i;
                const int ws = (int)(t % D1);
                int fr = 0;
                if (lp) {
                    fr = (int)((t + lp->hop / 2) / lp->hop);
                    fr = fr < lp->T ? fr : lp->T - 1;
                }
                for (int b = 0; b < nb; b++) {
                    float *xb = x + (size_t)b * R;
                    if (lp) {
                        const size_t row = (size_t)(b0 + b) * lp->T + fr;
                        int qi[EXC_INPUTS];
                        exc_inputs(&st[b], t, lp->a + row * lp->p, lp->p, lp->lag[row], qi);
                        const float *e0 = lp->E + (size_t)qi[0] * R;
                        for (int r = 0; r < R; r++) xb[r] = e0[r];
                        for (int j = 1; j < EXC_INPUTS; j++) {
                            const float *ej = lp->E + ((size_t)j * A + qi[j]) * R;
                            for (int r = 0; r < R; r++) xb[r] = xb[r] + ej[r];
                        }
                        if (lp->ph) {
                            const float *pv = lp->ph + ((size_t)(b0 + b) * n + i) * 2;
                            for (int r = 0; r < R; r++)
                                xb[r] = xb[r] + (lp->wph[2 * r] * pv[0] + lp->wph[2 * r + 1] * pv[1]);
                        }
                    } else {
                        const float *ep = Ep + (size_t)yp[b] * R, *ec = Ec + (size_t)yc[b] * R;
                        for (int r = 0; r < R; r++) xb[r] = ep[r] + ec[r];
                    }
                    if (embed_tanh) {
                        #pragma omp simd
                        for (int r = 0; r < R; r++) xb[r] = sps_tanh(xb[r]);
                    }
                }
                memset(mysk, 0, sizeof(float) * (size_t)nb * S);
                for (int l = 0; l < L; l++) {
                    const int rs = (int)(((t - dil[l]) % D1 + D1) % D1);
                    for (int b = 0; b < nb; b++) {
                        float *ring = buf + ((size_t)(b0 + b) * L + l) * (size_t)D1 * R;
                        memcpy(xp + (size_t)b * R, ring + (size_t)rs * R, sizeof(float) * R);
                        if (q == 0) memcpy(ring + (size_t)ws * R, x + (size_t)b * R, sizeof(float) * R);
                        const float *cb = cond + (((size_t)(b0 + b) * n + i) * L + l) * R2;
                        float *hb = h + (size_t)b * R2;
                        memcpy(hb + r0, cb + r0, sizeof(float) * (r1 - r0));
                        memcpy(hb + R + r0, cb + R + r0, sizeof(float) * (r1 - r0));
                    }
                    const size_t lw = (size_t)l * R * R2;
                    matvec_acc(bf16, nb, 0, R, R2, r0, r1, WcurT, lw, x, R, h, R2);
                    matvec_acc(bf16, nb, 0, R, R2, R + r0, R + r1, WcurT, lw, x, R, h, R2);
                    matvec_acc(bf16, nb, 0, R, R2, r0, r1, WprevT, lw, xp, R, h, R2);
                    matvec_acc(bf16, nb, 0, R, R2, R + r0, R + r1, WprevT, lw, xp, R, h, R2);
                    for (int b = 0; b < nb; b++) {
                        const float *hb = h + (size_t)b * R2;
                        float *zb = z + (size_t)b * R;
                        #pragma omp simd
                        for (int r = r0; r < r1; r++) zb[r] = sps_tanh(hb[r]) * sps_sigmoid(hb[R + r]);
                    }
                    matvec_acc(bf16, nb, r0, r1, S, 0, S, WskipT, (size_t)l * R * S, z, R, mysk, S);
                    if (l < L - 1) {
                        /* double-buffered by layer parity: a fast member never overwrites
                           partials a slow member is still reading */
                        float *P = pres + (size_t)(l & 1) * nt * B * R;
                        float *myP = P + ((size_t)p * B + b0) * R;
                        memset(myP, 0, sizeof(float) * (size_t)nb * R);
                        matvec_acc(bf16, nb, r0, r1, R, 0, R, WresT, (size_t)l * R * R, z, R, myP, R);
                        barrier_wait(bar, k, &sense);
                        const float *br = bres + (size_t)l * R;
                        for (int b = 0; b < nb; b++) {
                            float *xb = x + (size_t)b * R;
                            for (int r = 0; r < R; r++) xb[r] += br[r];
                            for (int m = 0; m < k; m++) {
                                const float *pm = P + ((size_t)(gp0 + m) * B + b0 + b) * R;
                                for (int r = 0; r < R; r++) xb[r] += pm[r];
                            }
                        }
                    }
                }
                barrier_wait(bar, k, &sense);
                for (int b = 0; b < nb; b++) {
                    float *s = sk + (size_t)b * S;
                    memcpy(s, bskip, sizeof(float) * S);
                    for (int m = 0; m < k; m++) {
                        const float *pm = psk + ((size_t)(gp0 + m) * B + b0 + b) * S;
                        for (int c = 0; c < S; c++) s[c] += pm[c];
                    }
                    for (int c = 0; c < S; c++) s[c] = s[c] > 0.0f ? s[c] : 0.0f;
                    memset(o1 + (size_t)b * A, 0, sizeof(float) * A);
                }
                matvec_acc(bf16, nb, 0, S, A, a0, a1, WoutT, 0, sk, S, o1, A);
                for (int b = 0; b < nb; b++) {
                    float *ob = o1 + (size_t)b * A;
                    for (int a = a0; a < a1; a++) ob[a] = ob[a] > 0.0f ? ob[a] : 0.0f;
                }
                memset(mylg, 0, sizeof(float) * (size_t)nb * A);
                matvec_acc(bf16, nb, a0, a1, A, 0, A, WendT, 0, o1, A, mylg, A);
                barrier_wait(bar, k, &sense);
                for (int b = 0; b < nb; b++) {
                    float *lb = lg + (size_t)b * A;
                    memcpy(lb, plg + ((size_t)gp0 * B + b0 + b) * A, sizeof(float) * A);
                    for (int m = 1; m < k; m++) {
                        const float *pm = plg + ((size_t)(gp0 + m) * B + b0 + b) * A;
                        for (int a = 0; a < A; a++) lb[a] += pm[a];
                    }
                    int y = 0;
                    const float itemp = lp ? lp->itemp[(size_t)(b0 + b) * lp->T + fr] : inv_temp;
                    if (argmax) {
                        for (int a = 1; a < A; a++) if (lb[a] > lb[y]) y = a;
                    } else {
                        y = sps_sample(lb, A, itemp, u[(size_t)(b0 + b) * n + i]);
                    }
                    if (q == 0) out[(size_t)(b0 + b) * n + i] = y;
                    if (lp) {
                        const float ev = lp->pd ? table[y] + lp->pd[(size_t)(b0 + b) * n + i] : table[y];
                        const float sv = exc_push(&st[b], t, ev);
                        if (q == 0) lp->out_s[(size_t)(b0 + b) * n + i] = sv;
                    } else {
                        yp[b] = yc[b];
                        yc[b] = y;
                    }
                }
            }
            if (q == 0 && lp) {
                const size_t HL = (size_t)lp->HL;
                for (int b = 0; b < nb; b++) {
                    memcpy(lp->ring_s + (size_t)(b0 + b) * HL, st[b].s, sizeof(float) * HL);
                    memcpy(lp->ring_e + (size_t)(b0 + b) * HL, st[b].e, sizeof(float) * HL);
                }
            } else if (q == 0) {
                memcpy(yprev + b0, yp, sizeof(int) * nb);
                memcpy(ycurr + b0, yc, sizeof(int) * nb);
            }
        }
        free(x); free(xp); free(h); free(z); free(sk); free(o1); free(lg); free(yp); free(yc);
        free(ring); free(st);
    }
    }
    free(pres); free(psk); free(plg); free(bars);
    return fail ? SPS_ENOMEM : SPS_OK;
}

static int has_stack(const wavenet_weights *w) {
    return (w->bf16 == 0 || w->bf16 == 1) && w->dil && w->WprevT && w->WcurT
        && (w->L < 2 || (w->WresT && w->bres)) && w->WskipT && w->bskip && w->WoutT && w->WendT && w->A > 0 && w->R > 0 && w->S > 0 && w->L > 0 && w->D1 > 1;
}

static int has_chunk(const wavenet_chunk *c) {
    return c->B > 0 && c->n >= 0 && c->cond && c->u && c->buf && c->out;
}

int wavenet_run(const wavenet_weights *w, const wavenet_chunk *c) {
    if (!w || !c || !has_stack(w) || !has_chunk(c) || !w->Ep || !w->Ec || !c->yprev || !c->ycurr)
        return SPS_EINVAL;
    return wavenet_core(c->B, c->n, w->A, w->R, w->S, w->L, w->D1, w->dil, w->Ep, w->Ec, w->embed_tanh, w->bf16,
                        w->WprevT, w->WcurT, w->WresT, w->bres, w->WskipT, w->bskip, w->WoutT, w->WendT,
                        c->cond, c->u, c->inv_temp, c->argmax, c->buf, c->yprev, c->ycurr, c->t0,
                        c->out, c->nthreads, 0);
}

int wavenet_lpc_run(const wavenet_weights *w, const wavenet_chunk *c, const wavenet_lpc *l) {
    if (!w || !c || !l || !has_stack(w) || !has_chunk(c) || !w->E || !l->a || !l->lag || !l->itemp
        || !l->ring_s || !l->ring_e || !l->out_s || (!l->ph != !w->wph) || l->T < 1 || l->hop < 1
        || l->p < 1 || l->HL < 1)
        return SPS_EINVAL;
    const lpc_args lp = {w->E, l->a, l->lag, l->itemp, l->ring_s, l->ring_e, l->out_s, l->ph, w->wph,
                         l->pd, l->T, l->hop, l->p, l->HL};
    return wavenet_core(c->B, c->n, w->A, w->R, w->S, w->L, w->D1, w->dil, 0, 0, w->embed_tanh, w->bf16,
                        w->WprevT, w->WcurT, w->WresT, w->bres, w->WskipT, w->bskip, w->WoutT, w->WendT,
                        c->cond, c->u, 1.0f, 0, c->buf, 0, 0, c->t0, c->out, c->nthreads, &lp);
}
