/* layer_norm (core/ops/layer_norm.c): values against hand-computed references, precision
 * with a large offset, the threaded backward with per-thread weight sums against sums in
 * double, and every error message. Gradient checks are rows of op_table.h. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_rng.h"
#include "kernels.h"
#include "values.h"

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

static void test_layer_norm_large_backward(void) {
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

/* The raw kernels (kernels.h, for fused ops) agree with the op to the bit: the op is a
 * thin wrapper around them. 4 rows of 6. */
static void test_raw_kernels(void) {
  jbx_tensor *x = gradcheck_input(2, (int64_t[]){4, 6}, 1.0f, 90);
  jbx_tensor *w = gradcheck_input(1, (int64_t[]){6}, 1.0f, 91), *b = gradcheck_input(1, (int64_t[]){6}, 1.0f, 92);
  jbx_tensor *g = gradcheck_input(2, (int64_t[]){4, 6}, 1.0f, 93);
  jbx_tensor *y = jbx_layer_norm(x, w, b, 1e-5f);
  float ry[24], mean[4], rstd[4], gx[24], gw[6], gb[6];
  jbx_layer_norm_forward(jbx_f32(x), jbx_f32(w), jbx_f32(b), ry, mean, rstd, 4, 6, 1e-5f);
  int bad = 0;
  for (int i = 0; y && i < 24; i++) bad += ry[i] != jbx_f32(y)[i];
  CHECK(y && bad == 0, "raw forward: %d elements differ", bad);
  CHECK(y && jbx_backward(y, g) == 0, "backward: %s", jbx_last_error());
  CHECK(jbx_layer_norm_backward(jbx_f32(x), jbx_f32(w), mean, rstd, jbx_f32(g), gx, gw, gb, 4, 6) == 0,
        "raw backward");
  bad = 0;
  for (int i = 0; x->grad && i < 24; i++) bad += gx[i] != jbx_f32(x->grad)[i];
  for (int i = 0; w->grad && b->grad && i < 6; i++)
    bad += (gw[i] != jbx_f32(w->grad)[i]) + (gb[i] != jbx_f32(b->grad)[i]);
  CHECK(x->grad && w->grad && b->grad && bad == 0, "raw backward: %d elements differ", bad);
  /* without the weight and bias gradients (NULL outputs) */
  float gx2[24];
  CHECK(jbx_layer_norm_backward(jbx_f32(x), jbx_f32(w), mean, rstd, jbx_f32(g), gx2, NULL, NULL, 4, 6) == 0 &&
            memcmp(gx, gx2, sizeof gx) == 0,
        "raw backward, input gradient only");
  jbx_release(y), jbx_release(g), jbx_release(x), jbx_release(w), jbx_release(b);
}

static void test_errors(void) {
  jbx_tensor *a = jbx_zeros(2, (int64_t[]){2, 3});
  jbx_tensor *ia = jbx_empty(JBX_I32, 2, (int64_t[]){2, 3});
  jbx_tensor *e = jbx_empty(JBX_F32, 2, (int64_t[]){2, 0}), *s = jbx_scalar(1);
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
  test_layer_norm_values();
  test_layer_norm_large_backward();
  test_raw_kernels();
  test_errors();
  return check_summary();
}
