/* Reductions (core/ops/reduce.c): values against hand-computed references and
 * double-precision loops, the backward at ties and special points, and every error
 * message. Gradient checks are rows of op_table.h. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "values.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_rng.h"


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
  test_errors();
  return check_summary();
}
