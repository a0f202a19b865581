/* Reductions, softmax, log_softmax and layer_norm: values against hand-computed references and
 * double-precision loops, gradient checks (every dim, keepdim both ways, non-contiguous
 * inputs), and every error message. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "gradcheck.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_rng.h"

static jbx_tensor *mat(int64_t r, int64_t c, const float *v) {
  int64_t s[2] = {r, c};
  return jbx_from_floats(2, s, v);
}

/* Every element of t equals want[] (row-major), within tol. */
static void check_values(const char *what, jbx_tensor *t, const double *want, int64_t n, double tol) {
  CHECK(t != NULL, "%s: NULL (%s)", what, jbx_last_error());
  if (!t) return;
  CHECK(jbx_numel(t) == n, "%s: %lld elements, want %lld", what, (long long)jbx_numel(t), (long long)n);
  for (int64_t i = 0; i < n && i < jbx_numel(t); i++) {
    double got = jbx_get(t, i);
    bool ok = (isnan(want[i]) && isnan(got)) || (isinf(want[i]) && got == want[i]) ||
              fabs(got - want[i]) <= tol * (1 + fabs(want[i]));
    CHECK(ok, "%s[%lld]: %.8g vs %.8g", what, (long long)i, got, want[i]);
  }
}

static void check_shape(const char *what, jbx_tensor *t, int ndim, const int64_t *shape) {
  CHECK(t && t->ndim == ndim, "%s: ndim %d, want %d", what, t ? t->ndim : -1, ndim);
  for (int d = 0; t && d < ndim && d < t->ndim; d++)
    CHECK(t->shape[d] == shape[d], "%s: dim %d is %lld, want %lld", what, d, (long long)t->shape[d],
          (long long)shape[d]);
}

/* A leaf whose values are distinct and at least 0.05 apart (a shuffled ramp), so that
 * max/min/topk choices do not flip under the finite-difference step. */
static jbx_tensor *distinct_input(int ndim, const int64_t *shape, uint64_t seed) {
  jbx_rng rng;
  jbx_rng_seed(&rng, seed);
  jbx_tensor *t = jbx_empty(JBX_F32, ndim, shape);
  int64_t n = jbx_numel(t);
  float *p = jbx_f32(t);
  for (int64_t i = 0; i < n; i++) p[i] = 0.05f * (float)(i - n / 2);
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)jbx_rng_below(&rng, (uint64_t)i + 1);
    float tmp = p[i];
    p[i] = p[j];
    p[j] = tmp;
  }
  t->requires_grad = true;
  return t;
}

/* ---------------------------------------------------------------- values */

static void test_sum_mean_values(void) {
  const float v[6] = {1, 2, 3, 4, 5, 6};
  jbx_tensor *a = mat(2, 3, v);
  jbx_tensor *t;
  t = jbx_sum(a, 0, false);
  check_values("sum dim0", t, (double[]){5, 7, 9}, 3, 0);
  check_shape("sum dim0", t, 1, (int64_t[]){3});
  jbx_release(t);
  t = jbx_sum(a, -1, true);
  check_values("sum dim-1 keep", t, (double[]){6, 15}, 2, 0);
  check_shape("sum dim-1 keep", t, 2, (int64_t[]){2, 1});
  jbx_release(t);
  t = jbx_sum(a, JBX_ALL_DIMS, false);
  check_values("sum all", t, (double[]){21}, 1, 0);
  check_shape("sum all", t, 0, NULL);
  jbx_release(t);
  t = jbx_sum(a, JBX_ALL_DIMS, true);
  check_shape("sum all keep", t, 2, (int64_t[]){1, 1});
  jbx_release(t);
  t = jbx_mean(a, 0, false);
  check_values("mean dim0", t, (double[]){2.5, 3.5, 4.5}, 3, 1e-7);
  jbx_release(t);
  t = jbx_mean(a, JBX_ALL_DIMS, false);
  check_values("mean all", t, (double[]){3.5}, 1, 1e-7);
  jbx_release(t);
  /* A 0-dim tensor reduces over its one element. */
  jbx_tensor *s = jbx_scalar(4.0f);
  t = jbx_sum(s, 0, false);
  check_values("sum of 0-dim", t, (double[]){4}, 1, 0);
  jbx_release(t);
  jbx_release(s);
  /* Sum over a dim of size 0 is 0; mean is NaN, as in PyTorch. */
  jbx_tensor *e = jbx_empty(JBX_F32, 2, (int64_t[]){2, 0});
  t = jbx_sum(e, 1, false);
  check_values("sum empty", t, (double[]){0, 0}, 2, 0);
  jbx_release(t);
  t = jbx_mean(e, 1, false);
  check_values("mean empty", t, (double[]){NAN, NAN}, 2, 0);
  jbx_release(t);
  jbx_release(e);
  /* Non-contiguous input: the transpose of a. */
  jbx_tensor *at = jbx_transpose(a, 0, 1);
  t = jbx_sum(at, 1, false);
  check_values("sum of transpose", t, (double[]){5, 7, 9}, 3, 0);
  jbx_release(t);
  jbx_release(at);
  jbx_release(a);
}

