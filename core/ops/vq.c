/* The VQ bottleneck: assignment through sgemm over row blocks with a fused argmin,
 * dequantisation, the fused straight-through + commit forward, and the EMA codebook
 * update (scatter-add over the batch, never a dense one-hot). Semantics follow
 * jukebox/vqvae/bottleneck.py; see jbx_vq.h. */
#include "jbx_vq.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "jbx_dist.h"
#include "jbx_error.h"
#include "jbx_gemm.h"
#include "op_kit.h"

/* Below this many distance entries a block's argmin stays on one thread. */
#define VQ_PAR_MIN 65536

/* ---- validation ---- */

/* "[4, 3]" for float tensors, "int32 [4, 3]" for int32 ones. */
static const char *desc(const jbx_tensor *t, char *buf, int size) {
  char s[128];
  snprintf(buf, (size_t)size, "%s%s", t->dtype == JBX_I32 ? "int32 " : "", jbx_shape_str(t, s, sizeof s));
  return buf;
}

static int check_k(const char *op, const jbx_tensor *k) {
  char a[160];
  if (!k) return jbx_fail("%s: codebook k is NULL", op);
  if (k->dtype != JBX_F32 || k->ndim != 2 || k->shape[0] < 1 || k->shape[1] < 1)
    return jbx_fail("%s: codebook k must be float32 [K, D] with K, D >= 1, got %s", op,
                    desc(k, a, sizeof a));
  if (k->shape[0] > INT32_MAX || k->shape[1] > INT_MAX / 2 || k->shape[0] * k->shape[1] > INT_MAX)
    return jbx_fail("%s: codebook k %s is too large", op, desc(k, a, sizeof a));
  return 0;
}

static int check_x(const char *op, const jbx_tensor *x, const jbx_tensor *k) {
  char a[160], b[160];
  if (!x) return jbx_fail("%s: x is NULL", op);
  if (x->dtype != JBX_F32 || x->ndim != 2)
    return jbx_fail("%s: x must be float32 [N, D] (one encoder output per row), got %s", op,
                    desc(x, a, sizeof a));
  if (x->shape[0] < 1) return jbx_fail("%s: x %s has no rows", op, desc(x, a, sizeof a));
  if (x->shape[1] != k->shape[1])
    return jbx_fail("%s: x %s and codebook k %s differ in width (%lld vs %lld)", op,
                    desc(x, a, sizeof a), desc(k, b, sizeof b), (long long)x->shape[1],
                    (long long)k->shape[1]);
  return 0;
}

/* codes must be int32; with x, one per row of x. */
static int check_codes(const char *op, const jbx_tensor *codes, const jbx_tensor *x) {
  char a[160], b[160];
  if (!codes) return jbx_fail("%s: codes is NULL", op);
  if (codes->dtype != JBX_I32)
    return jbx_fail("%s: codes must be int32, got float32 %s", op, desc(codes, a, sizeof a));
  if (x && jbx_numel(codes) != x->shape[0])
    return jbx_fail("%s: %lld codes %s for the %lld rows of x %s: one code per row expected", op,
                    (long long)jbx_numel(codes), jbx_shape_str(codes, a, sizeof a),
                    (long long)x->shape[0], jbx_shape_str(x, b, sizeof b));
  return 0;
}

static int check_range(const char *op, const int32_t *c, int64_t n, int64_t kb) {
  for (int64_t i = 0; i < n; i++)
    if (c[i] < 0 || c[i] >= kb)
      return jbx_fail("%s: code %d at position %lld is out of range for a codebook of %lld codes",
                      op, (int)c[i], (long long)i, (long long)kb);
  return 0;
}

/* The EMA state is written in place, so it must be dense and unaliased. */
static int check_state(const char *op, jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem) {
  char a[160], b[160];
  if (check_k(op, k) < 0) return -1;
  if (!k_sum || !k_elem) return jbx_fail("%s: k_sum and k_elem must not be NULL", op);
  if (k_sum->dtype != JBX_F32 || !jbx_same_shape(k_sum, k))
    return jbx_fail("%s: k_sum %s must be float32 with the shape of k %s", op,
                    desc(k_sum, a, sizeof a), desc(k, b, sizeof b));
  if (k_elem->dtype != JBX_F32 || k_elem->ndim != 1 || k_elem->shape[0] != k->shape[0])
    return jbx_fail("%s: k_elem %s must be float32 [%lld], one count per code of k %s", op,
                    desc(k_elem, a, sizeof a), (long long)k->shape[0], desc(k, b, sizeof b));
  if (!jbx_is_contiguous(k) || !jbx_is_contiguous(k_sum) || !jbx_is_contiguous(k_elem))
    return jbx_fail("%s: k, k_sum and k_elem must be contiguous (they are updated in place)", op);
  if (k->storage == k_sum->storage || k->storage == k_elem->storage ||
      k_sum->storage == k_elem->storage)
    return jbx_fail("%s: k, k_sum and k_elem must not share storage (pass clones)", op);
  return 0;
}

