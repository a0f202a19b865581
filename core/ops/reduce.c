/* Reductions over one dim or all elements: sum, mean, max/min (+ arg positions), norm,
 * logsumexp, topk_mean; forward and backward side by side. A contiguous input is seen as
 * [outer, n, inner] around the reduced dim: with inner == 1 each output is a tight loop
 * over a contiguous row, otherwise a block of columns is accumulated row by row. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fsum.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "op_kit.h"

#define ALL (-1) /* normalised dim meaning "all elements" (kept in reduce_params) */
#define CB 256   /* columns accumulated together when inner > 1 */

/* ---------------------------------------------------------------- shared plumbing */

typedef struct {
  int dim; /* normalised, or ALL */
  jbx_rgeom g;
  int ndim; /* output */
  int64_t shape[JBX_MAX_DIMS];
} rplan;

static jbx_rgeom geom_for(const jbx_tensor *a, int dim) {
  if (dim == ALL) return (jbx_rgeom){1, jbx_numel(a), 1};
  return jbx_rgeom_of(a, dim);
}

/* Validates the input and dim; works out the output shape. */
static int make_plan(const char *op, const jbx_tensor *a, int dim, bool keepdim, rplan *p) {
  char s[160];
  if (!a) return jbx_fail("%s: input is NULL", op);
  if (a->dtype != JBX_F32)
    return jbx_fail("%s: needs a float32 tensor, got int32 %s", op, jbx_shape_str(a, s, sizeof s));
  if (dim == JBX_ALL_DIMS) {
    p->dim = ALL;
    p->ndim = keepdim ? a->ndim : 0;
    for (int d = 0; d < p->ndim; d++) p->shape[d] = 1;
  } else {
    int d = jbx_norm_dim(op, a, dim);
    if (d < 0) return -1;
    p->dim = a->ndim ? d : ALL; /* a 0-dim tensor reduces over its one element */
    p->ndim = 0;
    for (int i = 0; i < a->ndim; i++)
      if (i != d) p->shape[p->ndim++] = a->shape[i];
      else if (keepdim) p->shape[p->ndim++] = 1;
  }
  p->g = geom_for(a, p->dim);
  return 0;
}

static int need_nonempty(const char *op, const jbx_tensor *a, const rplan *p) {
  char s[160];
  if (p->g.n > 0) return 0;
  if (p->dim == ALL)
    return jbx_fail("%s: cannot reduce the empty tensor %s", op, jbx_shape_str(a, s, sizeof s));
  return jbx_fail("%s: cannot reduce over dim %lld of size 0 in %s", op, jbx_msg_pos(p->dim),
                  jbx_shape_str(a, s, sizeof s));
}

/* What a reduction's node keeps: the normalised dim (or ALL) and, for sum and mean,
 * the scale of the gradient. */
typedef struct {
  int dim;
  float scale;
} reduce_params;

/* The geometry of the node's input around its reduced dim. */
static jbx_rgeom node_geom(const jbx_node *nd) {
  return geom_for(nd->in[0], JBX_NODE_PARAMS(nd, reduce_params)->dim);
}

/* Records bw on out with the reduced dim (and scale). */
static void record_reduce(jbx_tensor *out, const char *op, jbx_backward_fn bw, jbx_tensor *a,
                          int dim, float scale) {
  reduce_params rp = {dim, scale};
  if (out) JBX_RECORD(out, op, bw, 1, &a, rp);
}

/* ---------------------------------------------------------------- sum, mean, norm */

