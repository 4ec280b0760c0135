/* HMM forced alignment on banded state chains (sps/align/hmm.py has the same maths in
   PyTorch): log-space forward-backward and Viterbi with beam pruning.

   One utterance is a chain of N states; state j is entered from itself, from j - 1 and
   from skip[j] (-1: none) with the log probabilities trans[3 j + 0..2]. A path starts
   in state 0 at frame 0 and ends in state N - 1 at frame T - 1. At every frame, states
   whose forward score falls more than `beam` below the frame's best are dropped (HTK's
   pruning: the best may be a state that can no longer finish in time, t + rest[j] >
   T - 1, which is dropped too, so a search that ran ahead or fell behind ends in a beam
   failure). The forward pass keeps, for every frame, the window [lo, hi] of states it
   kept, and the backward pass visits only those.

   Batch layout (padded, row-major): log_b [B, Tmax, Nmax], trans [B, Nmax, 3],
   skip/earliest/rest [B, Nmax] (int64), num_frames/num_states [B]. OpenMP runs the
   utterances of a batch in parallel. Everything is float64. */
#include <stdlib.h>

#include "common.h"

#define NEG (-INFINITY)

static inline double lse3(double a, double b, double c) {
    double m = a > b ? a : b;
    m = m > c ? m : c;
    if (m == NEG) return NEG;
    return m + log(exp(a - m) + exp(b - m) + exp(c - m));
}

static inline double lse2(double a, double b) {
    double m = a > b ? a : b;
    if (m == NEG) return NEG;
    return m + log(exp(a - m) + exp(b - m));
}

static inline double max3(double a, double b, double c, int *arg) {
    double m = a;
    *arg = 0;
    if (b > m) { m = b; *arg = 1; }
    if (c > m) { m = c; *arg = 2; }
    return m;
}

/* The forward (or Viterbi, max instead of sum) pass of one utterance.
   alpha: [T, ld] rows (or, with `ring`, two rows used in turn), meaningful inside the
   windows only (0 elsewhere); lo/hi: [T] windows; back: [T, ld] int8 slot of the best
   predecessor (Viterbi only, else NULL).
   Returns 0, or 1 when the beam left no state at some frame. */
static int forward_one(int64_t T, int64_t N, int64_t ld, const double *log_b, const double *trans,
                       const int64_t *skip, const int64_t *earliest, const int64_t *rest,
                       int64_t max_jump, double beam, int viterbi, int ring,
                       double *alpha, int64_t *lo, int64_t *hi, int8_t *back) {
    lo[0] = 0;
    hi[0] = 0;
    alpha[0] = (earliest[0] <= 0 && rest[0] <= T - 1) ? log_b[0] : NEG;
    if (alpha[0] == NEG) return 1;
    for (int64_t t = 1; t < T; t++) {
        const double *prev = alpha + (ring ? ((t - 1) & 1) : t - 1) * ld;
        double *cur = alpha + (ring ? (t & 1) : t) * ld;
        const double *lb = log_b + t * ld;
        const int64_t plo = lo[t - 1], phi = hi[t - 1];
        const int64_t end = phi + max_jump < N - 1 ? phi + max_jump : N - 1;
        double best = NEG;
        for (int64_t j = plo; j <= end; j++) {
            double v = NEG;
            if (earliest[j] <= t) {
                const double *tr = trans + 3 * j;
                const double a = (j <= phi) ? prev[j] + tr[0] : NEG;
                const double b = (j - 1 >= plo && j - 1 <= phi) ? prev[j - 1] + tr[1] : NEG;
                const int64_t s = skip[j];
                const double c = (s >= plo && s <= phi) ? prev[s] + tr[2] : NEG;
                if (viterbi) {
                    int arg;
                    v = max3(a, b, c, &arg);
                    back[t * ld + j] = (int8_t)arg;
                } else {
                    v = lse3(a, b, c);
                }
                if (v != NEG) v += lb[j];
            }
            cur[j] = v;
            if (v > best) best = v;
        }
        if (best == NEG) return 1;
        const double floor = best - beam;   /* beam = inf gives -inf: nothing pruned */
        int64_t nlo = -1, nhi = -1;
        for (int64_t j = plo; j <= end; j++) {
            if (cur[j] < floor || t + rest[j] > T - 1) cur[j] = NEG;
            if (cur[j] != NEG) {
                if (nlo < 0) nlo = j;
                nhi = j;
            }
        }
        for (int64_t j = plo; j < nlo; j++) cur[j] = 0.0;
        for (int64_t j = nhi + 1; j <= end; j++) cur[j] = 0.0;
        if (nlo < 0) return 1;              /* the beam kept only states that cannot finish */
        lo[t] = nlo;
        hi[t] = nhi;
    }
    return 0;
}