/* jbx_plain(x), but a private copy when x shares storage with the state written in place. */
static jbx_tensor *dense_unaliased(jbx_tensor *x, jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem) {
  if (x->storage != k->storage && x->storage != k_sum->storage && x->storage != k_elem->storage)
    return jbx_plain(x);
  jbx_tensor *d = jbx_detach(x);
  jbx_tensor *c = d ? jbx_clone(d) : NULL;
  jbx_release(d);
  return c;
}

/* ---- kernels ---- */

/* argmin_j (xn + s[j]) + kn[j] in the reference's order of float operations (so near-ties
 * resolve alike), first index on exact ties. Eight independent lanes let the compiler
 * vectorise; combining them by (value, index) keeps the sequential answer. */
#define VQ_LANES 8
static int32_t argmin_row(float xn, const float *s, const float *kn, int64_t kb, float *min_out) {
  float best[VQ_LANES];
  int32_t arg[VQ_LANES];
  int64_t j = 0;
  if (kb >= VQ_LANES) {
    for (int l = 0; l < VQ_LANES; l++) {
      best[l] = (xn + s[l]) + kn[l];
      arg[l] = l;
    }
    for (j = VQ_LANES; j + VQ_LANES <= kb; j += VQ_LANES)
      for (int l = 0; l < VQ_LANES; l++) {
        float v = (xn + s[j + l]) + kn[j + l];
        bool lt = v < best[l];
        best[l] = lt ? v : best[l];
        arg[l] = lt ? (int32_t)(j + l) : arg[l];
      }
  } else {
    for (int l = 0; l < VQ_LANES; l++) {
      best[l] = INFINITY;
      arg[l] = INT32_MAX;
    }
  }
  float b = best[0];
  int32_t a = arg[0];
  for (int l = 1; l < VQ_LANES; l++)
    if (best[l] < b || (best[l] == b && arg[l] < a)) b = best[l], a = arg[l];
  for (; j < kb; j++) { /* the tail comes after every lane index, so strict < is right */
    float v = (xn + s[j]) + kn[j];
    if (v < b || a == INT32_MAX) b = v, a = (int32_t)j;
  }
  *min_out = b;
  return a;
}

/* codes[i] = nearest code of row i: distances by sgemm one block of rows at a time (the
 * block stays in cache for the argmin that follows). */
static int assign_rows(const char *op, const float *x, const float *k, int64_t n, int64_t kb,
                       int64_t d, int32_t *codes, float *min_dist) {
  int64_t rows = n < JBX_VQ_BLOCK_ROWS ? n : JBX_VQ_BLOCK_ROWS;
  float *kn = malloc((size_t)kb * sizeof *kn);
  float *dist = malloc((size_t)(rows * kb) * sizeof *dist);
  if (!kn || !dist) {
    free(kn);
    free(dist);
    return jbx_fail("%s: out of memory for a %lld x %lld distance block", op, (long long)rows,
                    (long long)kb);
  }
  for (int64_t j = 0; j < kb; j++) {
    double s = 0;
    for (int64_t c = 0; c < d; c++) s += (double)k[j * d + c] * k[j * d + c];
    kn[j] = (float)s;
  }
  for (int64_t r0 = 0; r0 < n; r0 += rows) {
    int64_t nb = n - r0 < rows ? n - r0 : rows;
    jbx_sgemm(CblasNoTrans, CblasTrans, (int)nb, (int)kb, (int)d, -2.0f,
              x + r0 * d, (int)d, k, (int)d, 0.0f, dist, (int)kb);
#pragma omp parallel for schedule(static) if (nb * kb >= VQ_PAR_MIN)
    for (int64_t i = 0; i < nb; i++) {
      const float *xi = x + (r0 + i) * d;
      double s = 0;
      for (int64_t c = 0; c < d; c++) s += (double)xi[c] * xi[c];
      float m;
      codes[r0 + i] = argmin_row((float)s, dist + i * kb, kn, kb, &m);
      if (min_dist) min_dist[r0 + i] = m;
    }
  }
  free(kn);
  free(dist);
  return 0;
}