/* out[o, j] = scale * sum_r f(x[o, r, j]) with f the identity or the square. */
static void sum_kernel(const float *x, float *out, jbx_rgeom g, double scale, bool sq) {
  if (g.inner == 1) {
    if (g.outer == 1 && g.n >= 4 * JBX_PAR_MIN) {
      /* One long row: fixed chunks summed in parallel, combined in order (deterministic). */
      enum { CHUNK = 65536 };
      int64_t nc = (g.n + CHUNK - 1) / CHUNK;
      double *part = malloc((size_t)nc * sizeof *part);
      if (part) {
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < nc; c++) {
          int64_t b = c * CHUNK, len = b + CHUNK < g.n ? CHUNK : g.n - b;
          part[c] = sq ? jbx_fdot(x + b, x + b, len) : jbx_fsum(x + b, len);
        }
        double t = 0;
        for (int64_t c = 0; c < nc; c++) t += part[c];
        free(part);
        out[0] = (float)(t * scale);
        return;
      }
    }
#pragma omp parallel for schedule(static) if (g.outer > 1 && g.outer * g.n >= JBX_PAR_MIN)
    for (int64_t o = 0; o < g.outer; o++) {
      const float *r = x + o * g.n;
      out[o] = (float)((sq ? jbx_fdot(r, r, g.n) : jbx_fsum(r, g.n)) * scale);
    }
    return;
  }
  int64_t nb = (g.inner + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (g.outer * nb > 1 && g.outer * g.n * g.inner >= JBX_PAR_MIN)
  for (int64_t t = 0; t < g.outer * nb; t++) {
    int64_t o = t / nb, j0 = (t % nb) * CB, w = g.inner - j0 < CB ? g.inner - j0 : CB;
    double acc[CB];
    for (int64_t j = 0; j < w; j++) acc[j] = 0;
    const float *base = x + o * g.n * g.inner + j0;
    for (int64_t r = 0; r < g.n; r++) {
      const float *row = base + r * g.inner;
      if (sq)
        for (int64_t j = 0; j < w; j++) acc[j] += (double)row[j] * row[j];
      else
        for (int64_t j = 0; j < w; j++) acc[j] += row[j];
    }
    for (int64_t j = 0; j < w; j++) out[o * g.inner + j0 + j] = (float)(acc[j] * scale);
  }
}

/* gin[o, r, j] = scale * g[o, j] (* x[o, r, j] when x is given). */
static void spread_kernel(const float *g, const float *x, float *gin, jbx_rgeom geo, float scale) {
  bool big = geo.outer * geo.n * geo.inner >= JBX_PAR_MIN;
#pragma omp parallel for collapse(2) schedule(static) if (big)
  for (int64_t o = 0; o < geo.outer; o++)
    for (int64_t r = 0; r < geo.n; r++) {
      int64_t off = (o * geo.n + r) * geo.inner;
      const float *src = g + o * geo.inner;
      float *dst = gin + off;
      if (x)
        for (int64_t j = 0; j < geo.inner; j++) dst[j] = scale * src[j] * x[off + j];
      else
        for (int64_t j = 0; j < geo.inner; j++) dst[j] = scale * src[j];
    }
}

/* node: in[0] = a; reduce_params. */
static int sum_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  jbx_tensor *a = nd->in[0], *gc = jbx_plain(gout);
  jbx_tensor *gin = gc ? jbx_empty(JBX_F32, a->ndim, a->shape) : NULL;
  if (gin)
    spread_kernel(jbx_f32(gc), NULL, jbx_f32(gin), node_geom(nd),
                  JBX_NODE_PARAMS(nd, reduce_params)->scale);
  jbx_release(gc);
  return jbx_give_grad(a, gin);
}

static jbx_tensor *sum_like(const char *op, jbx_tensor *a, int dim, bool keepdim, bool mean) {
  rplan p;
  if (make_plan(op, a, dim, keepdim, &p) < 0) return NULL;
  jbx_tensor *ac = jbx_plain(a), *out = ac ? jbx_empty(JBX_F32, p.ndim, p.shape) : NULL;
  double scale = mean ? 1.0 / (double)p.g.n : 1.0; /* mean of nothing is NaN, as in PyTorch */
  if (out) sum_kernel(jbx_f32(ac), jbx_f32(out), p.g, scale, false);
  jbx_release(ac);
  record_reduce(out, op, sum_backward, a, p.dim, (float)scale);
  return out;
}

jbx_tensor *jbx_sum(jbx_tensor *a, int dim, bool keepdim) { return sum_like("sum", a, dim, keepdim, false); }

