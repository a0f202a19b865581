/* conv1d and conv_transpose1d, forward and backward side by side. The products run in
 * im2col.c; a transposed convolution is the gradient of a plain one, so both ops share
 * the same three kernels with the roles of input and output swapped. */
#include <limits.h>
#include <stdlib.h>

#include "im2col.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "kernels.h"
#include "op_kit.h"

/* BLAS takes int: every matrix side (channels * kernel, lengths) must fit one. Checked
 * before any copy, so an oversized (e.g. expanded) input fails without allocating, and
 * before output lengths are computed, so they cannot overflow. out_len < 0: not known yet. */
static int check_blas_sizes(const char *op, const jbx_tensor *x, const jbx_tensor *w,
                            int64_t out_len) {
  char a[160], b[160];
  bool ok = x->shape[1] <= INT_MAX && x->shape[2] <= INT_MAX && out_len <= INT_MAX;
  for (int d = 0; d < 3; d++) ok = ok && w->shape[d] <= INT_MAX;
  ok = ok && w->shape[0] * w->shape[2] <= INT_MAX && w->shape[1] * w->shape[2] <= INT_MAX;
  if (ok) return 0;
  return jbx_fail("%s: input %s with weight %s is too large for BLAS (a matrix side exceeds %d)",
                  op, jbx_shape_str(x, a, sizeof a), jbx_shape_str(w, b, sizeof b), INT_MAX);
}

/* Checks shared by both ops: presence, dtypes and ranks. what: the weight's layout. */
static int check_common(const char *op, const jbx_tensor *x, const jbx_tensor *w,
                        const jbx_tensor *bias, const char *what) {
  char a[160];
  if (!x || !w) return jbx_fail("%s: input and weight are required", op);
  if (jbx_check_f32(op, "input", x) < 0 || jbx_check_f32(op, "weight", w) < 0 ||
      jbx_check_f32(op, "bias", bias) < 0)
    return -1;
  if (x->ndim != 3)
    return jbx_fail("%s: input %s must be 3-D [batch, channels, length]", op,
                    jbx_shape_str(x, a, sizeof a));
  if (w->ndim != 3)
    return jbx_fail("%s: weight %s must be 3-D %s", op, jbx_shape_str(w, a, sizeof a), what);
  if (w->shape[2] < 1)
    return jbx_fail("%s: weight %s has kernel size %lld, must be >= 1", op,
                    jbx_shape_str(w, a, sizeof a), (long long)w->shape[2]);
  return check_blas_sizes(op, x, w, -1);
}

static int check_channels(const char *op, const jbx_tensor *x, int64_t expect) {
  char a[160];
  if (x->shape[1] == expect) return 0;
  return jbx_fail("%s: input %s has %lld channel%s, weight expects %lld", op,
                  jbx_shape_str(x, a, sizeof a), (long long)x->shape[1],
                  x->shape[1] == 1 ? "" : "s", (long long)expect);
}

static int check_bias(const char *op, const jbx_tensor *bias, int64_t out_ch) {
  char a[160];
  if (!bias || (bias->ndim == 1 && bias->shape[0] == out_ch)) return 0;
  return jbx_fail("%s: bias %s must be [%lld], one value per output channel", op,
                  jbx_shape_str(bias, a, sizeof a), (long long)out_ch);
}

/* ---------------------------------------------------------------- conv1d */

static jbx_conv_geom conv_geom(const jbx_tensor *x, const jbx_tensor *w, int64_t out_len,
                               int stride, int padding, int dilation) {
  jbx_conv_geom g = {.batch = x->shape[0], .in_ch = x->shape[1], .in_len = x->shape[2],
                     .out_ch = w->shape[0], .out_len = out_len, .kernel = w->shape[2],
                     .stride = stride, .padding = padding, .dilation = dilation};
  return g;
}

/* The raw kernels (kernels.h): every array contiguous, g describing the convolution. */
int jbx_conv1d_forward(const char *op, const jbx_conv_geom *g, const float *x, const float *w,
                       const float *bias, float *y) {
  if (jbx_conv_gemm_forward(op, g, x, w, y) < 0) return -1;
  if (bias) jbx_conv_add_bias(y, g->batch, g->out_ch, g->out_len, bias);
  return 0;
}

int jbx_conv1d_backward(const char *op, const jbx_conv_geom *g, const float *x, const float *w,
                        const float *gy, float *gx, float *gw, float *gb) {
  if (gx && jbx_conv_gemm_backward_data(op, g, gy, w, gx) < 0) return -1;
  if (gw && jbx_conv_gemm_backward_weight(op, g, gy, x, gw) < 0) return -1;
  if (gb) jbx_conv_sum_bias(gy, g->batch, g->out_ch, g->out_len, gb);
  return 0;
}