/* Long and wide reductions (the parallel and blocked paths) against double loops. */
static void test_sum_large(void) {
  jbx_rng rng;
  jbx_rng_seed(&rng, 7);
  int64_t s1[2] = {3, 150000};
  jbx_tensor *a = jbx_randn(2, s1, &rng);
  const float *p = jbx_f32(a);
  jbx_tensor *t = jbx_sum(a, 1, false), *all = jbx_sum(a, JBX_ALL_DIMS, false);
  double tot = 0;
  for (int64_t r = 0; r < 3; r++) {
    double s = 0;
    for (int64_t i = 0; i < s1[1]; i++) s += p[r * s1[1] + i];
    tot += s;
    CHECK(fabs(jbx_get(t, r) - s) < 1e-3, "long row %lld: %.6f vs %.6f", (long long)r, jbx_get(t, r), s);
  }
  CHECK(fabs(jbx_get(all, 0) - tot) < 1e-3, "long all: %.6f vs %.6f", jbx_get(all, 0), tot);
  jbx_release(t);
  jbx_release(all);
  jbx_tensor *flat = jbx_view(a, 1, (int64_t[]){-1});
  jbx_tensor *nf = jbx_norm(flat, 0, false);
  double sq = 0;
  for (int64_t i = 0; i < 3 * s1[1]; i++) sq += (double)p[i] * p[i];
  CHECK_CLOSE(jbx_get(nf, 0), sqrt(sq), 1e-6);
  jbx_release(nf);
  jbx_release(flat);
  jbx_release(a);

  int64_t s2[3] = {4, 500, 300}; /* reduce the middle dim: inner > 1, several column blocks */
  a = jbx_randn(3, s2, &rng);
  p = jbx_f32(a);
  t = jbx_sum(a, 1, false);
  jbx_tensor *m = jbx_max(a, 1, false, NULL), *l = jbx_logsumexp(a, 1, false);
  int bad = 0, badm = 0, badl = 0;
  for (int64_t o = 0; o < 4; o++)
    for (int64_t j = 0; j < 300; j++) {
      double s = 0, mx = -INFINITY, e = 0;
      for (int64_t r = 0; r < 500; r++) {
        double x = p[(o * 500 + r) * 300 + j];
        s += x;
        mx = x > mx ? x : mx;
      }
      for (int64_t r = 0; r < 500; r++) e += exp(p[(o * 500 + r) * 300 + j] - mx);
      bad += fabs(jbx_get(t, o * 300 + j) - s) > 1e-4;
      badm += jbx_get(m, o * 300 + j) != mx;
      badl += fabs(jbx_get(l, o * 300 + j) - (mx + log(e))) > 1e-5;
    }
  CHECK(bad == 0, "%d wrong column sums", bad);
  CHECK(badm == 0, "%d wrong column maxima", badm);
  CHECK(badl == 0, "%d wrong column logsumexps", badl);
  jbx_release(t);
  jbx_release(m);
  jbx_release(l);
  jbx_release(a);
}

