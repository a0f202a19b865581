/* softmax and log_softmax along any dim, stable (the max is subtracted first), with their
 * analytic backward from the saved output:
 *   softmax:     dx = y * (g - sum(g * y))
 *   log_softmax: dx = g - exp(y) * sum(g)
 * The input is seen as [outer, n, inner]; inner == 1 is a contiguous row per output,
 * otherwise blocks of CB columns are processed together. */
#include <math.h>

#include "fsum.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "kernels.h"
#include "op_kit.h"

#define CB 256

/* ---------------------------------------------------------------- forward */

static void row_forward(const float *x, float *y, int64_t n, bool logp) {
  float m = jbx_fmax(x, n);
  if (logp) {
    float ls = (float)log(jbx_exp_sum(x, NULL, n, m)); /* (x - m) - ls: precise for large |m| */
    for (int64_t r = 0; r < n; r++) y[r] = (x[r] - m) - ls;
  } else {
    float inv = (float)(1.0 / jbx_exp_sum(x, y, n, m));
    for (int64_t r = 0; r < n; r++) y[r] *= inv;
  }
}

/* Columns j0..j0+w of one outer slice; x and y point at column j0 of row 0. */
static void cols_forward(const float *x, float *y, int64_t n, int64_t inner, int64_t w, bool logp) {
  float m[CB];
  double s[CB];
  for (int64_t j = 0; j < w; j++) {
    m[j] = -INFINITY;
    s[j] = 0;
  }
  for (int64_t r = 0; r < n; r++)
    for (int64_t j = 0; j < w; j++) m[j] = x[r * inner + j] > m[j] ? x[r * inner + j] : m[j];
  if (logp) {
    for (int64_t r = 0; r < n; r++)
      for (int64_t j = 0; j < w; j++) s[j] += expf(x[r * inner + j] - m[j]);
    float ls[CB];
    for (int64_t j = 0; j < w; j++) ls[j] = (float)log(s[j]);
    for (int64_t r = 0; r < n; r++)
      for (int64_t j = 0; j < w; j++) y[r * inner + j] = (x[r * inner + j] - m[j]) - ls[j];
  } else {
    for (int64_t r = 0; r < n; r++)
      for (int64_t j = 0; j < w; j++) {
        float e = expf(x[r * inner + j] - m[j]);
        y[r * inner + j] = e;
        s[j] += e;
      }
    float inv[CB];
    for (int64_t j = 0; j < w; j++) inv[j] = (float)(1.0 / s[j]);
    for (int64_t r = 0; r < n; r++)
      for (int64_t j = 0; j < w; j++) y[r * inner + j] *= inv[j];
  }
}

/* ---------------------------------------------------------------- backward */

static void row_backward(const float *g, const float *y, float *d, int64_t n, bool logp) {
  if (logp) {
    float s = (float)jbx_fsum(g, n);
    for (int64_t r = 0; r < n; r++) d[r] = g[r] - expf(y[r]) * s;
  } else {
    float s = (float)jbx_fdot(g, y, n);
    for (int64_t r = 0; r < n; r++) d[r] = y[r] * (g[r] - s);
  }
}

static void cols_backward(const float *g, const float *y, float *d, int64_t n, int64_t inner, int64_t w,
                          bool logp) {
  double s[CB];
  for (int64_t j = 0; j < w; j++) s[j] = 0;
  for (int64_t r = 0; r < n; r++)
    for (int64_t j = 0; j < w; j++) s[j] += logp ? g[r * inner + j] : g[r * inner + j] * y[r * inner + j];
  float sf[CB];
  for (int64_t j = 0; j < w; j++) sf[j] = (float)s[j];
  for (int64_t r = 0; r < n; r++)
    for (int64_t j = 0; j < w; j++) {
      int64_t k = r * inner + j;
      d[k] = logp ? g[k] - expf(y[k]) * sf[j] : y[k] * (g[k] - sf[j]);
    }
}

