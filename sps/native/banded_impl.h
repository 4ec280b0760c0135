
/* one factorisation step for n lanes: A[k][c] = A[t][t-k] -> factor row t
   (F0 points at t = 0 of this block; f1, f2, f3: time, k, lane strides) */
static int64_t FN(factor_row)(REAL A[][CH], REAL u[][CH], REAL *F0, int64_t f1, int64_t f2,
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
    int ok = 1;
    for (int64_t c = 0; c < n; c++) {
        F[c * f3] = 1 / v[c];
        ok &= v[c] > 0;               /* false for NaN too */
    }
    if (ok)
        return -1;
    for (int64_t c = 0; c < n; c++)
        if (!(v[c] > 0)) return c;
    return -1;
}

/* keep the smallest flat index of a bad entry seen by any thread */
static void FN(note_bad)(int64_t *bad, int64_t idx) {
    #pragma omp critical(sps_note_bad)
    if (*bad < 0 || idx < *bad) *bad = idx;
}

/* forward substitution step: X[t] = r - sum_k L[t][t-k] X[t-k] */
static void FN(forward_sub)(const REAL *F0, int64_t f1, int64_t f2, int64_t f3, REAL *X0,
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
static void FN(back_sub)(const REAL *F0, int64_t f1, int64_t f2, int64_t f3, REAL *X0,
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
   factorize: fac is computed from band, else read (strides may be 0 = broadcast).
   A non-positive pivot (the matrix is not positive definite) sets *bad to the smallest
   (o * T + t) * NI + i of such a row and returns SPS_ENOTPD. */
int FN(ldl_solve)(const REAL *band, const int64_t *sb, const REAL *rhs, const int64_t *sr,
                   REAL *fac, const int64_t *sf, REAL *x, const int64_t *sx, int64_t NO,
                   int64_t T, int64_t K, int64_t NI, int64_t ch, int factorize, int64_t *bad, int nt) {
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
                int64_t c = FN(factor_row)(A, u, F0, sf[1], sf[2], sf[3], t, K, n);
                if (c >= 0) FN(note_bad)(bad, (o * T + t) * NI + i0 + c);
            }
            const REAL *Rt = rhs + o * sr[0] + t * sr[1] + i0 * sr[2];
            for (int64_t c = 0; c < n; c++) r[c] = Rt[c * sr[2]];
            FN(forward_sub)(F0, sf[1], sf[2], sf[3], X0, sx[1], sx[2], r, t, K, n);
        }
        FN(back_sub)(F0, sf[1], sf[2], sf[3], X0, sx[1], sx[2], T, K, n);
    }
    return *bad >= 0 ? SPS_ENOTPD : SPS_OK;
}

/* MLPG forward. mu: (B, T, W*D), contiguous last axis, strides sm (b, t);
   var: like mu with strides sv (b, t) (0 = broadcast) or NULL for unit variances;
   len: (B,) or NULL; fac: (B, T, K, D) written when factorize, else read with
   strides sf; x: (B, T, D) contiguous. Term tables as in sps.mlpg.windows.
   A used entry with a variance that is not positive and finite, or a mean that is not
   finite, sets bad[0] to the smallest flat index (b * T + t) * W * D + w * D + d of one and
   returns SPS_EDOMAIN (the check rides on the loop that forms the precisions); a
   non-positive pivot (only possible with such inputs) sets bad[1]. */