static void test_max_min_values(void) {
  const float v[6] = {1, 3, 3, 7, 2, 7};
  jbx_tensor *a = mat(2, 3, v), *ix = NULL;
  a->requires_grad = true;
  jbx_tensor *t = jbx_max(a, 1, false, &ix);
  check_values("max dim1 (ties)", t, (double[]){3, 7}, 2, 0);
  check_values("max dim1 indices: first of the ties", ix, (double[]){1, 0}, 2, 0);
  CHECK(ix && ix->dtype == JBX_I32, "indices are int32");
  /* The gradient goes to the returned position only. */
  jbx_tensor *seed = jbx_full(1, (int64_t[]){2}, 1.0f);
  CHECK(jbx_backward(t, seed) == 0, "max backward: %s", jbx_last_error());
  jbx_release(seed);
  jbx_release(t);
  jbx_release(ix);
  check_values("max grad with ties", a->grad, (double[]){0, 1, 0, 1, 0, 0}, 6, 0);
  jbx_zero_grad(a);

  t = jbx_min(a, 0, true, &ix);
  check_values("min dim0", t, (double[]){1, 2, 3}, 3, 0);
  check_values("min dim0 indices", ix, (double[]){0, 1, 0}, 3, 0);
  check_shape("min dim0 keep", t, 2, (int64_t[]){1, 3});
  jbx_release(t);
  jbx_release(ix);

  t = jbx_max(a, JBX_ALL_DIMS, false, &ix);
  check_values("max all", t, (double[]){7}, 1, 0);
  check_values("max all index (flat, first)", ix, (double[]){3}, 1, 0);
  check_shape("max all indices 0-dim", ix, 0, NULL);
  jbx_release(t);
  jbx_release(ix);

  t = jbx_argmax(a, -1, false);
  check_values("argmax", t, (double[]){1, 0}, 2, 0);
  CHECK(t && !t->requires_grad, "argmax has no graph");
  jbx_release(t);
  t = jbx_argmin(a, 1, true);
  check_values("argmin", t, (double[]){0, 1}, 2, 0);
  check_shape("argmin keep", t, 2, (int64_t[]){2, 1});
  jbx_release(t);
  t = jbx_argmin(a, JBX_ALL_DIMS, false);
  check_values("argmin all", t, (double[]){0}, 1, 0);
  jbx_release(t);

  /* NaN propagates into max, as in PyTorch. */
  const float w[4] = {1, NAN, 5, 2};
  jbx_tensor *b = mat(1, 4, w);
  t = jbx_max(b, 1, false, &ix);
  check_values("max with NaN", t, (double[]){NAN}, 1, 0);
  check_values("max with NaN index", ix, (double[]){1}, 1, 0);
  jbx_release(t);
  jbx_release(ix);
  jbx_release(b);
  jbx_release(a);

  /* Rows longer than the 16 vector lanes: a tie (first wins), +inf, -inf, NaN. */
  float lv[4 * 40];
  for (int r = 0; r < 4; r++)
    for (int i = 0; i < 40; i++) lv[r * 40 + i] = (float)((i * 7) % 40) * 0.1f - 1.0f;
  lv[0 * 40 + 33] = 9;
  lv[0 * 40 + 37] = 9;
  lv[1 * 40 + 20] = INFINITY;
  lv[2 * 40 + 21] = -INFINITY;
  lv[3 * 40 + 25] = NAN;
  lv[3 * 40 + 30] = 50;
  jbx_tensor *l = mat(4, 40, lv);
  t = jbx_max(l, 1, false, &ix);
  check_values("long rows max", t, (double[]){9, INFINITY, 2.9, NAN}, 4, 1e-6);
  check_values("long rows argmax", ix, (double[]){33, 20, 17, 25}, 4, 0);
  jbx_release(t);
  jbx_release(ix);
  t = jbx_min(l, 1, false, &ix);
  check_values("long rows min", t, (double[]){-1, -1, -INFINITY, NAN}, 4, 1e-6);
  check_values("long rows argmin", ix, (double[]){0, 0, 21, 25}, 4, 0);
  jbx_release(t);
  jbx_release(ix);
  jbx_release(l);
}

