/* layer_norm over the last dim with optional weight and bias [D], forward and backward.
 * Per row: mean, biased variance (two passes), rstd = 1 / sqrt(var + eps),
 * y = (x - mean) * rstd * w + b. Backward with xhat = (x - mean) * rstd:
 *   dx = rstd * (g w - mean(g w) - xhat * mean(g w xhat)),  dw = sum g xhat,  db = sum g
 * where the weight and bias sums are accumulated per thread and combined in order. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "fsum.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "kernels.h"
#include "op_kit.h"

/* Sums of (x[i] - c) and (x[i] - c)^2 in float lanes. Shifting by a value near the data
 * (the first element, then the mean) keeps rows with a large offset precise. */
static double dev_sum(const float *x, int64_t n, float c, bool sq) {
  float acc[16] = {0};
  int64_t i = 0;
  if (sq)
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; j++) acc[j] += (x[i + j] - c) * (x[i + j] - c);
  else
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; j++) acc[j] += x[i + j] - c;
  double s = 0;
  for (; i < n; i++) s += sq ? (double)(x[i] - c) * (x[i] - c) : (double)(x[i] - c);
  for (int j = 0; j < 16; j++) s += acc[j];
  return s;
}

/* ---------------------------------------------------------------- raw kernels */

void jbx_layer_norm_forward(const float *xv, const float *wv, const float *bv, float *y, float *mv,
                            float *sv, int64_t rows, int64_t D, float eps) {
#pragma omp parallel for schedule(static) if (rows > 1 && rows * D >= JBX_PAR_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = xv + r * D;
    float m = (float)(xr[0] + dev_sum(xr, D, xr[0], false) / D);
    float s = (float)(1.0 / sqrt(dev_sum(xr, D, m, true) / D + eps));
    float *yr = y + r * D;
    for (int64_t i = 0; i < D; i++) {
      float v = (xr[i] - m) * s;
      if (wv) v *= wv[i];
      if (bv) v += bv[i];
      yr[i] = v;
    }
    if (mv) mv[r] = m;
    if (sv) sv[r] = s;
  }
}

int jbx_layer_norm_backward(const float *xv, const float *wv, const float *mean, const float *rstd,
                            const float *g, float *dx, float *gw, float *gb, int64_t rows,
                            int64_t D) {
  int T = rows * D >= JBX_PAR_MIN ? omp_get_max_threads() : 1;
  float *part = gw || gb ? calloc((size_t)T * 2 * (size_t)D, sizeof *part) : NULL;
  if ((gw || gb) && !part) return jbx_fail("layer_norm backward: out of memory");
#pragma omp parallel num_threads(T) if (T > 1)
  {
    float *pw = part ? part + (size_t)omp_get_thread_num() * 2 * D : NULL, *pb = pw ? pw + D : NULL;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const float *gr = g + r * D, *xr = xv + r * D;
      float m = mean[r], s = rstd[r];
      if (dx) {
        /* Sums of g w and g w xhat in double, as SIMD lanes (the reduction may reorder). */
        double a = 0, c = 0;
        if (wv) {
#pragma omp simd reduction(+ : a, c)
          for (int64_t i = 0; i < D; i++) {
            float gwi = gr[i] * wv[i];
            a += gwi;
            c += gwi * (xr[i] - m) * s;
          }
        } else {
#pragma omp simd reduction(+ : a, c)
          for (int64_t i = 0; i < D; i++) {
            a += gr[i];
            c += gr[i] * (xr[i] - m) * s;
          }
        }
        float am = (float)(a / D), cm = (float)(c / D);
        float *dr = dx + r * D;
        if (wv) {
#pragma omp simd
          for (int64_t i = 0; i < D; i++) dr[i] = s * (gr[i] * wv[i] - am - (xr[i] - m) * s * cm);
        } else {
#pragma omp simd
          for (int64_t i = 0; i < D; i++) dr[i] = s * (gr[i] - am - (xr[i] - m) * s * cm);
        }
      }
      if (pw) {
#pragma omp simd
        for (int64_t i = 0; i < D; i++) {
          pw[i] += gr[i] * (xr[i] - m) * s;
          pb[i] += gr[i];
        }
      }
    }
  }
  /* per-thread partial sums combined in thread order: the same bits on every run */
  for (int k = 0; k < 2; k++) {
    float *q = k == 0 ? gw : gb;
    for (int64_t i = 0; q && i < D; i++) {
      double s = 0;
      for (int th = 0; th < T; th++) s += part[(size_t)th * 2 * D + (size_t)k * D + i];
      q[i] = (float)s;
    }
  }
  free(part);
  return 0;
}

/* ---------------------------------------------------------------- the op */

