/* Batched banded LDL^T solve and fused CPU MLPG (see sps/mlpg/native.py). */
#include "common.h"


#define CH 64
#define PAR_MIN 200000  /* below this much work a parallel region costs more than it saves */

/* does window w carry precision at frame f (edge rule, padding)? */
static int used(int64_t f, int64_t w, int64_t len, const int64_t *edge) {
    return f >= edge[w] && f < len - edge[w];
}

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

#define REAL float
#define FN(name) CAT(name, _f32)
#include "banded_impl.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) CAT(name, _f64)
#include "banded_impl.h"
#undef REAL
#undef FN