static void test_norm_lse_values(void) {
  const float v[4] = {3, 4, 0, 0};
  jbx_tensor *a = mat(2, 2, v);
  a->requires_grad = true;
  jbx_tensor *t = jbx_norm(a, 1, false);
  check_values("norm", t, (double[]){5, 0}, 2, 1e-7);
  jbx_tensor *s = jbx_sum(t, JBX_ALL_DIMS, false);
  CHECK(s && jbx_backward(s, NULL) == 0, "norm backward: %s", jbx_last_error());
  check_values("norm grad (0 where the norm is 0)", a->grad, (double[]){0.6, 0.8, 0, 0}, 4, 1e-6);
  jbx_release(s);
  jbx_release(t);
  t = jbx_norm(a, JBX_ALL_DIMS, false);
  check_values("norm all", t, (double[]){5}, 1, 1e-7);
  jbx_release(t);
  jbx_release(a);

  const float w[6] = {1000, 1000, -INFINITY, -INFINITY, 1, 2};
  jbx_tensor *b = mat(3, 2, w);
  t = jbx_logsumexp(b, 1, false);
  check_values("logsumexp stable", t, (double[]){1000 + log(2.0), -INFINITY, 2 + log(1 + exp(-1.0))}, 3, 1e-7);
  jbx_release(t);
  t = jbx_logsumexp(b, 0, true);
  check_shape("logsumexp keep", t, 2, (int64_t[]){1, 2});
  check_values("logsumexp dim0", t, (double[]){1000, 1000}, 2, 1e-7);
  jbx_release(t);
  jbx_release(b);
}

static int descending(const void *x, const void *y) {
  float a = *(const float *)x, b = *(const float *)y;
  return (a < b) - (a > b);
}

static void test_topk_values(void) {
  const float v[8] = {1, 5, 3, 4, 2, 2, 2, 1};
  jbx_tensor *a = mat(2, 4, v);
  a->requires_grad = true;
  jbx_tensor *t = jbx_topk_mean(a, 2);
  check_values("topk_mean", t, (double[]){4.5, 2}, 2, 1e-7);
  check_shape("topk_mean shape", t, 1, (int64_t[]){2});
  jbx_tensor *s = jbx_sum(t, JBX_ALL_DIMS, false);
  CHECK(s && jbx_backward(s, NULL) == 0, "topk backward: %s", jbx_last_error());
  /* Ties go to the lower positions. */
  check_values("topk_mean grad", a->grad, (double[]){0, 0.5, 0, 0.5, 0.5, 0.5, 0, 0}, 8, 0);
  jbx_release(s);
  jbx_release(t);
  t = jbx_topk_mean(a, 4);
  check_values("topk_mean k = size", t, (double[]){3.25, 1.75}, 2, 1e-7);
  jbx_release(t);
  jbx_release(a);

  /* Long rows against sorting: row 0 random with many ties, row 1 where the sampled
   * threshold finds too few candidates (every 9th value is large: the fallback). */
  jbx_rng rng;
  jbx_rng_seed(&rng, 3);
  int64_t sh[2] = {2, 20000};
  jbx_tensor *b = jbx_randn(2, sh, &rng);
  for (int64_t i = 0; i < 1000; i++) jbx_f32(b)[i * 7] = 0.5f;
  for (int64_t i = 0; i < 20000; i += 9) jbx_f32(b)[20000 + i] = 10.0f + (float)(i % 5);
  for (int k = 2048; k <= 2400; k += 352) {
    t = jbx_topk_mean(b, k);
    for (int64_t r = 0; r < 2; r++) {
      float *row = malloc(20000 * sizeof *row);
      for (int64_t i = 0; i < 20000; i++) row[i] = jbx_f32(b)[r * 20000 + i];
      qsort(row, 20000, sizeof *row, descending);
      double s = 0;
      for (int64_t i = 0; i < k; i++) s += row[i];
      CHECK_CLOSE(jbx_get(t, r), s / k, 1e-6);
      free(row);
    }
    jbx_release(t);
  }
  jbx_release(b);
}