/* Runs the forward (g == NULL: x -> y) or backward (g, y -> d) over every row/column block. */
static void run(const float *x_or_g, const float *y_in, float *dst, jbx_rgeom geo, bool logp, bool fwd) {
  bool big = geo.outer * geo.n * geo.inner >= JBX_PAR_MIN;
  if (geo.inner == 1) {
#pragma omp parallel for schedule(static) if (big && geo.outer > 1)
    for (int64_t o = 0; o < geo.outer; o++) {
      int64_t off = o * geo.n;
      if (fwd) row_forward(x_or_g + off, dst + off, geo.n, logp);
      else row_backward(x_or_g + off, y_in + off, dst + off, geo.n, logp);
    }
    return;
  }
  int64_t nb = (geo.inner + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (big && geo.outer * nb > 1)
  for (int64_t t = 0; t < geo.outer * nb; t++) {
    int64_t o = t / nb, j0 = (t % nb) * CB, w = geo.inner - j0 < CB ? geo.inner - j0 : CB;
    int64_t off = o * geo.n * geo.inner + j0;
    if (fwd) cols_forward(x_or_g + off, dst + off, geo.n, geo.inner, w, logp);
    else cols_backward(x_or_g + off, y_in + off, dst + off, geo.n, geo.inner, w, logp);
  }
}

/* ---------------------------------------------------------------- raw kernels */

void jbx_softmax_forward(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                         bool logp) {
  run(x, NULL, y, (jbx_rgeom){outer, n, inner}, logp, true);
}

void jbx_softmax_backward(const float *gy, const float *y, float *gx, int64_t outer, int64_t n,
                          int64_t inner, bool logp) {
  run(gy, y, gx, (jbx_rgeom){outer, n, inner}, logp, false);
}

/* ---------------------------------------------------------------- the ops */

typedef struct {
  int dim;
  bool logp;
} softmax_params;

/* node: in[0] = a; softmax_params. The output itself holds y. */
static int softmax_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  const softmax_params *p = JBX_NODE_PARAMS(nd, softmax_params);
  jbx_tensor *a = nd->in[0], *gc = jbx_plain(gout), *yc = jbx_plain(out);
  jbx_tensor *gin = gc && yc ? jbx_empty(JBX_F32, a->ndim, a->shape) : NULL;
  if (gin) {
    jbx_rgeom geo = jbx_rgeom_of(a, p->dim);
    jbx_softmax_backward(jbx_f32(gc), jbx_f32(yc), jbx_f32(gin), geo.outer, geo.n, geo.inner,
                         p->logp);
  }
  jbx_release(gc);
  jbx_release(yc);
  return jbx_give_grad(a, gin);
}

static jbx_tensor *softmax_like(const char *op, jbx_tensor *a, int dim, bool logp) {
  char s[160];
  if (!a) {
    jbx_fail("%s: input is NULL", op);
    return NULL;
  }
  if (a->dtype != JBX_F32) {
    jbx_fail("%s: needs a float32 tensor, got int32 %s", op, jbx_shape_str(a, s, sizeof s));
    return NULL;
  }
  int d = jbx_norm_dim(op, a, dim);
  if (d < 0) return NULL;
  jbx_tensor *ac = jbx_plain(a), *out = ac ? jbx_empty(JBX_F32, a->ndim, a->shape) : NULL;
  if (out) {
    jbx_rgeom geo = jbx_rgeom_of(a, d);
    jbx_softmax_forward(jbx_f32(ac), jbx_f32(out), geo.outer, geo.n, geo.inner, logp);
  }
  jbx_release(ac);
  softmax_params p = {d, logp};
  if (out) JBX_RECORD(out, op, softmax_backward, 1, &a, p);
  return out;
}

jbx_tensor *jbx_softmax(jbx_tensor *a, int dim) { return softmax_like("softmax", a, dim, false); }

jbx_tensor *jbx_log_softmax(jbx_tensor *a, int dim) { return softmax_like("log_softmax", a, dim, true); }
