/* conv1d and conv_transpose1d, forward and backward side by side. The products run in
 * im2col.c; a transposed convolution is the gradient of a plain one, so both ops share
 * the same three kernels with the roles of input and output swapped. */
#include <limits.h>
#include <stdlib.h>

#include "im2col.h"
#include "jbx_error.h"
#include "jbx_ops.h"

static const char *dtype_name(const jbx_tensor *t) {
  return t->dtype == JBX_I32 ? "int32" : "float32";
}

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
  if (x->dtype != JBX_F32) return jbx_fail("%s: input must be float32, got %s", op, dtype_name(x));
  if (w->dtype != JBX_F32) return jbx_fail("%s: weight must be float32, got %s", op, dtype_name(w));
  if (bias && bias->dtype != JBX_F32)
    return jbx_fail("%s: bias must be float32, got %s", op, dtype_name(bias));
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

/* Contiguous copies (or retains) without recording: only their data is used. */
static jbx_tensor *plain(jbx_tensor *t) {
  bool prev = jbx_set_grad_enabled(false);
  jbx_tensor *c = t ? jbx_contiguous(t) : NULL;
  jbx_set_grad_enabled(prev);
  return c;
}

/* Accumulates g into t (when it wants a gradient) and releases g. An empty gradient
 * carries nothing (and its storage is NULL), so it is dropped. */
static int give_grad(jbx_tensor *t, jbx_tensor *g) {
  int rc = jbx_numel(g) ? jbx_accum_grad(t, g) : 0;
  jbx_release(g);
  return rc;
}

/* ---------------------------------------------------------------- conv1d */

static jbx_conv_geom conv_geom(const jbx_tensor *x, const jbx_tensor *w, int64_t out_len,
                               int stride, int padding, int dilation) {
  jbx_conv_geom g = {.batch = x->shape[0], .in_ch = x->shape[1], .in_len = x->shape[2],
                     .out_ch = w->shape[0], .out_len = out_len, .kernel = w->shape[2],
                     .stride = stride, .padding = padding, .dilation = dilation};
  return g;
}

/* Saved: in[0] = x, in[1] = w, in[2] = bias (if any); i[] = stride, padding, dilation. */
static int conv1d_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  const char *op = "conv1d backward";
  jbx_tensor *x = nd->in[0], *w = nd->in[1], *bias = nd->n_in > 2 ? nd->in[2] : NULL;
  jbx_conv_geom g = conv_geom(x, w, out->shape[2], (int)nd->i[0], (int)nd->i[1], (int)nd->i[2]);
  jbx_tensor *gc = plain(gout), *xc = NULL, *wc = NULL, *gx = NULL, *gw = NULL, *gb = NULL;
  int rc = gc ? 0 : -1;
  if (rc == 0 && x->requires_grad) {
    rc = (wc = plain(w)) && (gx = jbx_empty(JBX_F32, 3, x->shape)) ? 0 : -1;
    if (rc == 0) rc = jbx_conv_gemm_backward_data(op, &g, jbx_f32(gc), jbx_f32(wc), jbx_f32(gx));
    if (rc == 0) rc = give_grad(x, gx);
    else jbx_release(gx);
  }
  if (rc == 0 && w->requires_grad) {
    rc = (xc = plain(x)) && (gw = jbx_empty(JBX_F32, 3, w->shape)) ? 0 : -1;
    if (rc == 0) rc = jbx_conv_gemm_backward_weight(op, &g, jbx_f32(gc), jbx_f32(xc), jbx_f32(gw));
    if (rc == 0) rc = give_grad(w, gw);
    else jbx_release(gw);
  }
  if (rc == 0 && bias && bias->requires_grad) {
    rc = (gb = jbx_empty(JBX_F32, 1, bias->shape)) ? 0 : -1;
    if (rc == 0) {
      jbx_conv_sum_bias(jbx_f32(gc), g.batch, g.out_ch, g.out_len, jbx_f32(gb));
      rc = give_grad(bias, gb);
    }
  }
  jbx_release(gc);
  jbx_release(xc);
  jbx_release(wc);
  return rc;
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
  jbx_tensor *xc = plain(x), *wc = plain(w), *bc = plain(bias);
  jbx_tensor *out = xc && wc && (bc || !bias) ? jbx_empty(JBX_F32, 3, shape) : NULL;
  if (out && jbx_conv_gemm_forward(op, &g, jbx_f32(xc), jbx_f32(wc), jbx_f32(out)) < 0) {
    jbx_release(out);
    out = NULL;
  }
  if (out && bc) jbx_conv_add_bias(jbx_f32(out), g.batch, g.out_ch, out_len, jbx_f32(bc));
  jbx_release(xc);
  jbx_release(wc);
  jbx_release(bc);
  jbx_tensor *ins[3] = {x, w, bias};
  int n = bias ? 3 : 2;
  if (out && jbx_needs_grad(n, ins)) {
    jbx_node *nd = jbx_record(out, op, conv1d_backward, n, ins);
    if (!nd) {
      jbx_release(out);
      return jbx_fail("conv1d: out of memory recording the graph"), NULL;
    }
    nd->i[0] = stride;
    nd->i[1] = padding;
    nd->i[2] = dilation;
  }
  return out;
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

