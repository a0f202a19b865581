/* The GEMM engine behind conv1d and conv_transpose1d (internal to core/ops).
 * One convolution geometry, three products: forward (y = W * im2col(x)), the gradient
 * w.r.t. the input (x = col2im(W^T * y)), which is also conv_transpose's forward, and the
 * gradient w.r.t. the weight (gW = y * im2col(x)^T). The output positions are cut into
 * cache-sized panels: slices of long items (written in place), or groups of short items
 * that share one sgemm. */
#ifndef JBX_IM2COL_H
#define JBX_IM2COL_H
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

/* Shapes of a plain convolution: x [batch, in_ch, in_len] -> y [batch, out_ch, out_len],
 * weight [out_ch, in_ch * kernel] row-major. All arrays are contiguous. */
typedef struct jbx_conv_geom {
  int64_t batch, in_ch, in_len, out_ch, out_len;
  int64_t kernel, stride, padding, dilation;
} jbx_conv_geom;

/* y = conv(x, w); y is overwritten. op names the caller in error messages. 0 or -1. */
int jbx_conv_gemm_forward(const char *op, const jbx_conv_geom *g, const float *x, const float *w,
                          float *y);
/* gx = d/dx of sum(y * gy); gx is overwritten. 0 or -1. */
int jbx_conv_gemm_backward_data(const char *op, const jbx_conv_geom *g, const float *gy,
                                const float *w, float *gx);
/* gw = d/dw of sum(y * gy), [out_ch, in_ch * kernel]; gw is overwritten. 0 or -1. */
int jbx_conv_gemm_backward_weight(const char *op, const jbx_conv_geom *g, const float *gy,
                                  const float *x, float *gw);

/* One row of a stride-1 column matrix, shared with the fused ops' panels:
 * row[j] = src[j + off] for j < n where 0 <= j + off < len, else 0; through relu when
 * asked. */
static inline void jbx_im2col_row(const float *src, int64_t len, int64_t off, int64_t n,
                                  float *row, bool relu) {
  int64_t lo = off < 0 ? -off : 0, hi = len - off;
  if (lo > n) lo = n;
  if (hi > n) hi = n;
  if (hi < lo) hi = lo;
  if (lo > 0) memset(row, 0, (size_t)lo * sizeof(float));
  if (relu) {
    jbx_relu_forward(src + lo + off, row + lo, hi - lo);
  } else if (hi > lo) {
    memcpy(row + lo, src + (lo + off), (size_t)(hi - lo) * sizeof(float));
  }
  if (hi < n) memset(row + hi, 0, (size_t)(n - hi) * sizeof(float));
}

/* t [batch, ch, len] += bias[ch]. */
void jbx_conv_add_bias(float *t, int64_t batch, int64_t ch, int64_t len, const float *bias);
/* gb[ch] = sum over batch and len of t [batch, ch, len]. */
void jbx_conv_sum_bias(const float *t, int64_t batch, int64_t ch, int64_t len, float *gb);

#endif