/* A transposed convolution is the plain one g run backwards: x is g's output side. */
int jbx_conv_transpose1d_forward(const char *op, const jbx_conv_geom *g, const float *x,
                                 const float *w, const float *bias, float *y) {
  if (jbx_conv_gemm_backward_data(op, g, x, w, y) < 0) return -1;
  if (bias) jbx_conv_add_bias(y, g->batch, g->in_ch, g->in_len, bias);
  return 0;
}

int jbx_conv_transpose1d_backward(const char *op, const jbx_conv_geom *g, const float *x,
                                  const float *w, const float *gy, float *gx, float *gw,
                                  float *gb) {
  if (gx && jbx_conv_gemm_forward(op, g, gy, w, gx) < 0) return -1;
  if (gw && jbx_conv_gemm_backward_weight(op, g, x, gy, gw) < 0) return -1;
  if (gb) jbx_conv_sum_bias(gy, g->batch, g->in_ch, g->in_len, gb);
  return 0;
}

/* The tensor-level backward shared by both ops. node: in = {x, w, bias (if any)};
 * params: the op's jbx_conv_geom. */
typedef int (*conv_backward_kernel)(const char *op, const jbx_conv_geom *g, const float *x,
                                    const float *w, const float *gy, float *gx, float *gw,
                                    float *gb);

/* One gradient at a time, each handed to its input before the next is allocated: an
 * input that already holds a gradient (a residual path) frees this one at once, so the
 * data gradient is gone before the weight gradient's column buffer is made. Holding
 * all three together raised the jukebox training step's peak by 35 MB and its time at
 * 2 threads by about 8%. */
static int conv_backward(jbx_node *nd, jbx_tensor *gout, const char *op, conv_backward_kernel k) {
  const jbx_conv_geom *g = JBX_NODE_PARAMS(nd, jbx_conv_geom);
  jbx_tensor *x = nd->in[0], *w = nd->in[1], *bias = nd->n_in > 2 ? nd->in[2] : NULL;
  jbx_tensor *gc = jbx_plain(gout);
  int rc = gc ? 0 : -1;
  if (rc == 0 && x->requires_grad) {
    jbx_tensor *wc = jbx_plain(w), *gx = jbx_empty(JBX_F32, 3, x->shape);
    rc = wc && gx ? k(op, g, NULL, jbx_f32(wc), jbx_f32(gc), jbx_f32(gx), NULL, NULL) : -1;
    jbx_release(wc);
    rc = jbx_give_grads(rc, 1, &x, &gx);
  }
  if (rc == 0 && w->requires_grad) {
    jbx_tensor *xc = jbx_plain(x), *gw = jbx_empty(JBX_F32, 3, w->shape);
    rc = xc && gw ? k(op, g, jbx_f32(xc), NULL, jbx_f32(gc), NULL, jbx_f32(gw), NULL) : -1;
    jbx_release(xc);
    rc = jbx_give_grads(rc, 1, &w, &gw);
  }
  if (rc == 0 && jbx_wants_grad(bias)) {
    jbx_tensor *gb = jbx_empty(JBX_F32, 1, bias->shape);
    rc = gb ? k(op, g, NULL, NULL, jbx_f32(gc), NULL, NULL, jbx_f32(gb)) : -1;
    rc = jbx_give_grads(rc, 1, &bias, &gb);
  }
  jbx_release(gc);
  return rc;
}

static int conv1d_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  return conv_backward(nd, gout, "conv1d backward", jbx_conv1d_backward);
}

typedef int (*conv_forward_kernel)(const char *op, const jbx_conv_geom *g, const float *x,
                                   const float *w, const float *bias, float *y);

/* Runs the forward kernel into a new [shape] tensor and records bw with g as params. */
static jbx_tensor *conv_op(const char *op, jbx_tensor *x, jbx_tensor *w, jbx_tensor *bias,
                           const jbx_conv_geom *g, const int64_t *shape, conv_forward_kernel k,
                           jbx_backward_fn bw) {
  jbx_tensor *xc = jbx_plain(x), *wc = jbx_plain(w), *bc = jbx_plain(bias);
  jbx_tensor *out = xc && wc && (bc || !bias) ? jbx_empty(JBX_F32, 3, shape) : NULL;
  if (out && k(op, g, jbx_f32(xc), jbx_f32(wc), bc ? jbx_f32(bc) : NULL, jbx_f32(out)) < 0) {
    jbx_release(out);
    out = NULL;
  }
  jbx_release(xc);
  jbx_release(wc);
  jbx_release(bc);
  jbx_tensor *ins[3] = {x, w, bias};
  int n = bias ? 3 : 2;
  if (out && jbx_needs_grad(n, ins) && !jbx_record_params(out, op, bw, n, ins, g, sizeof *g)) {
    jbx_release(out);
    return NULL;
  }
  return out;
}

