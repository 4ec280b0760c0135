/* The typed boundary of the WaveRNN generation kernels (sps/native/wavernn.c); mirrored
   field for field by the ctypes structures of sps/native/structs.py (tests/test_native.py
   compares sizes and offsets with a compiled offsetof probe). S rows (utterances or
   folded segments), H GRU units, G = 3H gate rows. */
#ifndef SPS_WAVERNN_H
#define SPS_WAVERNN_H
#include <stdint.h>
#include "mat.h"

/* The plain dual-softmax WaveRNN (packed by sps.vocoders.wavernn.generate.gen_weights). */
typedef struct {
    int H;
    const sps_mat *mats;               /* R^T, O1, O2, O3, O4: dense packed or block-sparse */
    const float *Ix, *bias;            /* (3H, 3) inputs c[t-1], f[t-1], c[t]; (3H,) */
    const float *b1, *b2, *b3, *b4;    /* output layer biases (H/2,), (256,), (H/2,), (256,) */
} wavernn_weights;

/* One call of the plain model: every sample of S rows. */
typedef struct {
    int S, hop, T2, nthreads;          /* T2: frames of P (edge-padded by one on each side) */
    long long N;                       /* samples per row */
    float inv_temp;
    const float *P;                    /* (S, T2, 3H) frame projections */
    const float *u;                    /* (S, N, 2) uniforms of the coarse and fine draws */
    int64_t *out;                      /* (S, N, 2) coarse and fine classes */
} wavernn_call;

/* The LPC WaveRNN (packed by sps.vocoders.wavernn.native). */
typedef struct {
    int H;
    const sps_mat *mats;               /* R^T, O1, O2: dense packed or block-sparse */
    const float *E;                    /* (4, 256, 3H) embeddings of the excitation inputs */
    const float *b1, *b2;              /* (256,), (256,) */
    const float *wph;                  /* (3H, 2) pitch-phase weights, or NULL */
} wavernn_lpc_weights;

/* One call of the LPC model: samples [n0, n0 + n) of S rows, and the state kept between
   calls (zeros before sample 0), so generation can stop and resume (streaming). */
typedef struct {
    int S, T, hop, p, HL, nthreads;    /* frames, hop, LPC order, ring length (power of 2) */
    long long n0, n;
    const float *P;                    /* (S, T, 3H) frame projections */
    const float *a, *lag, *itemp;      /* (S, T, p), (S, T), (S, T) */
    const float *u;                    /* (S, n) uniforms of the chunk */
    const float *ph;                   /* (S, n, 2) pitch-phase inputs of the chunk, or NULL */
    const float *pd;                   /* (S, n) pulse train added to the excitation, or NULL */
    float *h;                          /* (S, H) GRU state */
    float *ring_s, *ring_e;            /* (S, HL) excitation state */
    float *out_s;                      /* (S, n) pre-emphasised samples */
    int64_t *out_q;                    /* (S, n) classes */
} wavernn_lpc_chunk;

/* Teacher-forced training of one GRU layer (sps.vocoders.wavernn.rnn): B rows of N steps.
   The forward pass reads xi and RT and writes hs, gates, ghe; the backward pass reads dout,
   R, hs, gates, ghe and writes dxi, dgh, dh0. Unused fields may be NULL. */
typedef struct {
    int B, N, H, nthreads;
    const float *xi;                   /* (B, N, 3H) input projections [r | u | e] */
    const float *RT, *R;               /* (H, 3H) recurrent matrix transposed; (3H, H) */
    float *hs;                         /* (B, N + 1, H) states, hs[:, 0] the initial one */
    float *gates, *ghe;                /* (B, N, 3H) r, u, e; (B, N, H) the e part of R h */
    const float *dout;                 /* (B, N, H) gradient of the outputs hs[:, 1:] */
    float *dxi, *dgh, *dh0;            /* (B, N, 3H), (B, N, 3H), (B, H) gradients */
} gru_seq;

int wavernn_run(const wavernn_weights *w, const wavernn_call *c);
int gru_forward(const gru_seq *s);
int gru_backward(const gru_seq *s);
int wavernn_lpc_run(const wavernn_lpc_weights *w, const wavernn_lpc_chunk *c);

#endif