/* node: in = {x, weight or NULL, bias or NULL}; saved[0] = mean, saved[1] = rstd (per row). */
static int layer_norm_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  jbx_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
  int64_t D = x->shape[x->ndim - 1], rows = D ? jbx_numel(x) / D : 0;
  bool want_x = x->requires_grad, want_w = jbx_wants_grad(w), want_b = jbx_wants_grad(b);
  jbx_tensor *gc = jbx_plain(gout), *xc = jbx_plain(x), *wc = jbx_plain(w);
  jbx_tensor *gx = want_x ? jbx_empty(JBX_F32, x->ndim, x->shape) : NULL;
  jbx_tensor *gw = want_w ? jbx_empty(JBX_F32, 1, &D) : NULL;
  jbx_tensor *gb = want_b ? jbx_empty(JBX_F32, 1, &D) : NULL;
  int rc = gc && xc && (!w || wc) && (!want_x || gx) && (!want_w || gw) && (!want_b || gb) ? 0 : -1;
  if (rc == 0)
    rc = jbx_layer_norm_backward(jbx_f32(xc), wc ? jbx_f32(wc) : NULL, jbx_f32(nd->saved[0]),
                                 jbx_f32(nd->saved[1]), jbx_f32(gc), gx ? jbx_f32(gx) : NULL,
                                 gw ? jbx_f32(gw) : NULL, gb ? jbx_f32(gb) : NULL, rows, D);
  jbx_release(gc);
  jbx_release(xc);
  jbx_release(wc);
  return jbx_give_grads(rc, 3, (jbx_tensor *[]){x, w, b}, (jbx_tensor *[]){gx, gw, gb});
}

static int check_param(const char *what, const jbx_tensor *p, int64_t D, const jbx_tensor *x) {
  char s[160], sx[160];
  if (!p) return 0;
  if (p->dtype != JBX_F32) return jbx_fail("layer_norm: %s must be float32, got int32", what);
  if (p->ndim != 1 || p->shape[0] != D)
    return jbx_fail("layer_norm: %s %s must be [%lld] to match the last dim of the input %s", what,
                    jbx_shape_str(p, s, sizeof s), (long long)D, jbx_shape_str(x, sx, sizeof sx));
  return 0;
}

jbx_tensor *jbx_layer_norm(jbx_tensor *x, jbx_tensor *weight, jbx_tensor *bias, float eps) {
  char s[160];
  if (!x) {
    jbx_fail("layer_norm: input is NULL");
    return NULL;
  }
  if (x->dtype != JBX_F32) {
    jbx_fail("layer_norm: input must be float32, got int32 %s", jbx_shape_str(x, s, sizeof s));
    return NULL;
  }
  if (x->ndim == 0 || x->shape[x->ndim - 1] == 0) {
    jbx_fail("layer_norm: input %s needs a last dim of size >= 1", jbx_shape_str(x, s, sizeof s));
    return NULL;
  }
  if (!(eps >= 0) || isinf(eps)) {
    jbx_fail("layer_norm: eps must be finite and >= 0, got %g", (double)eps);
    return NULL;
  }
  int64_t D = x->shape[x->ndim - 1], rows = jbx_numel(x) / D;
  if (check_param("weight", weight, D, x) < 0 || check_param("bias", bias, D, x) < 0) return NULL;
  jbx_tensor *in[3] = {x, weight, bias};
  bool grad = jbx_needs_grad(3, in);
  jbx_tensor *xc = jbx_plain(x), *wc = jbx_plain(weight), *bc = jbx_plain(bias);
  jbx_tensor *out = jbx_empty(JBX_F32, x->ndim, x->shape);
  jbx_tensor *mean = grad ? jbx_empty(JBX_F32, 1, &rows) : NULL, *rstd = grad ? jbx_empty(JBX_F32, 1, &rows) : NULL;
  if (!xc || (weight && !wc) || (bias && !bc) || !out || (grad && (!mean || !rstd))) {
    jbx_release(out);
    out = NULL;
  } else {
    jbx_layer_norm_forward(jbx_f32(xc), wc ? jbx_f32(wc) : NULL, bc ? jbx_f32(bc) : NULL,
                           jbx_f32(out), mean ? jbx_f32(mean) : NULL, rstd ? jbx_f32(rstd) : NULL,
                           rows, D, eps);
  }
  jbx_release(xc);
  jbx_release(wc);
  jbx_release(bc);
  jbx_node *nd = out && grad ? jbx_record(out, "layer_norm", layer_norm_backward, 3, in) : NULL;
  if (nd && (jbx_node_save(nd, mean) < 0 || jbx_node_save(nd, rstd) < 0)) {
    jbx_release(out);
    out = NULL;
  }
  jbx_release(mean);
  jbx_release(rstd);
  return out;
}