/* ||x - mean(x)|| / sqrt(n) in double, two passes. */
static double prenorm(const float *x, int64_t n) {
  double mean = 0, s = 0;
  for (int64_t i = 0; i < n; i++) mean += x[i];
  mean /= (double)n;
  for (int64_t i = 0; i < n; i++) s += (x[i] - mean) * (x[i] - mean);
  return sqrt(s / (double)n);
}

/* Scratch for random_rows: one index per row of the batch tiled to >= kb rows. Allocated
 * before any state is touched, so an update cannot fail half-way. */
static int64_t *tile_index_alloc(const char *op, int64_t n, int64_t kb) {
  int64_t reps = n < kb ? (kb + n - 1) / n : 1;
  int64_t *idx = malloc((size_t)(n * reps) * sizeof *idx);
  if (!idx) jbx_fail("%s: out of memory", op);
  return idx;
}

/* The reference's `y = tile(x); y[randperm(len(y))][:kb]` for the codes with pick[j]
 * (all when pick is NULL), written to row j of dst: a partial Fisher-Yates shuffle up to
 * the last picked code, then noise of std 0.01/sqrt(d) on every row when the batch had
 * to be tiled (n < kb). Only the picked rows draw noise.
 * x holds rows [first, first + n_here) of a batch of n rows spread over processes (all
 * of it: first 0, n_here n); a picked row held elsewhere is written as zeros, after the
 * same draws, so a sum over the processes gives every one the whole pick. */
static void random_rows(const float *x, int64_t first, int64_t n_here, int64_t n, int64_t d, int64_t kb,
                        const unsigned char *pick, jbx_rng *rng, int64_t *idx, float *dst) {
  int64_t last = -1;
  for (int64_t j = 0; j < kb; j++)
    if (!pick || pick[j]) last = j;
  if (last < 0) return;
  int64_t reps = n < kb ? (kb + n - 1) / n : 1, m = n * reps;
  for (int64_t i = 0; i < m; i++) idx[i] = i;
  for (int64_t j = 0; j <= last; j++) {
    int64_t r = j + (int64_t)jbx_rng_below(rng, (uint64_t)(m - j)), t = idx[j];
    idx[j] = idx[r];
    idx[r] = t;
  }
  double std = 0.01 / sqrt((double)d);
  for (int64_t j = 0; j <= last; j++) {
    if (pick && !pick[j]) continue;
    int64_t row = idx[j] % n - first;
    const float *src = row >= 0 && row < n_here ? x + row * d : NULL;
    float *o = dst + j * d;
    for (int64_t c = 0; c < d; c++) {
      float noise = reps > 1 ? (float)(std * jbx_rng_normal(rng)) : 0.0f;
      o[c] = src ? (reps > 1 ? src[c] + noise : src[c]) : 0.0f;
    }
  }
}

/* random_rows over this process's batch, or (across) over the batch of every process
 * (jbx_dist.h): each fills the picked rows it holds and one sum over the processes, of
 * the picked rows only, gives every process all of them. scratch holds kb * d floats. */
static int pick_rows(const float *x, int64_t first, int64_t n_here, int64_t n, int64_t d, int64_t kb,
                     const unsigned char *pick, jbx_rng *rng, int64_t *idx, float *scratch, float *dst,
                     bool across) {
  if (!across) {
    random_rows(x, 0, n, n, d, kb, pick, rng, idx, dst);
    return 0;
  }
  random_rows(x, first, n_here, n, d, kb, pick, rng, idx, scratch);
  size_t row = (size_t)d * sizeof *scratch;
  int64_t p = 0;
  for (int64_t j = 0; j < kb; j++)
    if (!pick || pick[j]) memmove(scratch + (p++) * d, scratch + j * d, row);
  if (jbx_dist_allreduce_sum_f32(scratch, p * d) < 0) return -1;
  p = 0;
  for (int64_t j = 0; j < kb; j++)
    if (!pick || pick[j]) memcpy(dst + j * d, scratch + (p++) * d, row);
  return 0;
}