static void test_softmax_values(void) {
  const float v[6] = {1, 2, 3, 1000, 1000, -INFINITY};
  jbx_tensor *a = mat(2, 3, v);
  jbx_tensor *t = jbx_softmax(a, 1);
  double e1 = exp(-2.0), e2 = exp(-1.0), z = e1 + e2 + 1;
  check_values("softmax", t, (double[]){e1 / z, e2 / z, 1 / z, 0.5, 0.5, 0}, 6, 1e-6);
  jbx_release(t);
  t = jbx_log_softmax(a, -1);
  check_values("log_softmax", t, (double[]){log(e1 / z), log(e2 / z), log(1 / z), -log(2.0), -log(2.0), -INFINITY},
               6, 1e-6);
  jbx_release(t);
  const float w[4] = {0, 1, 0, 3};
  jbx_tensor *b = mat(2, 2, w);
  t = jbx_softmax(b, 0);
  double q = 1 / (1 + exp(2.0));
  check_values("softmax dim0", t, (double[]){0.5, q, 0.5, 1 - q}, 4, 1e-6);
  jbx_release(t);
  jbx_release(b);
  jbx_release(a);

  /* Rows sum to 1 on a larger tensor, reducing a middle dim. */
  jbx_rng rng;
  jbx_rng_seed(&rng, 5);
  int64_t sh[3] = {3, 200, 70};
  jbx_tensor *c = jbx_randn(3, sh, &rng);
  t = jbx_softmax(c, 1);
  jbx_tensor *s = jbx_sum(t, 1, false);
  int bad = 0;
  for (int64_t i = 0; i < 3 * 70; i++) bad += fabs(jbx_get(s, i) - 1) > 1e-5;
  CHECK(bad == 0, "%d softmax columns do not sum to 1", bad);
  jbx_release(s);
  jbx_release(t);
  jbx_release(c);
}

/* ---------------------------------------------------------------- gradients */

enum { OP_SUM, OP_MEAN, OP_MAX, OP_MIN, OP_NORM, OP_LSE, OP_SOFTMAX, OP_LOG_SOFTMAX, OP_TOPK };
static const char *op_names[] = {"sum", "mean", "max", "min", "norm", "logsumexp", "softmax", "log_softmax", "topk_mean"};

typedef struct {
  int op, dim;
  bool keepdim, transposed;
} red_case;

static jbx_tensor *red_fn(jbx_tensor **in, void *ctx) {
  const red_case *c = ctx;
  jbx_tensor *x = c->transposed ? jbx_transpose(in[0], 0, 2) : jbx_retain(in[0]), *out = NULL;
  switch (c->op) {
  case OP_SUM: out = jbx_sum(x, c->dim, c->keepdim); break;
  case OP_MEAN: out = jbx_mean(x, c->dim, c->keepdim); break;
  case OP_MAX: out = jbx_max(x, c->dim, c->keepdim, NULL); break;
  case OP_MIN: out = jbx_min(x, c->dim, c->keepdim, NULL); break;
  case OP_NORM: out = jbx_norm(x, c->dim, c->keepdim); break;
  case OP_LSE: out = jbx_logsumexp(x, c->dim, c->keepdim); break;
  case OP_SOFTMAX: out = jbx_softmax(x, c->dim); break;
  case OP_LOG_SOFTMAX: out = jbx_log_softmax(x, c->dim); break;
  case OP_TOPK: out = jbx_topk_mean(x, c->dim); break; /* dim holds k */
  }
  jbx_release(x);
  return out;
}

static void test_gradients(void) {
  int64_t shape[3] = {3, 4, 5};
  const int dims[] = {0, 1, 2, -1, JBX_ALL_DIMS};
  char name[128];
  for (int op = OP_SUM; op <= OP_LOG_SOFTMAX; op++)
    for (int di = 0; di < 5; di++)
      for (int variant = 0; variant < 4; variant++) {
        bool keep = variant & 1, tr = variant & 2;
        if ((op == OP_SOFTMAX || op == OP_LOG_SOFTMAX) && (dims[di] == JBX_ALL_DIMS || keep)) continue;
        red_case c = {op, dims[di], keep, tr};
        bool ranked = op == OP_MAX || op == OP_MIN;
        jbx_tensor *x = ranked ? distinct_input(3, shape, 10 + di) : gradcheck_input(3, shape, 1.0f, 10 + di);
        snprintf(name, sizeof name, "%s dim %d keepdim %d %s", op_names[op], dims[di], keep,
                 tr ? "transposed" : "contiguous");
        CHECK_GRAD(name, red_fn, &c, 1, &x, 1e-2, 5e-3);
        jbx_release(x);
      }
  for (int k = 1; k <= 3; k++)
    for (int tr = 0; tr < 2; tr++) {
      red_case c = {OP_TOPK, k, false, tr};
      jbx_tensor *x = distinct_input(3, shape, 40 + k);
      snprintf(name, sizeof name, "topk_mean k %d %s", k, tr ? "transposed" : "contiguous");
      CHECK_GRAD(name, red_fn, &c, 1, &x, 1e-2, 5e-3);
      jbx_release(x);
    }
}