jbx_tensor *jbx_conv1d(jbx_tensor *x, jbx_tensor *w, jbx_tensor *bias, int stride, int padding,
                       int dilation) {
  const char *op = "conv1d";
  char a[160], b[160];
  if (check_common(op, x, w, bias, "[out_channels, in_channels, kernel]") < 0) return NULL;
  if (stride < 1) return jbx_fail("conv1d: stride must be >= 1, got %d", stride), NULL;
  if (dilation < 1) return jbx_fail("conv1d: dilation must be >= 1, got %d", dilation), NULL;
  if (padding < 0) return jbx_fail("conv1d: padding must be >= 0, got %d", padding), NULL;
  if (check_channels(op, x, w->shape[1]) < 0 || check_bias(op, bias, w->shape[0]) < 0) return NULL;
  int64_t K = w->shape[2], span = (int64_t)dilation * (K - 1) + 1;
  int64_t out_len = (x->shape[2] + 2 * (int64_t)padding - span) / stride + 1;
  if (x->shape[2] + 2 * (int64_t)padding < span || out_len < 1) {
    jbx_fail("conv1d: input %s is too short for weight %s (padding %d, dilation %d): "
             "output length would be < 1",
             jbx_shape_str(x, a, sizeof a), jbx_shape_str(w, b, sizeof b), padding, dilation);
    return NULL;
  }
  if (check_blas_sizes(op, x, w, out_len) < 0) return NULL;
  jbx_conv_geom g = conv_geom(x, w, out_len, stride, padding, dilation);
  int64_t shape[3] = {g.batch, g.out_ch, out_len};
  return conv_op(op, x, w, bias, &g, shape, jbx_conv1d_forward, conv1d_backward);
}

/* ------------------------------------------------------ conv_transpose1d */

/* The plain convolution whose input gradient is this transposed one: its input is our
 * output [B, Cout, out_len], its output our input [B, Cin, L], its weight ours. */
static jbx_conv_geom transpose_geom(const jbx_tensor *x, const jbx_tensor *w, int64_t out_len,
                                    int stride, int padding) {
  jbx_conv_geom g = {.batch = x->shape[0], .in_ch = w->shape[1], .in_len = out_len,
                     .out_ch = x->shape[1], .out_len = x->shape[2], .kernel = w->shape[2],
                     .stride = stride, .padding = padding, .dilation = 1};
  return g;
}

static int conv_transpose1d_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  return conv_backward(nd, gout, "conv_transpose1d backward", jbx_conv_transpose1d_backward);
}

jbx_tensor *jbx_conv_transpose1d(jbx_tensor *x, jbx_tensor *w, jbx_tensor *bias, int stride,
                                 int padding, int output_padding) {
  const char *op = "conv_transpose1d";
  char a[160], b[160];
  if (check_common(op, x, w, bias, "[in_channels, out_channels, kernel]") < 0) return NULL;
  if (stride < 1) return jbx_fail("conv_transpose1d: stride must be >= 1, got %d", stride), NULL;
  if (padding < 0) return jbx_fail("conv_transpose1d: padding must be >= 0, got %d", padding), NULL;
  if (output_padding < 0 || output_padding >= stride) {
    jbx_fail("conv_transpose1d: output_padding must be >= 0 and smaller than stride %d, got %d",
             stride, output_padding);
    return NULL;
  }
  if (check_channels(op, x, w->shape[0]) < 0 || check_bias(op, bias, w->shape[1]) < 0) return NULL;
  int64_t out_len =
      (x->shape[2] - 1) * stride - 2 * (int64_t)padding + w->shape[2] + output_padding;
  if (x->shape[2] < 1 || out_len < 1) {
    jbx_fail("conv_transpose1d: input %s with weight %s (stride %d, padding %d, output_padding "
             "%d): output length would be < 1",
             jbx_shape_str(x, a, sizeof a), jbx_shape_str(w, b, sizeof b), stride, padding,
             output_padding);
    return NULL;
  }
  if (check_blas_sizes(op, x, w, out_len) < 0) return NULL;
  jbx_conv_geom g = transpose_geom(x, w, out_len, stride, padding);
  int64_t shape[3] = {g.batch, g.in_ch, out_len};
  return conv_op(op, x, w, bias, &g, shape, jbx_conv_transpose1d_forward,
                 conv_transpose1d_backward);
}