jbx_tensor *jbx_mean(jbx_tensor *a, int dim, bool keepdim) { return sum_like("mean", a, dim, keepdim, true); }

/* d|x|/dx = x / |x|, taken as 0 where the norm is 0. node: in[0] = a; reduce_params. */
static int norm_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  jbx_tensor *a = nd->in[0], *gc = jbx_plain(gout), *ac = jbx_plain(a), *oc = jbx_plain(out);
  jbx_tensor *ratio = gc && ac && oc ? jbx_empty(JBX_F32, gc->ndim, gc->shape) : NULL;
  jbx_tensor *gin = ratio ? jbx_empty(JBX_F32, a->ndim, a->shape) : NULL;
  if (gin) {
    const float *g = jbx_f32(gc), *o = jbx_f32(oc);
    float *q = jbx_f32(ratio);
    for (int64_t i = 0, m = jbx_numel(ratio); i < m; i++) q[i] = o[i] > 0 ? g[i] / o[i] : 0.0f;
    spread_kernel(q, jbx_f32(ac), jbx_f32(gin), node_geom(nd), 1.0f);
  }
  jbx_release(gc);
  jbx_release(ac);
  jbx_release(oc);
  jbx_release(ratio);
  return jbx_give_grad(a, gin);
}

jbx_tensor *jbx_norm(jbx_tensor *a, int dim, bool keepdim) {
  rplan p;
  if (make_plan("norm", a, dim, keepdim, &p) < 0) return NULL;
  jbx_tensor *ac = jbx_plain(a), *out = ac ? jbx_empty(JBX_F32, p.ndim, p.shape) : NULL;
  if (out) {
    float *o = jbx_f32(out);
    sum_kernel(jbx_f32(ac), o, p.g, 1.0, true);
    for (int64_t i = 0, m = jbx_numel(out); i < m; i++) o[i] = sqrtf(o[i]);
  }
  jbx_release(ac);
  record_reduce(out, "norm", norm_backward, a, p.dim, 1.0f);
  return out;
}

/* ---------------------------------------------------------------- max, min, arg* */

/* One row by vector lanes: the extreme value, then the first position holding it.
 * Returns -1 when the row holds a NaN or an infinity (x * 0 is then NaN), which the
 * exact loop below decides instead. */
static int64_t row_extreme(const float *x, int64_t n, bool is_max, float *val) {
  float init = is_max ? -INFINITY : INFINITY, acc[16], z[16] = {0}, m = init, zs = 0;
  int64_t i = 0;
  for (int j = 0; j < 16; j++) acc[j] = init;
  if (is_max)
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; j++) {
        acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
        z[j] += x[i + j] * 0.0f;
      }
  else
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; j++) {
        acc[j] = x[i + j] < acc[j] ? x[i + j] : acc[j];
        z[j] += x[i + j] * 0.0f;
      }
  for (; i < n; i++) {
    m = is_max ? (x[i] > m ? x[i] : m) : (x[i] < m ? x[i] : m);
    zs += x[i] * 0.0f;
  }
  for (int j = 0; j < 16; j++) {
    m = is_max ? (acc[j] > m ? acc[j] : m) : (acc[j] < m ? acc[j] : m);
    zs += z[j];
  }
  if (zs != 0) return -1; /* also true for NaN */
  int64_t r = 0;
  while (x[r] != m) r++;
  *val = m;
  return r;
}

/* Better: strictly beyond the best so far, or the first NaN (which then sticks). The
 * first occurrence wins ties, as in PyTorch. Written without branches so the column
 * loop vectorises. */
#define BETTER(v, best, CMP) (((v)CMP(best)) | (((v) != (v)) & ((best) == (best))))

