/* The typed boundary of the WaveNet kernels (sps/native/wavenet.c); mirrored field for
   field by the ctypes structures of sps/native/structs.py (tests/test_native.py compares
   sizes and offsets with a compiled offsetof probe). Shapes use the kernel's names:
   B streams, n samples in the chunk, A classes, R residual, S skip channels, L layers,
   D1 = largest dilation + 1 ring slots. */
#ifndef SPS_WAVENET_H
#define SPS_WAVENET_H

/* Weights of the stack (packed by sps.vocoders.wavenet.generate). */
typedef struct {
    int A, R, S, L, D1, embed_tanh;
    int bf16;                          /* the six matrices below hold bfloat16 bit patterns (uint16) */
    const int *dil;                    /* (L,) dilations */
    const float *Ep, *Ec;              /* plain model: (A, R) embeddings of y[t-2], y[t-1]; else NULL */
    const float *E;                    /* LPC model: (4, A, R) embeddings of the excitation inputs; else NULL */
    const float *wph;                  /* LPC model with pitch phase: (R, 2); else NULL */
    const void *WprevT, *WcurT;        /* (L, R, 2R) float32, or bf16 */
    const void *WresT;                 /* (L-1, R, R) */
    const float *bres;                 /* (L-1, R) */
    const void *WskipT;                /* (L, R, S) */
    const float *bskip;                /* (S,) summed */
    const void *WoutT, *WendT;         /* (S, A), (A, A) */
} wavenet_weights;

/* One call: a chunk of n samples of B streams, and the state kept between calls. */
typedef struct {
    int B, n, nthreads, argmax;        /* argmax: plain model only */
    float inv_temp;                    /* plain model only */
    long long t0;                      /* index of the chunk's first sample */
    const float *cond, *u;             /* (B, n, L, 2R) gate biases, (B, n) uniforms */
    float *buf;                        /* (B, L, D1, R) ring buffers of past layer inputs */
    int *yprev, *ycurr;                /* plain model: (B,) classes y[t-2], y[t-1]; else NULL */
    int *out;                          /* (B, n) classes drawn */
} wavenet_chunk;

/* The LPC model's per-frame inputs and excitation state (sps/native/excitation.h). */
typedef struct {
    int T, hop, p, HL;                 /* frames, hop (samples), LPC order, ring length (power of 2) */
    const float *a, *lag, *itemp;      /* (B, T, p), (B, T), (B, T) */
    float *ring_s, *ring_e;            /* (B, HL) excitation state, kept between calls */
    float *out_s;                      /* (B, n) pre-emphasised samples */
    const float *ph;                   /* (B, n, 2) pitch-phase inputs of the chunk, or NULL */
    const float *pd;                   /* (B, n) pulse train added to the excitation, or NULL */
} wavenet_lpc;

int wavenet_run(const wavenet_weights *w, const wavenet_chunk *c);
int wavenet_lpc_run(const wavenet_weights *w, const wavenet_chunk *c, const wavenet_lpc *l);

#endif
