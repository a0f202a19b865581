/* The raw kernels of the heavy ops (internal to core), llm.c style: forward and backward
 * on contiguous float arrays and sizes, defined side by side in each op's file. The
 * tensor ops are thin wrappers around them, and fused ops (the residual block, attention)
 * call them instead of deriving the maths again. Backward outputs are overwritten, and a
 * NULL output is a gradient nobody wants. Functions taking op return 0 or -1 with
 * jbx_last_error() naming op; the others cannot fail. */
#ifndef JBX_KERNELS_H
#define JBX_KERNELS_H
#include <stdbool.h>
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
/* Over n floats: y = relu(x) (y may be x); gx = relu_grad(gy, passed) (gx may be gy). */
static inline void jbx_relu_forward(const float *x, float *y, int64_t n) {
  for (int64_t j = 0; j < n; j++) y[j] = jbx_relu_f(x[j]);
}
static inline void jbx_relu_backward(const float *gy, const float *passed, float *gx, int64_t n) {
  for (int64_t j = 0; j < n; j++) gx[j] = jbx_relu_grad_f(gy[j], passed[j]);
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

#endif