#define EXTREME_LOOP(CMP)                                                                   \
  do {                                                                                      \
    if (g.inner == 1) {                                                                     \
      _Pragma("omp parallel for schedule(static) if (big)")                                 \
      for (int64_t o = 0; o < g.outer; o++) {                                               \
        const float *row = x + o * g.n;                                                     \
        float best = row[0];                                                                \
        int64_t bi = row_extreme(row, g.n, is_max, &best);                                  \
        if (bi < 0) {                                                                       \
          best = row[0];                                                                    \
          bi = 0;                                                                           \
          for (int64_t r = 1; r < g.n; r++)                                                 \
            if (BETTER(row[r], best, CMP)) {                                                \
              best = row[r];                                                                \
              bi = r;                                                                       \
            }                                                                               \
        }                                                                                   \
        if (vals) vals[o] = best;                                                           \
        idx[o] = (int32_t)bi;                                                               \
      }                                                                                     \
    } else {                                                                                \
      int64_t nb = (g.inner + CB - 1) / CB;                                                 \
      _Pragma("omp parallel for schedule(static) if (big)")                                 \
      for (int64_t t = 0; t < g.outer * nb; t++) {                                          \
        int64_t o = t / nb, j0 = (t % nb) * CB, w = g.inner - j0 < CB ? g.inner - j0 : CB;  \
        const float *base = x + o * g.n * g.inner + j0;                                     \
        float best[CB];                                                                     \
        int32_t bi[CB];                                                                     \
        for (int64_t j = 0; j < w; j++) {                                                   \
          best[j] = base[j];                                                                \
          bi[j] = 0;                                                                        \
        }                                                                                   \
        for (int64_t r = 1; r < g.n; r++) {                                                 \
          const float *row = base + r * g.inner;                                            \
          for (int64_t j = 0; j < w; j++) {                                                 \
            float v = row[j];                                                               \
            bool up = BETTER(v, best[j], CMP);                                              \
            bi[j] = up ? (int32_t)r : bi[j];                                                \
            best[j] = up ? v : best[j];                                                     \
          }                                                                                 \
        }                                                                                   \
        for (int64_t j = 0; j < w; j++) {                                                   \
          if (vals) vals[o * g.inner + j0 + j] = best[j];                                   \
          idx[o * g.inner + j0 + j] = bi[j];                                                \
        }                                                                                   \
      }                                                                                     \
    }                                                                                       \
  } while (0)

static void extreme_kernel(const float *x, float *vals, int32_t *idx, jbx_rgeom g, bool is_max) {
  bool big = g.outer * g.inner > 1 && g.outer * g.n * g.inner >= JBX_PAR_MIN;
  if (is_max) EXTREME_LOOP(>);
  else EXTREME_LOOP(<);
}

/* The gradient goes to the arg position only. node: in[0] = a; saved[0] = indices;
 * reduce_params. */
static int extreme_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  jbx_tensor *a = nd->in[0], *gc = jbx_plain(gout);
  jbx_tensor *gin = gc ? jbx_zeros0(a->ndim, a->shape) : NULL;
  if (gin) {
    jbx_rgeom geo = node_geom(nd);
    const float *g = jbx_f32(gc);
    const int32_t *idx = jbx_i32(nd->saved[0]);
    float *d = jbx_f32(gin);
    for (int64_t o = 0; o < geo.outer; o++)
      for (int64_t j = 0; j < geo.inner; j++) {
        int64_t k = o * geo.inner + j;
        d[(o * geo.n + idx[k]) * geo.inner + j] = g[k];
      }
  }
  jbx_release(gc);
  return jbx_give_grad(a, gin);
}