/* Where this process's n rows sit in the batch of every process: first row and total. */
static int batch_span(bool across, int64_t n, int64_t *first, int64_t *total) {
  *first = 0;
  *total = n;
  return across ? jbx_dist_offset(n, first, total) : 0;
}

/* ---- assignment ---- */

int jbx_vq_assign(jbx_tensor *x, jbx_tensor *k, jbx_tensor **codes, jbx_tensor **min_dist) {
  const char *op = "vq_assign";
  if (!codes) return jbx_fail("%s: codes output is NULL", op);
  *codes = NULL;
  if (min_dist) *min_dist = NULL;
  if (check_k(op, k) < 0 || check_x(op, x, k) < 0) return -1;
  int64_t n = x->shape[0], kb = k->shape[0], d = k->shape[1];
  jbx_tensor *xc = jbx_plain(x), *kc = jbx_plain(k);
  jbx_tensor *c = jbx_empty(JBX_I32, 1, &n), *md = min_dist ? jbx_empty(JBX_F32, 1, &n) : NULL;
  int rc = -1;
  if (xc && kc && c && (md || !min_dist))
    rc = assign_rows(op, jbx_f32(xc), jbx_f32(kc), n, kb, d, jbx_i32(c), md ? jbx_f32(md) : NULL);
  jbx_release(xc);
  jbx_release(kc);
  if (rc < 0) {
    jbx_release(c);
    jbx_release(md);
    return -1;
  }
  *codes = c;
  if (min_dist) *min_dist = md;
  return 0;
}

/* ---- dequantisation (differentiable in k) ---- */

static int dequantise_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  jbx_tensor *k = nd->in[0], *codes = nd->saved[0];
  if (!k->requires_grad) return 0;
  int64_t n = jbx_numel(codes), d = k->shape[1];
  jbx_tensor *g = jbx_plain(gout), *gk = jbx_zeros(2, k->shape);
  int rc = -1;
  if (g && gk) {
    const int32_t *c = jbx_i32(codes);
    const float *gv = jbx_f32(g);
    float *gkv = jbx_f32(gk);
    for (int64_t i = 0; i < n; i++) {
      float *dst = gkv + (int64_t)c[i] * d;
      const float *src = gv + i * d;
      for (int64_t e = 0; e < d; e++) dst[e] += src[e];
    }
    rc = jbx_accum_grad(k, gk);
  }
  jbx_release(g);
  jbx_release(gk);
  return rc;
}

jbx_tensor *jbx_vq_dequantise(jbx_tensor *k, jbx_tensor *codes) {
  const char *op = "vq_dequantise";
  char a[160];
  if (check_k(op, k) < 0 || check_codes(op, codes, NULL) < 0) return NULL;
  if (codes->ndim >= JBX_MAX_DIMS) {
    jbx_fail("%s: codes %s have too many dims (at most %d)", op, desc(codes, a, sizeof a),
             JBX_MAX_DIMS - 1);
    return NULL;
  }
  int64_t n = jbx_numel(codes), kb = k->shape[0], d = k->shape[1];
  jbx_tensor *kc = jbx_plain(k), *cc = jbx_plain(codes), *out = NULL;
  if (!kc || !cc || check_range(op, jbx_i32(cc), n, kb) < 0) goto done;
  int64_t shape[JBX_MAX_DIMS];
  memcpy(shape, codes->shape, sizeof(int64_t) * (size_t)codes->ndim);
  shape[codes->ndim] = d;
  out = jbx_empty(JBX_F32, codes->ndim + 1, shape);
  if (!out) goto done;
  const int32_t *c = jbx_i32(cc);
  const float *kv = jbx_f32(kc);
  float *ov = jbx_f32(out);
  for (int64_t i = 0; i < n; i++) memcpy(ov + i * d, kv + (int64_t)c[i] * d, (size_t)d * sizeof *ov);
  if (jbx_needs_grad(1, &k)) {
    jbx_node *nd = jbx_record(out, op, dequantise_backward, 1, &k);
    if (nd && jbx_node_save(nd, cc) < 0) {
      jbx_release(out);
      out = NULL;
    }
  }
done:
  jbx_release(kc);
  jbx_release(cc);
  return out;
}

/* ---- the fused forward: straight-through output and commit loss ---- */

