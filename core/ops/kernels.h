/* The raw kernels of the heavy ops (internal to core), llm.c style: forward and backward
 * on contiguous float arrays and sizes, defined side by side in each op's file. The
 * tensor ops are thin wrappers around them, and fused ops (the residual block, attention)
 * call them instead of deriving the maths again. Backward outputs are overwritten, and a
 * NULL output is a gradient nobody wants. Functions taking op return 0 or -1 with
 * jbx_last_error() naming op; the others cannot fail. */
#ifndef JBX_KERNELS_H
#define JBX_KERNELS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jbx_conv_geom; /* im2col.h */

/* ---- conv1d.c: x [batch, in_ch, in_len], w [out_ch, in_ch, kernel], y [batch, out_ch,
 * out_len] as g says; bias [out_ch] or NULL. ---- */
int jbx_conv1d_forward(const char *op, const struct jbx_conv_geom *g, const float *x,
                       const float *w, const float *bias, float *y);
/* x is read only for gw, w only for gx. */
int jbx_conv1d_backward(const char *op, const struct jbx_conv_geom *g, const float *x,
                        const float *w, const float *gy, float *gx, float *gw, float *gb);
/* The transposed convolution of g run backwards: x [batch, out_ch, out_len] (g's output
 * side), w [out_ch, in_ch, kernel], y [batch, in_ch, in_len]; bias [in_ch] or NULL. */
int jbx_conv_transpose1d_forward(const char *op, const struct jbx_conv_geom *g, const float *x,
                                 const float *w, const float *bias, float *y);
int jbx_conv_transpose1d_backward(const char *op, const struct jbx_conv_geom *g, const float *x,
                                  const float *w, const float *gy, float *gx, float *gw,
                                  float *gb);

/* ---- relu (elementwise.c's jbx_relu and the fused ops): NaN passes, as in PyTorch ---- */
static inline float jbx_relu_f(float x) { return x < 0 ? 0.0f : x; }
/* The gradient g where the relu passed (its input, or output, > 0), else 0. Callers load
 * both operands first so the select vectorises. */
static inline float jbx_relu_grad_f(float g, float passed) { return passed > 0 ? g : 0.0f; }
/* Over n floats: y = relu(x); g = relu_grad(g, passed) in place. restrict matters: with
 * two pointers that may be equal GCC vectorises behind a run-time overlap check, and an
 * in-place call fails it and runs scalar. */
static inline void jbx_relu_forward(const float *restrict x, float *restrict y, int64_t n) {
  for (int64_t j = 0; j < n; j++) y[j] = jbx_relu_f(x[j]);
}
static inline void jbx_relu_inplace(float *restrict x, int64_t n) {
  for (int64_t j = 0; j < n; j++) x[j] = jbx_relu_f(x[j]);
}
static inline void jbx_relu_backward_inplace(float *restrict g, const float *restrict passed, int64_t n) {
  for (int64_t j = 0; j < n; j++) g[j] = jbx_relu_grad_f(g[j], passed[j]);
}

/* ---- layer_norm.c: rows of D floats; w, b [D] or NULL ---- */
/* y = (x - mean) * rstd * w + b per row; mean and rstd [rows] are written when given. */
void jbx_layer_norm_forward(const float *x, const float *w, const float *b, float *y, float *mean,
                            float *rstd, int64_t rows, int64_t D, float eps);
/* From the forward's mean and rstd. 0, or -1 when out of memory for the weight sums. */
int jbx_layer_norm_backward(const float *x, const float *w, const float *mean, const float *rstd,
                            const float *gy, float *gx, float *gw, float *gb, int64_t rows,
                            int64_t D);

/* ---- softmax.c: along the middle of [outer, n, inner] ---- */
/* y = softmax (or log_softmax when logp) of x. */
void jbx_softmax_forward(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                         bool logp);
/* gx from the forward's output y. */
void jbx_softmax_backward(const float *gy, const float *y, float *gx, int64_t outer, int64_t n,
                          int64_t inner, bool logp);

/* ---- attention.c: one group of query rows attending to
 * one group of key rows, flash style (key tiles, online softmax, never an nq x nk
 * matrix), for the KV-cached sampler to reuse. A group is a strided matrix of rows: row
 * i of q starts at q + i * ldq (gq uses ldq too; k and gk ldk, v and gv ldv, o and go
 * ldo); lse[i * lse_stride] is row i's log-sum-exp of its scaled scores. With causal,
 * key j is visible to query i iff j <= i + offset (0 in training; nk - nq for queries
 * that follow a cache of keys); a row that sees no key gets 0 and lse -inf. scratch
 * holds jbx_attn_scratch_floats(d) floats, one per thread. They cannot fail. ---- */
typedef struct jbx_attn_group {
  int64_t nq, nk, d;
  int64_t ldq, ldk, ldv, ldo, lse_stride;
  bool causal;
  int64_t offset;
  float scale; /* 1 / sqrt(d): the reference's d^-1/4 on q and on k */
} jbx_attn_group;
size_t jbx_attn_scratch_floats(int64_t d);
/* Rows [i0, i0 + n) of o and lse. */
void jbx_attn_forward_rows(const jbx_attn_group *g, const float *q, const float *k, const float *v,
                           float *o, float *lse, int64_t i0, int64_t n, float *scratch);
/* The gradients from query rows [i0, i0 + n), given the forward's o and lse, ADDED into
 * gq (those rows), gk and gv (the keys they see); NULL: not wanted. The scores are
 * recomputed tile by tile. Rows 0..nq is the whole group. */
void jbx_attn_backward_rows(const jbx_attn_group *g, const float *q, const float *k,
                            const float *v, const float *o, const float *go, const float *lse,
                            int64_t i0, int64_t n, float *gq, float *gk, float *gv,
                            float *scratch);

#endif