/* Values (when want_vals) and int32 positions; the positions are flat for ALL dims. */
static int extreme(const char *op, jbx_tensor *a, int dim, bool keepdim, bool is_max, bool want_vals,
                   jbx_tensor **vals, jbx_tensor **idx) {
  rplan p;
  if (make_plan(op, a, dim, keepdim, &p) < 0 || need_nonempty(op, a, &p) < 0) return -1;
  if (p.g.n > INT32_MAX) return jbx_fail("%s: dim of size %lld is too long for int32 indices", op, (long long)p.g.n);
  jbx_tensor *ac = jbx_plain(a);
  jbx_tensor *v = ac && want_vals ? jbx_empty(JBX_F32, p.ndim, p.shape) : NULL;
  jbx_tensor *ix = ac ? jbx_empty(JBX_I32, p.ndim, p.shape) : NULL;
  if (!ix || (want_vals && !v)) {
    jbx_release(ac);
    jbx_release(v);
    jbx_release(ix);
    return -1;
  }
  extreme_kernel(jbx_f32(ac), v ? jbx_f32(v) : NULL, jbx_i32(ix), p.g, is_max);
  jbx_release(ac);
  reduce_params rp = {p.dim, 1.0f};
  jbx_node *nd = v ? JBX_RECORD(v, op, extreme_backward, 1, &a, rp) : NULL;
  if (nd && jbx_node_save(nd, ix) < 0) {
    jbx_release(v);
    jbx_release(ix);
    return -1;
  }
  *vals = v;
  *idx = ix;
  return 0;
}

static jbx_tensor *values_of(const char *op, jbx_tensor *a, int dim, bool keepdim, bool is_max,
                             jbx_tensor **indices) {
  jbx_tensor *v = NULL, *ix = NULL;
  if (indices) *indices = NULL;
  if (extreme(op, a, dim, keepdim, is_max, true, &v, &ix) < 0) return NULL;
  if (indices) *indices = ix;
  else jbx_release(ix);
  return v;
}

jbx_tensor *jbx_max(jbx_tensor *a, int dim, bool keepdim, jbx_tensor **indices) {
  return values_of("max", a, dim, keepdim, true, indices);
}

jbx_tensor *jbx_min(jbx_tensor *a, int dim, bool keepdim, jbx_tensor **indices) {
  return values_of("min", a, dim, keepdim, false, indices);
}

jbx_tensor *jbx_argmax(jbx_tensor *a, int dim, bool keepdim) {
  jbx_tensor *v = NULL, *ix = NULL;
  return extreme("argmax", a, dim, keepdim, true, false, &v, &ix) < 0 ? NULL : ix;
}

jbx_tensor *jbx_argmin(jbx_tensor *a, int dim, bool keepdim) {
  jbx_tensor *v = NULL, *ix = NULL;
  return extreme("argmin", a, dim, keepdim, false, false, &v, &ix) < 0 ? NULL : ix;
}

/* ---------------------------------------------------------------- logsumexp */

/* An infinite max is not subtracted (inf - inf would be NaN). */
static inline float lse_shift(float m) { return isfinite(m) ? m : 0.0f; }

static void lse_kernel(const float *x, float *out, jbx_rgeom g) {
  bool big = g.outer * g.n * g.inner >= JBX_PAR_MIN;
  if (g.inner == 1) {
#pragma omp parallel for schedule(static) if (big && g.outer > 1)
    for (int64_t o = 0; o < g.outer; o++) {
      const float *row = x + o * g.n;
      float m = g.n ? lse_shift(jbx_fmax(row, g.n)) : 0.0f;
      out[o] = m + (float)log(jbx_exp_sum(row, NULL, g.n, m));
    }
    return;
  }
  int64_t nb = (g.inner + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (big && g.outer * nb > 1)
  for (int64_t t = 0; t < g.outer * nb; t++) {
    int64_t o = t / nb, j0 = (t % nb) * CB, w = g.inner - j0 < CB ? g.inner - j0 : CB;
    const float *base = x + o * g.n * g.inner + j0;
    float m[CB];
    double s[CB];
    for (int64_t j = 0; j < w; j++) {
      m[j] = -INFINITY;
      s[j] = 0;
    }
    for (int64_t r = 0; r < g.n; r++)
      for (int64_t j = 0; j < w; j++) m[j] = base[r * g.inner + j] > m[j] ? base[r * g.inner + j] : m[j];
    for (int64_t j = 0; j < w; j++) m[j] = lse_shift(m[j]);
    for (int64_t r = 0; r < g.n; r++)
      for (int64_t j = 0; j < w; j++) s[j] += expf(base[r * g.inner + j] - m[j]);
    for (int64_t j = 0; j < w; j++) out[o * g.inner + j0 + j] = m[j] + (float)log(s[j]);
  }
}

/* d lse / dx = exp(x - lse). node: in[0] = a; reduce_params. */
static int lse_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  jbx_tensor *a = nd->in[0], *gc = jbx_plain(gout), *ac = jbx_plain(a), *oc = jbx_plain(out);
  jbx_tensor *gin = gc && ac && oc ? jbx_empty(JBX_F32, a->ndim, a->shape) : NULL;
  if (gin) {
    jbx_rgeom geo = node_geom(nd);
    const float *g = jbx_f32(gc), *x = jbx_f32(ac), *l = jbx_f32(oc);
    float *d = jbx_f32(gin);
#pragma omp parallel for collapse(2) schedule(static) if (geo.outer * geo.n * geo.inner >= JBX_PAR_MIN)
    for (int64_t o = 0; o < geo.outer; o++)
      for (int64_t r = 0; r < geo.n; r++) {
        int64_t off = (o * geo.n + r) * geo.inner;
        for (int64_t j = 0; j < geo.inner; j++) {
          int64_t k = o * geo.inner + j;
          d[off + j] = g[k] * expf(x[off + j] - l[k]);
        }
      }
  }
  jbx_release(gc);
  jbx_release(ac);
  jbx_release(oc);
  return jbx_give_grad(a, gin);
}