static int passthrough_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  return nd->in[0]->requires_grad ? jbx_accum_grad(nd->in[0], gout) : 0;
}

/* d commit / d x = 2 (x - k[codes]) / numel(x); saved[0] holds k[codes]. */
static int commit_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  jbx_tensor *x = nd->in[0];
  if (!x->requires_grad) return 0;
  jbx_tensor *xc = jbx_plain(x), *g = jbx_empty(JBX_F32, x->ndim, x->shape);
  int rc = -1;
  if (xc && g) {
    int64_t n = jbx_numel(xc);
    double scale = 2.0 * jbx_get(gout, 0) / (double)n;
    const float *xv = jbx_f32(xc), *qv = jbx_f32(nd->saved[0]);
    float *gv = jbx_f32(g);
    for (int64_t i = 0; i < n; i++) gv[i] = (float)(scale * ((double)xv[i] - qv[i]));
    rc = jbx_accum_grad(x, g);
  }
  jbx_release(xc);
  jbx_release(g);
  return rc;
}

void jbx_vq_result_free(jbx_vq_result *r) {
  if (!r) return;
  jbx_release(r->codes);
  jbx_release(r->x_q);
  jbx_release(r->commit);
  memset(r, 0, sizeof *r);
}

int jbx_vq_quantise(jbx_tensor *x, jbx_tensor *k, jbx_vq_result *out) {
  const char *op = "vq_quantise";
  if (!out) return jbx_fail("%s: result is NULL", op);
  memset(out, 0, sizeof *out);
  if (check_k(op, k) < 0 || check_x(op, x, k) < 0) return -1;
  int64_t n = x->shape[0], kb = k->shape[0], d = k->shape[1], shape[2] = {n, d};
  jbx_tensor *xc = jbx_plain(x), *kc = jbx_plain(k), *xd = jbx_empty(JBX_F32, 2, shape);
  float *md = malloc((size_t)n * sizeof *md);
  double *row = malloc((size_t)n * sizeof *row);
  out->codes = jbx_empty(JBX_I32, 1, &n);
  out->x_q = jbx_empty(JBX_F32, 2, shape);
  int rc = -1;
  if (!md || !row) jbx_fail("%s: out of memory", op);
  else if (xc && kc && xd && out->codes && out->x_q)
    rc = assign_rows(op, jbx_f32(xc), jbx_f32(kc), n, kb, d, jbx_i32(out->codes), md);
  if (rc == 0) {
    const float *xv = jbx_f32(xc), *kv = jbx_f32(kc);
    const int32_t *cv = jbx_i32(out->codes);
    float *dv = jbx_f32(xd), *qv = jbx_f32(out->x_q);
#pragma omp parallel for schedule(static) if (n * d >= VQ_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
      const float *xi = xv + i * d, *ki = kv + (int64_t)cv[i] * d;
      float *di = dv + i * d, *qi = qv + i * d;
      double s = 0;
      for (int64_t c = 0; c < d; c++) {
        float diff = ki[c] - xi[c];
        di[c] = ki[c];
        qi[c] = xi[c] + diff; /* the reference's x + (x_d - x).detach(), rounding included */
        s += (double)diff * diff;
      }
      row[i] = s;
    }
    /* Serial sums: the same result whatever the thread count. */
    double fit = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
      fit += md[i];
      sq += row[i];
    }
    out->fit = fit / (double)n;
    out->commit = jbx_scalar((float)(sq / (double)(n * d)));
    if (!out->commit) rc = -1;
  }
  if (rc == 0 && jbx_needs_grad(1, &x)) {
    jbx_record(out->x_q, "vq_straight_through", passthrough_backward, 1, &x);
    jbx_node *nd = jbx_record(out->commit, "vq_commit", commit_backward, 1, &x);
    if (nd && jbx_node_save(nd, xd) < 0) rc = -1;
  }
  jbx_release(xc);
  jbx_release(kc);
  jbx_release(xd);
  free(md);
  free(row);
  if (rc < 0) jbx_vq_result_free(out);
  return rc;
}

int jbx_vq_prenorm(jbx_tensor *x, double *out) {
  char a[160];
  if (!x || !out) return jbx_fail("vq_prenorm: x and out must not be NULL");
  if (x->dtype != JBX_F32 || jbx_numel(x) < 1)
    return jbx_fail("vq_prenorm: x must be a non-empty float32 tensor, got %s", desc(x, a, sizeof a));
  jbx_tensor *xc = jbx_plain(x);
  if (!xc) return -1;
  *out = prenorm(jbx_f32(xc), jbx_numel(xc));
  jbx_release(xc);
  return 0;
}