/* Saved: in[0] = x, in[1] = w, in[2] = bias (if any); i[] = stride, padding. */
static int conv_transpose1d_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  const char *op = "conv_transpose1d backward";
  jbx_tensor *x = nd->in[0], *w = nd->in[1], *bias = nd->n_in > 2 ? nd->in[2] : NULL;
  jbx_conv_geom g = transpose_geom(x, w, out->shape[2], (int)nd->i[0], (int)nd->i[1]);
  jbx_tensor *gc = plain(gout), *xc = NULL, *wc = NULL, *gx = NULL, *gw = NULL, *gb = NULL;
  int rc = gc ? 0 : -1;
  if (rc == 0 && x->requires_grad) {
    rc = (wc = plain(w)) && (gx = jbx_empty(JBX_F32, 3, x->shape)) ? 0 : -1;
    if (rc == 0) rc = jbx_conv_gemm_forward(op, &g, jbx_f32(gc), jbx_f32(wc), jbx_f32(gx));
    if (rc == 0) rc = give_grad(x, gx);
    else jbx_release(gx);
  }
  if (rc == 0 && w->requires_grad) {
    rc = (xc = plain(x)) && (gw = jbx_empty(JBX_F32, 3, w->shape)) ? 0 : -1;
    if (rc == 0) rc = jbx_conv_gemm_backward_weight(op, &g, jbx_f32(xc), jbx_f32(gc), jbx_f32(gw));
    if (rc == 0) rc = give_grad(w, gw);
    else jbx_release(gw);
  }
  if (rc == 0 && bias && bias->requires_grad) {
    rc = (gb = jbx_empty(JBX_F32, 1, bias->shape)) ? 0 : -1;
    if (rc == 0) {
      jbx_conv_sum_bias(jbx_f32(gc), g.batch, g.in_ch, g.in_len, jbx_f32(gb));
      rc = give_grad(bias, gb);
    }
  }
  jbx_release(gc);
  jbx_release(xc);
  jbx_release(wc);
  return rc;
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
  jbx_tensor *xc = plain(x), *wc = plain(w), *bc = plain(bias);
  jbx_tensor *out = xc && wc && (bc || !bias) ? jbx_empty(JBX_F32, 3, shape) : NULL;
  if (out && jbx_conv_gemm_backward_data(op, &g, jbx_f32(xc), jbx_f32(wc), jbx_f32(out)) < 0) {
    jbx_release(out);
    out = NULL;
  }
  if (out && bc) jbx_conv_add_bias(jbx_f32(out), g.batch, g.in_ch, out_len, jbx_f32(bc));
  jbx_release(xc);
  jbx_release(wc);
  jbx_release(bc);
  jbx_tensor *ins[3] = {x, w, bias};
  int n = bias ? 3 : 2;
  if (out && jbx_needs_grad(n, ins)) {
    jbx_node *nd = jbx_record(out, op, conv_transpose1d_backward, n, ins);
    if (!nd) {
      jbx_release(out);
      return jbx_fail("conv_transpose1d: out of memory recording the graph"), NULL;
    }
    nd->i[0] = stride;
    nd->i[1] = padding;
    nd->i[2] = output_padding;
  }
  return out;
}