jbx_tensor *jbx_logsumexp(jbx_tensor *a, int dim, bool keepdim) {
  rplan p;
  if (make_plan("logsumexp", a, dim, keepdim, &p) < 0) return NULL;
  jbx_tensor *ac = jbx_plain(a), *out = ac ? jbx_empty(JBX_F32, p.ndim, p.shape) : NULL;
  if (out) lse_kernel(jbx_f32(ac), jbx_f32(out), p.g);
  jbx_release(ac);
  record_reduce(out, "logsumexp", lse_backward, a, p.dim, 1.0f);
  return out;
}

/* ---------------------------------------------------------------- topk_mean */

/* NaN ranks above everything (as in torch.topk), so a row with NaN gives NaN. */
static inline float rank_key(float v) { return v != v ? INFINITY : v; }

/* The k-th largest of v[0..n) (1 <= k <= n); reorders v. Hoare selection, median-of-3 pivot. */
static float kth_largest(float *v, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1, target = k - 1;
  while (lo < hi) {
    float a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi];
    float pivot = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (v[i] > pivot) i++;
      while (v[j] < pivot) j--;
      if (i <= j) {
        float t = v[i];
        v[i++] = v[j];
        v[j--] = t;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return v[target]; /* between the halves: equal to the pivot */
  }
  return v[lo];
}

/* Positions in row v that can hold the k largest: those at or above a threshold taken
 * from an even sample (about twice k expected), so that the selection runs on a few
 * candidates instead of the whole row. Returns the count, 0 when the sample misjudged. */
static int64_t topk_candidates(const float *v, int64_t n, int64_t k, float *scratch, int32_t *cpos) {
  enum { S = 2048 };
  if (n < 4 * S || k * 8 > n) return 0;
  int64_t step = n / S, kk = k * S / n * 2 + 16;
  for (int64_t i = 0; i < S; i++) scratch[i] = rank_key(v[i * step]);
  float t = kth_largest(scratch, S, kk < S ? kk : S);
  int64_t c = 0;
  for (int64_t i = 0; i < n; i++)
    if (rank_key(v[i]) >= t) cpos[c++] = (int32_t)i;
  return c >= k ? c : 0;
}

/* Per row: picks the k largest (ties broken by lower position), writes their mean and
 * positions (ascending). */