/* ---------------------------------------------------------------- layer_norm */

static void test_layer_norm_values(void) {
  const float v[8] = {1, 2, 3, 4, 5, 5, 5, 5};
  jbx_tensor *x = mat(2, 4, v);
  jbx_tensor *w = jbx_from_floats(1, (int64_t[]){4}, (float[]){1, 2, 1, 1});
  jbx_tensor *b = jbx_from_floats(1, (int64_t[]){4}, (float[]){0, 0, 1, 0});
  jbx_tensor *t = jbx_layer_norm(x, w, b, 1e-5f);
  double r = 1 / sqrt(1.25 + 1e-5); /* var of 1..4 is 1.25 */
  check_values("layer_norm", t, (double[]){-1.5 * r, 2 * -0.5 * r, 0.5 * r + 1, 1.5 * r, 0, 0, 1, 0}, 8, 1e-6);
  jbx_release(t);
  t = jbx_layer_norm(x, NULL, NULL, 0.0f);
  double q = 1 / sqrt(1.25);
  /* A constant row with eps 0 is 0/0, NaN as in PyTorch. */
  check_values("layer_norm without affine", t, (double[]){-1.5 * q, -0.5 * q, 0.5 * q, 1.5 * q, NAN, NAN, NAN, NAN},
               8, 1e-6);
  jbx_release(t);

  /* Rows with a large offset: the two-pass variance keeps precision. */
  jbx_rng rng;
  jbx_rng_seed(&rng, 9);
  int64_t sh[2] = {64, 768};
  jbx_tensor *big = jbx_randn(2, sh, &rng);
  for (int64_t i = 0; i < 64 * 768; i++) jbx_f32(big)[i] += 1000.0f;
  t = jbx_layer_norm(big, NULL, NULL, 1e-5f);
  jbx_tensor *m = jbx_mean(t, 1, false), *n = jbx_norm(t, 1, false);
  int bad = 0;
  for (int64_t i = 0; i < 64; i++) bad += fabs(jbx_get(m, i)) > 1e-4 || fabs(jbx_get(n, i) - sqrt(768.0)) > 1e-2;
  CHECK(bad == 0, "%d layer_norm rows are not normalised", bad);
  jbx_release(m);
  jbx_release(n);
  jbx_release(t);
  jbx_release(big);
  jbx_release(w);
  jbx_release(b);
  jbx_release(x);
}

typedef struct {
  bool affine, transposed;
} ln_case;

static jbx_tensor *ln_fn(jbx_tensor **in, void *ctx) {
  const ln_case *c = ctx;
  jbx_tensor *x = c->transposed ? jbx_transpose(in[0], 0, 1) : jbx_retain(in[0]);
  jbx_tensor *out = jbx_layer_norm(x, c->affine ? in[1] : NULL, c->affine ? in[2] : NULL, 1e-5f);
  jbx_release(x);
  return out;
}