/* ---- the EMA codebook ---- */

static int init_from_data(jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem, jbx_tensor *x, jbx_rng *rng,
                          bool across) {
  const char *op = "vq_init";
  if (check_state(op, k, k_sum, k_elem) < 0 || check_x(op, x, k) < 0) return -1;
  if (!rng) rng = jbx_default_rng();
  across = across && jbx_dist_size() > 1;
  int64_t n = x->shape[0], kb = k->shape[0], d = k->shape[1], first, total;
  if (batch_span(across, n, &first, &total) < 0) return -1;
  jbx_tensor *xc = dense_unaliased(x, k, k_sum, k_elem);
  int64_t *idx = xc ? tile_index_alloc(op, total, kb) : NULL;
  float *scratch = malloc((size_t)(kb * d) * sizeof *scratch);
  int rc = -1;
  if (!scratch) jbx_fail("%s: out of memory", op);
  if (idx && scratch && pick_rows(jbx_f32(xc), first, n, total, d, kb, NULL, rng, idx, scratch, scratch, across) == 0) {
    float *ke = jbx_f32(k_elem);
    memcpy(jbx_f32(k), scratch, (size_t)(kb * d) * sizeof *scratch);
    memcpy(jbx_f32(k_sum), scratch, (size_t)(kb * d) * sizeof *scratch);
    for (int64_t j = 0; j < kb; j++) ke[j] = 1.0f;
    rc = 0;
  }
  free(scratch);
  free(idx);
  jbx_release(xc);
  return rc;
}

int jbx_vq_init_from_data(jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem, jbx_tensor *x,
                          jbx_rng *rng) {
  return init_from_data(k, k_sum, k_elem, x, rng, false);
}

int jbx_vq_init_across(jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem, jbx_tensor *x, jbx_rng *rng) {
  return init_from_data(k, k_sum, k_elem, x, rng, true);
}

int jbx_vq_ema_update(jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem, jbx_tensor *x,
                      jbx_tensor *codes, double mu, double threshold, jbx_rng *rng,
                      jbx_vq_metrics *m) {
  return jbx_vq_ema_update_ex(k, k_sum, k_elem, x, codes, mu, threshold, true, rng, m);
}

/* The EMA step of jbx_vq_ema_update_ex; across: over the batch of every process, whose
 * statistics (counts, onehot^T x, fit and the sums behind pn) are summed in one
 * all-reduce, so every process makes the same update as one process with the whole
 * batch would (to the rounding of the sums' order). */