static int topk_kernel(const float *x, float *out, int32_t *pos, int64_t rows, int64_t n, int64_t k) {
  int fail = 0;
#pragma omp parallel if (rows > 1 && rows * n >= JBX_PAR_MIN)
  {
    float *keys = malloc((size_t)n * sizeof *keys);
    int32_t *cpos = malloc((size_t)n * sizeof *cpos);
    if (!keys || !cpos) {
#pragma omp atomic write
      fail = 1;
    }
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; row++) {
      if (!keys || !cpos) continue;
      const float *v = x + row * n;
      int32_t *p = pos + row * k;
      int64_t c = topk_candidates(v, n, k, keys, cpos);
      if (c == 0) { /* every position is a candidate */
        for (int64_t i = 0; i < n; i++) cpos[i] = (int32_t)i;
        c = n;
      }
      for (int64_t q = 0; q < c; q++) keys[q] = rank_key(v[cpos[q]]);
      float thr = kth_largest(keys, c, k);
      int64_t above = 0, got = 0;
      for (int64_t q = 0; q < c; q++) above += rank_key(v[cpos[q]]) > thr;
      int64_t ties = k - above; /* positions equal to thr still to take */
      double s = 0;
      for (int64_t q = 0; q < c && got < k; q++) {
        float r = rank_key(v[cpos[q]]);
        if (r > thr || (r == thr && ties-- > 0)) {
          p[got++] = cpos[q];
          s += v[cpos[q]];
        }
      }
      out[row] = (float)(s / (double)k);
    }
    free(keys);
    free(cpos);
  }
  return fail ? jbx_fail("topk_mean: out of memory") : 0;
}

/* Gradient 1/k to each chosen position. node: in[0] = a; saved[0] = positions [rows, k]. */
static int topk_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  jbx_tensor *a = nd->in[0], *gc = jbx_plain(gout);
  jbx_tensor *gin = gc ? jbx_zeros0(a->ndim, a->shape) : NULL;
  if (gin) {
    int64_t n = a->shape[a->ndim - 1], k = nd->saved[0]->shape[1], rows = nd->saved[0]->shape[0];
    const int32_t *pos = jbx_i32(nd->saved[0]);
    const float *g = jbx_f32(gc);
    float *d = jbx_f32(gin);
    for (int64_t row = 0; row < rows; row++)
      for (int64_t c = 0; c < k; c++) d[row * n + pos[row * k + c]] = g[row] / (float)k;
  }
  jbx_release(gc);
  return jbx_give_grad(a, gin);
}

jbx_tensor *jbx_topk_mean(jbx_tensor *a, int64_t k) {
  char s[160];
  if (!a) {
    jbx_fail("topk_mean: input is NULL");
    return NULL;
  }
  if (a->dtype != JBX_F32) {
    jbx_fail("topk_mean: needs a float32 tensor, got int32 %s", jbx_shape_str(a, s, sizeof s));
    return NULL;
  }
  if (a->ndim == 0) {
    jbx_fail("topk_mean: needs at least 1 dim, got a 0-dim tensor");
    return NULL;
  }
  int64_t n = a->shape[a->ndim - 1];
  if (k < 1 || k > n) {
    jbx_fail("topk_mean: k = %lld is out of range for the last dim (size %lld) of %s", (long long)k,
             (long long)n, jbx_shape_str(a, s, sizeof s));
    return NULL;
  }
  if (n > INT32_MAX) {
    jbx_fail("topk_mean: last dim of size %lld is too long for int32 positions", (long long)n);
    return NULL;
  }
  int64_t rows = jbx_numel(a) / n, pshape[2] = {rows, k};
  jbx_tensor *ac = jbx_plain(a);
  jbx_tensor *out = ac ? jbx_empty(JBX_F32, a->ndim - 1, a->shape) : NULL;
  jbx_tensor *pos = out ? jbx_empty(JBX_I32, 2, pshape) : NULL;
  if (pos && topk_kernel(jbx_f32(ac), jbx_f32(out), jbx_i32(pos), rows, n, k) < 0) {
    jbx_release(out);
    out = NULL;
  }
  jbx_release(ac);
  jbx_node *nd = out ? jbx_record(out, "topk_mean", topk_backward, 1, &a) : NULL;
  if (nd && jbx_node_save(nd, pos) < 0) {
    jbx_release(out);
    out = NULL;
  }
  jbx_release(pos);
  return out;
}