static int64_t jump(int64_t N, const int64_t *skip) {
    int64_t m = 1;
    for (int64_t j = 0; j < N; j++)
        if (skip[j] >= 0 && j - skip[j] > m) m = j - skip[j];
    return m;
}

/* One utterance of a padded batch. */
typedef struct {
    int64_t T, N, ld;
    const double *log_b, *trans;
    const int64_t *skip, *earliest, *rest;
} Chain;

static Chain chain(int64_t b, const double *log_b, const double *trans, const int64_t *skip,
                   const int64_t *earliest, const int64_t *rest, const int64_t *num_frames,
                   const int64_t *num_states, int64_t Tmax, int64_t Nmax) {
    Chain c = {num_frames[b], num_states[b], Nmax, log_b + b * Tmax * Nmax, trans + b * Nmax * 3,
               skip + b * Nmax, earliest + b * Nmax, rest + b * Nmax};
    return c;
}

static int check_sizes(int64_t B, int64_t Tmax, int64_t Nmax, const int64_t *num_frames, const int64_t *num_states) {
    if (B < 0 || Tmax < 1 || Nmax < 1) return SPS_EINVAL;
    for (int64_t b = 0; b < B; b++)
        if (num_frames[b] < 1 || num_frames[b] > Tmax || num_states[b] < 1 || num_states[b] > Nmax)
            return SPS_EINVAL;
    return SPS_OK;
}

/* gamma [B, Tmax, Nmax] must be zero on entry (it holds the forward scores meanwhile);
   entries [B, Nmax] zero on entry; loglik [B]. */
int align_forward_backward(const double *log_b, const double *trans, const int64_t *skip,
                           const int64_t *earliest, const int64_t *rest, const int64_t *num_frames,
                           const int64_t *num_states, int64_t B, int64_t Tmax, int64_t Nmax, double beam,
                           double *gamma, double *entries, double *loglik, int nthreads) {
    int status = check_sizes(B, Tmax, Nmax, num_frames, num_states);
    if (status != SPS_OK) return status;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t b = 0; b < B; b++) {
        const Chain c = chain(b, log_b, trans, skip, earliest, rest, num_frames, num_states, Tmax, Nmax);
        const int64_t T = c.T, N = c.N, ld = c.ld;
        const double *lb = c.log_b, *tr = c.trans;
        const int64_t *sk = c.skip;
        double *al = gamma + b * Tmax * Nmax;      /* forward scores, then occupancies */
        double *en = entries + b * Nmax;
        int64_t *lo = malloc(sizeof(int64_t) * 2 * T);
        int64_t *target = malloc(sizeof(int64_t) * N);
        double *bcur = malloc(sizeof(double) * 2 * N);
        double *enext = malloc(sizeof(double) * N);
        if (!lo || !target || !bcur || !enext) {
            free(lo); free(target); free(bcur); free(enext);
            #pragma omp atomic write
            status = SPS_ENOMEM;
            continue;
        }
        int64_t *hi = lo + T;
        double *bnext = bcur + N;
        loglik[b] = NEG;
        int failed = forward_one(T, N, ld, lb, tr, sk, c.earliest, c.rest, jump(N, sk), beam, 0, 0, al, lo, hi, NULL);
        const double *last = al + (T - 1) * ld;
        if (!failed && lo[T - 1] <= N - 1 && N - 1 <= hi[T - 1] && last[N - 1] != NEG) {
            const double ll = last[N - 1];
            loglik[b] = ll;
            for (int64_t j = 0; j < N; j++) target[j] = -1;
            for (int64_t j = 0; j < N; j++)
                if (sk[j] >= 0) target[sk[j]] = j;
            int64_t nlo = 0, nhi = -1;   /* window of bnext/enext (frame t + 1) */
            for (int64_t t = T - 1; t >= 0; t--) {
                double *row = al + t * ld;
                const double *lbt = lb + t * ld;
                const int64_t clo = lo[t], chi = hi[t];
                /* beta at frame t over the forward window */
                for (int64_t i = clo; i <= chi; i++) {
                    double v = NEG;
                    if (row[i] != NEG) {
                        if (t == T - 1) {
                            v = (i == N - 1) ? 0.0 : NEG;
                        } else {
                            const double a = (i >= nlo && i <= nhi) ? tr[3 * i] + enext[i] : NEG;
                            const double c = (i + 1 >= nlo && i + 1 <= nhi) ? tr[3 * (i + 1) + 1] + enext[i + 1] : NEG;
                            const int64_t g = target[i];
                            const double d = (g >= nlo && g <= nhi) ? tr[3 * g + 2] + enext[g] : NEG;
                            v = lse3(a, c, d);
                        }
                    }
                    bcur[i] = v;
                }
                /* entries into j at frame t (from j - 1 or skip[j] at frame t - 1) */
                if (t > 0) {
                    const double *prow = al + (t - 1) * ld;
                    const int64_t plo = lo[t - 1], phi = hi[t - 1];
                    for (int64_t j = clo; j <= chi; j++) {
                        if (bcur[j] == NEG) continue;
                        const double a = (j - 1 >= plo && j - 1 <= phi) ? prow[j - 1] + tr[3 * j + 1] : NEG;
                        const int64_t s = sk[j];
                        const double c = (s >= plo && s <= phi) ? prow[s] + tr[3 * j + 2] : NEG;
                        const double x = lse2(a, c);
                        if (x != NEG) en[j] += exp(x + lbt[j] + bcur[j] - ll);
                    }
                }
                /* occupancies replace the forward scores of frame t */
                for (int64_t i = clo; i <= chi; i++) {
                    const double v = (row[i] != NEG && bcur[i] != NEG) ? exp(row[i] + bcur[i] - ll) : 0.0;
                    enext[i] = (bcur[i] != NEG) ? lbt[i] + bcur[i] : NEG;
                    row[i] = v;
                }
                nlo = clo;
                nhi = chi;
                double *sw = bcur; bcur = bnext; bnext = sw;
            }
        } else {
            /* beam failure: zero occupancies */
            for (int64_t t = 0; t < T; t++) {
                double *row = al + t * ld;
                for (int64_t j = 0; j < N; j++) row[j] = 0.0;
            }
        }
        free(lo); free(target); free(bcur < bnext ? bcur : bnext); free(enext);
    }
    return status;
}