int FN(mlpg_fwd)(const REAL *mu, const int64_t *sm, const REAL *var, const int64_t *sv,
                  const int64_t *len, REAL *fac, const int64_t *sf, int factorize, REAL *x,
                  int64_t B, int64_t T, int64_t W, int64_t D, int64_t K, int64_t ch,
                  const int64_t *edge, int64_t nbt, const int64_t *bt_k, const int64_t *bt_s,
                  const int64_t *bt_w, const double *bt_r, int64_t ntap, const int64_t *tp_w,
                  const int64_t *tp_s, const double *tp_c, int64_t smin, int64_t smax,
                  int64_t *bad, int nt) {
    int64_t nch = (D + ch - 1) / ch, R = smax - smin + 1;
    const REAL big = (REAL)1e300 > (REAL)1e38 ? (REAL)1e300 : (REAL)3.0e38;  /* below inf */
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
                    else {
                        int ok = 1;
                        if (v)
                            for (int64_t c = 0; c < n; c++) {
                                REAL vv = v[w * D + c], mm = m[w * D + c];
                                ok &= (vv > 0) & (vv <= big) & (mm - mm == 0);
                                p[c] = 1 / vv;
                                q[c] = p[c] * mm;
                            }
                        else
                            for (int64_t c = 0; c < n; c++) {
                                REAL mm = m[w * D + c];
                                ok &= mm - mm == 0;
                                p[c] = 1;
                                q[c] = mm;
                            }
                        if (!ok)
                            for (int64_t c = 0; c < n; c++) {
                                REAL vv = v ? v[w * D + c] : 1, mm = m[w * D + c];
                                if (!((vv > 0) & (vv <= big) & (mm - mm == 0))) {
                                    FN(note_bad)(bad, ((b * T + next) * W + w) * D + i0 + c);
                                    break;
                                }
                            }
                    }
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
                if (t >= L)  /* padded frame: a row of the identity, whatever reaches into it */
                    for (int64_t k = 0; k < K; k++)
                        for (int64_t c = 0; c < n; c++) A[k][c] = k == 0;
                int64_t c = FN(factor_row)(A, u, F0, sf[1], sf[2], sf[3], t, K, n);
                if (c >= 0) FN(note_bad)(bad + 1, (b * T + t) * W * D + i0 + c);
            }
            for (int64_t c = 0; c < n; c++) r[c] = 0;
            for (int64_t e = 0; e < ntap && t < L; e++) {  /* padded frames: right-hand side 0 */
                int64_t f = t - tp_s[e];
                if (f < 0 || f >= T) continue;
                const REAL *q = pm[f % R][tp_w[e]];
                REAL cc = (REAL)tp_c[e];
                for (int64_t c = 0; c < n; c++) r[c] += cc * q[c];
            }
            FN(forward_sub)(F0, sf[1], sf[2], sf[3], X0, D, 1, r, t, K, n);
        }
        FN(back_sub)(F0, sf[1], sf[2], sf[3], X0, D, 1, T, K, n);
    }
    return bad[0] >= 0 || bad[1] >= 0 ? SPS_EDOMAIN : SPS_OK;
}

/* MLPG backward: solve A lam = g with the forward factor (strides sf), then
   gmu = P W lam and gvar = -p^2 (W lam) (mu - W x); g counts as 0 on padded frames (their
   outputs are constant). g, x, lam: (B, T, D) contiguous;
   mu/var/len as in mlpg_fwd; gmu, gvar: (B, T, W*D) contiguous (gvar unused when
   var is NULL). */
int FN(mlpg_bwd)(const REAL *g, const REAL *fac, const int64_t *sf, const REAL *x,
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
        REAL *l0 = lam + b * T * D + i0, wl[CH], wx[CH], zero[CH];
        for (int64_t c = 0; c < n; c++) zero[c] = 0;
        for (int64_t t = 0; t < T; t++)
            FN(forward_sub)(F0, sf[1], sf[2], sf[3], l0, D, 1, t < L ? g + (b * T + t) * D + i0 : zero,
                            t, K, n);
        FN(back_sub)(F0, sf[1], sf[2], sf[3], l0, D, 1, T, K, n);
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
                    /* beyond the ends (edge rule "none") lam and x are 0 */
                    if (tp_w[e] != w || t + tp_s[e] < 0 || t + tp_s[e] >= T) continue;
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
    return SPS_OK;
}