static void test_layer_norm_gradients(void) {
  jbx_tensor *in[3] = {gradcheck_input(3, (int64_t[]){2, 3, 6}, 1.0f, 80), gradcheck_input(1, (int64_t[]){6}, 1.0f, 81),
                       gradcheck_input(1, (int64_t[]){6}, 1.0f, 82)};
  ln_case c = {true, false};
  CHECK_GRAD("layer_norm x, weight, bias", ln_fn, &c, 3, in, 1e-2, 5e-3);
  ln_case c0 = {false, false};
  CHECK_GRAD("layer_norm without affine", ln_fn, &c0, 1, in, 1e-2, 5e-3);
  in[0]->requires_grad = false; /* only the parameters */
  CHECK_GRAD("layer_norm weight and bias only", ln_fn, &c, 3, in, 1e-2, 5e-3);
  jbx_release(in[0]);
  in[0] = gradcheck_input(2, (int64_t[]){6, 4}, 1.0f, 83); /* transposed to [4, 6] */
  ln_case ct = {true, true};
  CHECK_GRAD("layer_norm transposed x", ln_fn, &ct, 3, in, 1e-2, 5e-3);
  for (int k = 0; k < 3; k++) jbx_release(in[k]);

  /* Many rows: the threaded path with per-thread weight/bias sums, against finite sums. */
  jbx_tensor *x = gradcheck_input(2, (int64_t[]){600, 128}, 1.0f, 84);
  jbx_tensor *w = jbx_full(1, (int64_t[]){128}, 1.0f), *b = gradcheck_input(1, (int64_t[]){128}, 1.0f, 86);
  w->requires_grad = true;
  jbx_tensor *y = jbx_layer_norm(x, w, b, 1e-5f), *l = y ? jbx_sum(y, JBX_ALL_DIMS, false) : NULL;
  CHECK(l && jbx_backward(l, NULL) == 0, "large layer_norm backward: %s", jbx_last_error());
  /* With w = 1: d sum(y) / d x = 0 (a row's mean is removed), d / d b = rows, and
   * d / d w = the column sums of xhat (computed here in double). */
  int bad = 0;
  for (int64_t i = 0; b->grad && i < 128; i++) bad += fabs(jbx_f32(b->grad)[i] - 600) > 1e-3;
  for (int64_t i = 0; x->grad && i < 600 * 128; i++) bad += fabs(jbx_f32(x->grad)[i]) > 1e-4;
  double dw[128] = {0};
  for (int64_t r = 0; r < 600; r++) {
    const float *xr = jbx_f32(x) + r * 128;
    double m = 0, v = 0;
    for (int i = 0; i < 128; i++) m += xr[i] / 128.0;
    for (int i = 0; i < 128; i++) v += (xr[i] - m) * (xr[i] - m) / 128.0;
    for (int i = 0; i < 128; i++) dw[i] += (xr[i] - m) / sqrt(v + 1e-5);
  }
  for (int64_t i = 0; w->grad && i < 128; i++) bad += fabs(jbx_f32(w->grad)[i] - dw[i]) > 1e-3;
  CHECK(b->grad && x->grad && w->grad && bad == 0, "%d wrong elements in the large layer_norm gradients", bad);
  jbx_release(l);
  jbx_release(y);
  jbx_release(x);
  jbx_release(w);
  jbx_release(b);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
  jbx_tensor *a = jbx_zeros(2, (int64_t[]){2, 3});
  jbx_tensor *ia = jbx_empty(JBX_I32, 2, (int64_t[]){2, 3});
  jbx_tensor *e = jbx_empty(JBX_F32, 2, (int64_t[]){2, 0}), *ix = NULL;
  CHECK(jbx_sum(a, 2, false) == NULL, "sum dim 2");
  CHECK_ERROR_HAS("sum: dim 2 out of range for a tensor of shape [2, 3]");
  CHECK(jbx_mean(a, -3, false) == NULL, "mean dim -3");
  CHECK_ERROR_HAS("mean: dim -3 out of range");
  CHECK(jbx_sum(ia, 0, false) == NULL, "sum int32");
  CHECK_ERROR_HAS("sum: needs a float32 tensor, got int32 [2, 3]");
  CHECK(jbx_norm(NULL, 0, false) == NULL, "norm NULL");
  CHECK_ERROR_HAS("norm: input is NULL");
  CHECK(jbx_max(e, 1, false, &ix) == NULL && ix == NULL, "max over empty dim");
  CHECK_ERROR_HAS("max: cannot reduce over dim 1 of size 0 in [2, 0]");
  CHECK(jbx_argmin(e, JBX_ALL_DIMS, false) == NULL, "argmin of empty");
  CHECK_ERROR_HAS("argmin: cannot reduce the empty tensor [2, 0]");
  CHECK(jbx_argmax(ia, 0, false) == NULL, "argmax int32");
  CHECK_ERROR_HAS("argmax: needs a float32 tensor");
  CHECK(jbx_logsumexp(a, 5, true) == NULL, "logsumexp dim 5");
  CHECK_ERROR_HAS("logsumexp: dim 5 out of range");
  CHECK(jbx_min(a, 9, false, NULL) == NULL, "min dim 9");
  CHECK_ERROR_HAS("min: dim 9 out of range");
  CHECK(jbx_topk_mean(a, 4) == NULL, "topk k > size");
  CHECK_ERROR_HAS("topk_mean: k = 4 is out of range for the last dim (size 3) of [2, 3]");
  CHECK(jbx_topk_mean(a, 0) == NULL, "topk k = 0");
  CHECK_ERROR_HAS("topk_mean: k = 0 is out of range");
  jbx_tensor *s = jbx_scalar(1);
  CHECK(jbx_topk_mean(s, 1) == NULL, "topk 0-dim");
  CHECK_ERROR_HAS("topk_mean: needs at least 1 dim, got a 0-dim tensor");
  CHECK(jbx_topk_mean(ia, 1) == NULL, "topk int32");
  CHECK_ERROR_HAS("topk_mean: needs a float32 tensor, got int32 [2, 3]");
  CHECK(jbx_topk_mean(NULL, 1) == NULL, "topk NULL");
  CHECK_ERROR_HAS("topk_mean: input is NULL");
  CHECK(jbx_softmax(a, 2) == NULL, "softmax dim 2");
  CHECK_ERROR_HAS("softmax: dim 2 out of range for a tensor of shape [2, 3]");
  CHECK(jbx_log_softmax(ia, 0) == NULL, "log_softmax int32");
  CHECK_ERROR_HAS("log_softmax: needs a float32 tensor, got int32 [2, 3]");
  CHECK(jbx_softmax(NULL, 0) == NULL, "softmax NULL");
  CHECK_ERROR_HAS("softmax: input is NULL");
  jbx_tensor *w4 = jbx_zeros(1, (int64_t[]){4}), *w3i = jbx_empty(JBX_I32, 1, (int64_t[]){3});
  CHECK(jbx_layer_norm(a, w4, NULL, 1e-5f) == NULL, "layer_norm weight size");
  CHECK_ERROR_HAS("layer_norm: weight [4] must be [3] to match the last dim of the input [2, 3]");
  CHECK(jbx_layer_norm(a, NULL, w4, 1e-5f) == NULL, "layer_norm bias size");
  CHECK_ERROR_HAS("layer_norm: bias [4] must be [3] to match the last dim of the input [2, 3]");
  CHECK(jbx_layer_norm(a, w3i, NULL, 1e-5f) == NULL, "layer_norm int32 weight");
  CHECK_ERROR_HAS("layer_norm: weight must be float32, got int32");
  CHECK(jbx_layer_norm(ia, NULL, NULL, 1e-5f) == NULL, "layer_norm int32 input");
  CHECK_ERROR_HAS("layer_norm: input must be float32, got int32 [2, 3]");
  CHECK(jbx_layer_norm(e, NULL, NULL, 1e-5f) == NULL, "layer_norm empty last dim");
  CHECK_ERROR_HAS("layer_norm: input [2, 0] needs a last dim of size >= 1");
  CHECK(jbx_layer_norm(s, NULL, NULL, 1e-5f) == NULL, "layer_norm 0-dim");
  CHECK_ERROR_HAS("layer_norm: input [] needs a last dim of size >= 1");
  CHECK(jbx_layer_norm(a, NULL, NULL, -1.0f) == NULL, "layer_norm eps");
  CHECK_ERROR_HAS("layer_norm: eps must be finite and >= 0, got -1");
  CHECK(jbx_layer_norm(NULL, NULL, NULL, 1e-5f) == NULL, "layer_norm NULL");
  CHECK_ERROR_HAS("layer_norm: input is NULL");
  jbx_release(w4);
  jbx_release(w3i);
  jbx_release(s);
  jbx_release(e);
  jbx_release(ia);
  jbx_release(a);
}

int main(void) {
  test_sum_mean_values();
  test_sum_large();
  test_max_min_values();
  test_norm_lse_values();
  test_topk_values();
  test_softmax_values();
  test_gradients();
  test_layer_norm_values();
  test_layer_norm_gradients();
  test_errors();
  return check_summary();
}
