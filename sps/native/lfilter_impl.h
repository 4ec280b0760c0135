
/* ---------- fast path: time-invariant, padded order K <= KMAX, L rows at once ---------- */
typedef struct {
    const REAL *x, *gy, *y, *zi;
    REAL *out, *dx, *dzi, *db, *da;
    REAL bp[KMAX + 1], ap[KMAX + 1];  /* b_0..b_K and (unused) a_0, a_1..a_K, zero padded */
} FN(row);

static inline __attribute__((always_inline)) void FN(fwd_fast)(FN(row) *rw, int64_t T,
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

static inline __attribute__((always_inline)) void FN(bwd_fast)(FN(row) *rw, int M, int N,
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
static void FN(fwd_generic)(const REAL *restrict x, const REAL *restrict b, int64_t b_ts, int M,
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

static void FN(bwd_generic)(const REAL *restrict gy, const REAL *restrict x, const REAL *restrict y,
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
static void FN(setup_row)(FN(row) *rw, int64_t r, const REAL *x, const int64_t *xidx,
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

int FN(lfilter_fwd)(const REAL *x, const int64_t *xidx,
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
                FN(fwd_generic)(x + xidx[r] * T, b + bidx[r] * b_rs, b_ts, M, a + aidx[r] * a_rs,
                                a_ts, N, zi ? zi + r * K : 0, K, y + r * T, T);
            continue;
        }
        FN(row) rw[LANES];
        for (int l = 0; l < L; l++) {
            int64_t r = r0 + l;
            FN(setup_row)(&rw[l], r, x, xidx, b, bidx, b_rs, M, a, aidx, a_rs, N, T);
            rw[l].zi = zi ? zi + r * K : 0;
            rw[l].out = y + r * T;
        }
        if (L == LANES) {
            DISPATCH(FN(fwd_fast), LANES, rw, T)
        } else {
            for (int l = 0; l < L; l++) DISPATCH(FN(fwd_fast), 1, &rw[l], T)
        }
    }
    return SPS_OK;
}

/* g may be NULL on the fast path; dx, dzi may be NULL.  db is (R, Tb, M), da (R, Ta, N). */
int FN(lfilter_bwd)(const REAL *gy, const REAL *x, const int64_t *xidx, const REAL *y,
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
                FN(bwd_generic)(gy + r * T, x + xidx[r] * T, y + r * T, b + bidx[r] * b_rs, b_ts, M,
                                a + aidx[r] * a_rs, a_ts, N, K, g + r * T, dx ? dx + r * T : 0,
                                db + r * db_rs, da + r * da_rs, dzi ? dzi + r * K : 0, T);
            continue;
        }
        FN(row) rw[LANES];
        for (int l = 0; l < L; l++) {
            int64_t r = r0 + l;
            FN(setup_row)(&rw[l], r, x, xidx, b, bidx, b_rs, M, a, aidx, a_rs, N, T);
            rw[l].gy = gy + r * T; rw[l].y = y + r * T;
            rw[l].dx = dx ? dx + r * T : 0; rw[l].dzi = dzi ? dzi + r * K : 0;
            rw[l].db = db + r * db_rs; rw[l].da = da + r * da_rs;
        }
        if (L == LANES) {
            DISPATCH(FN(bwd_fast), LANES, rw, M, N, T)
        } else {
            for (int l = 0; l < L; l++) DISPATCH(FN(bwd_fast), 1, &rw[l], M, N, T)
        }
    }
    return SPS_OK;
}
