/* A weight matrix as the WaveRNN kernels take it (products in gemv.h); mirrored by
   sps.native.structs.SpsMat. */
#ifndef SPS_MAT_H
#define SPS_MAT_H
#include <stdint.h>

/* dense (packed: see gemv.h) or block-sparse (16 x 1 blocks, CSR) */
typedef struct {
    int sparse, bf16;
    const void *w;                      /* dense: packed weights; sparse: block values */
    const int32_t *ptr, *idx;           /* sparse only */
} sps_mat;

#endif