static int ema_update(jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem, jbx_tensor *x, jbx_tensor *codes,
                      double mu, double threshold, bool restart_dead, jbx_rng *rng, jbx_vq_metrics *m,
                      bool across) {
  const char *op = "vq_ema_update";
  if (check_state(op, k, k_sum, k_elem) < 0 || check_x(op, x, k) < 0 ||
      check_codes(op, codes, x) < 0)
    return -1;
  if (!(mu >= 0 && mu <= 1)) return jbx_fail("%s: mu must be in [0, 1], got %g", op, mu);
  if (!(threshold >= 0) || isinf(threshold))
    return jbx_fail("%s: threshold must be finite and >= 0, got %g", op, threshold);
  if (!rng) rng = jbx_default_rng();
  across = across && jbx_dist_size() > 1;
  int64_t n = x->shape[0], kb = k->shape[0], d = k->shape[1], first, total;
  if (batch_span(across, n, &first, &total) < 0) return -1;
  jbx_tensor *xc = dense_unaliased(x, k, k_sum, k_elem), *cc = jbx_plain(codes);
  /* The statistics, one buffer for one all-reduce: counts [kb], sums [kb, d], then fit,
   * sum of x, sum of x^2. */
  double *counts = calloc((size_t)(kb + kb * d + 3), sizeof *counts);
  double *sums = counts ? counts + kb : NULL, *tail = counts ? sums + kb * d : NULL;
  float *old = malloc((size_t)(kb * d) * sizeof *old);
  float *scratch = across ? malloc((size_t)(kb * d) * sizeof *scratch) : NULL;
  unsigned char *restart = calloc((size_t)kb, 1);
  int64_t *idx = tile_index_alloc(op, total, kb);
  int rc = -1;
  if (!counts || !old || !restart || (across && !scratch)) jbx_fail("%s: out of memory", op);
  if (!xc || !cc || !counts || !old || !restart || (across && !scratch) || !idx) goto done;
  const float *xv = jbx_f32(xc);
  const int32_t *cv = jbx_i32(cc);
  if (check_range(op, cv, n, kb) < 0) goto done;
  float *kv = jbx_f32(k), *ks = jbx_f32(k_sum), *ke = jbx_f32(k_elem);

  /* One pass over the batch: fit against the current codebook, counts, onehot^T x. */
  double fit = 0, xsum = 0, xsq = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *xi = xv + i * d, *ki = kv + (int64_t)cv[i] * d;
    double *si = sums + (int64_t)cv[i] * d;
    for (int64_t c = 0; c < d; c++) {
      double diff = (double)xi[c] - ki[c];
      fit += diff * diff;
      si[c] += xi[c];
      xsum += xi[c];
      xsq += (double)xi[c] * xi[c];
    }
    counts[cv[i]] += 1;
  }
  tail[0] = fit;
  tail[1] = xsum;
  tail[2] = xsq;
  if (across && jbx_dist_allreduce_sum_f64(counts, kb + kb * d + 3) < 0) goto done;
  fit = tail[0];
  memcpy(old, kv, (size_t)(kb * d) * sizeof *old);

  int64_t n_dead = 0, n_restart = 0;
  for (int64_t j = 0; j < kb; j++) {
    ke[j] = (float)(mu * ke[j] + (1 - mu) * counts[j]);
    for (int64_t c = 0; c < d; c++)
      ks[j * d + c] = (float)(mu * ks[j * d + c] + (1 - mu) * sums[j * d + c]);
    /* k_elem > 0 too: with threshold 0 an empty code would otherwise become 0/0. */
    bool live = ke[j] >= threshold && ke[j] > 0;
    if (!live) n_dead++;
    if (live || (!restart_dead && ke[j] > JBX_VQ_ELEM_EPS)) {
      for (int64_t c = 0; c < d; c++) kv[j * d + c] = ks[j * d + c] / ke[j];
    } else if (restart_dead) {
      restart[j] = 1;
      n_restart++;
    }
  }
  if (n_restart && pick_rows(xv, first, n, total, d, kb, restart, rng, idx, scratch, kv, across) < 0) goto done;

  if (m) {
    double entropy = 0, dk = 0;
    int64_t used_curr = 0;
    for (int64_t j = 0; j < kb; j++) {
      double p = counts[j] / (double)total;
      entropy -= p * log(p + 1e-8);
      if (counts[j] >= threshold) used_curr++;
    }
    for (int64_t i = 0; i < kb * d; i++) dk += ((double)kv[i] - old[i]) * ((double)kv[i] - old[i]);
    m->usage = (double)(kb - n_dead);
    m->used_curr = (double)used_curr;
    m->entropy = entropy;
    m->dk = sqrt(dk / (double)(kb * d));
    m->fit = fit / (double)total;
    if (across) { /* pn from the summed moments: the batch is spread over the processes */
      double all = (double)(total * d), mean = tail[1] / all;
      m->pn = sqrt(fmax(tail[2] / all - mean * mean, 0));
    } else {
      m->pn = prenorm(xv, n * d);
    }
  }
  rc = 0;
done:
  jbx_release(xc);
  jbx_release(cc);
  free(counts);
  free(old);
  free(scratch);
  free(restart);
  free(idx);
  return rc;
}

int jbx_vq_ema_update_ex(jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem, jbx_tensor *x,
                         jbx_tensor *codes, double mu, double threshold, bool restart_dead,
                         jbx_rng *rng, jbx_vq_metrics *m) {
  return ema_update(k, k_sum, k_elem, x, codes, mu, threshold, restart_dead, rng, m, false);
}

int jbx_vq_ema_update_across(jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem, jbx_tensor *x,
                             jbx_tensor *codes, double mu, double threshold, bool restart_dead,
                             jbx_rng *rng, jbx_vq_metrics *m) {
  return ema_update(k, k_sum, k_elem, x, codes, mu, threshold, restart_dead, rng, m, true);
}