/* path [B, Tmax] (int64, -1 beyond num_frames and for a failure); score [B]. */
int align_viterbi(const double *log_b, const double *trans, const int64_t *skip, const int64_t *earliest,
                  const int64_t *rest, const int64_t *num_frames, const int64_t *num_states, int64_t B,
                  int64_t Tmax, int64_t Nmax, double beam, int64_t *path, double *score, int nthreads) {
    int status = check_sizes(B, Tmax, Nmax, num_frames, num_states);
    if (status != SPS_OK) return status;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t b = 0; b < B; b++) {
        const Chain c = chain(b, log_b, trans, skip, earliest, rest, num_frames, num_states, Tmax, Nmax);
        const int64_t T = c.T, N = c.N, ld = c.ld;
        const int64_t *sk = c.skip;
        int64_t *p = path + b * Tmax;
        for (int64_t t = 0; t < Tmax; t++) p[t] = -1;
        score[b] = NEG;
        double *delta = malloc(sizeof(double) * 2 * ld);
        int8_t *back = malloc((size_t)T * ld);
        int64_t *lo = malloc(sizeof(int64_t) * 2 * T);
        if (!delta || !back || !lo) {
            free(delta); free(back); free(lo);
            #pragma omp atomic write
            status = SPS_ENOMEM;
            continue;
        }
        int64_t *hi = lo + T;
        int failed = forward_one(T, N, ld, c.log_b, c.trans, sk, c.earliest, c.rest, jump(N, sk), beam, 1, 1,
                                 delta, lo, hi, back);
        const double *last = delta + ((T - 1) & 1) * ld;
        if (!failed && lo[T - 1] <= N - 1 && N - 1 <= hi[T - 1] && last[N - 1] != NEG) {
            score[b] = last[N - 1];
            int64_t j = N - 1;
            for (int64_t t = T - 1; t >= 0; t--) {
                p[t] = j;
                if (t) {
                    const int8_t slot = back[t * ld + j];
                    j = slot == 0 ? j : (slot == 1 ? j - 1 : sk[j]);
                }
            }
        }
        free(delta); free(back); free(lo);
    }
    return status;
}
