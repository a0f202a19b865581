/* softmax and log_softmax (core/ops/softmax.c): values against hand-computed references,
 * stability at large and infinite inputs, rows summing to 1 over a middle dim, the raw
 * kernels against the ops, and every error message. Gradient checks are rows of op_table.h. */
#include <math.h>

#include "check.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_rng.h"
#include "kernels.h"
#include "values.h"

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

/* The raw kernels (kernels.h, for fused ops) agree with the ops to the bit: the ops are
 * thin wrappers around them. [outer, n, inner] = [3, 5, 4], over the middle dim. */
static void test_raw_kernels(void) {
  jbx_rng rng;
  jbx_rng_seed(&rng, 8);
  int64_t sh[3] = {3, 5, 4};
  for (int logp = 0; logp < 2; logp++) {
    jbx_tensor *x = jbx_randn(3, sh, &rng), *g = jbx_randn(3, sh, &rng);
    x->requires_grad = true;
    jbx_tensor *y = logp ? jbx_log_softmax(x, 1) : jbx_softmax(x, 1);
    float ry[60], rgx[60];
    jbx_softmax_forward(jbx_f32(x), ry, 3, 5, 4, logp);
    int bad = 0;
    for (int i = 0; i < 60; i++) bad += ry[i] != jbx_f32(y)[i];
    CHECK(bad == 0, "%s raw forward: %d elements differ", logp ? "log_softmax" : "softmax", bad);
    CHECK(jbx_backward(y, g) == 0, "backward: %s", jbx_last_error());
    jbx_softmax_backward(jbx_f32(g), ry, rgx, 3, 5, 4, logp);
    bad = 0;
    for (int i = 0; x->grad && i < 60; i++) bad += rgx[i] != jbx_f32(x->grad)[i];
    CHECK(x->grad && bad == 0, "%s raw backward: %d elements differ", logp ? "log_softmax" : "softmax", bad);
    jbx_release(y), jbx_release(g), jbx_release(x);
  }
}

static void test_errors(void) {
  jbx_tensor *a = jbx_zeros(2, (int64_t[]){2, 3});
  jbx_tensor *ia = jbx_empty(JBX_I32, 2, (int64_t[]){2, 3});
  CHECK(jbx_softmax(a, 2) == NULL, "softmax dim 2");
  CHECK_ERROR_HAS("softmax: dim 2 out of range for a tensor of shape [2, 3]");
  CHECK(jbx_log_softmax(ia, 0) == NULL, "log_softmax int32");
  CHECK_ERROR_HAS("log_softmax: needs a float32 tensor, got int32 [2, 3]");
  CHECK(jbx_softmax(NULL, 0) == NULL, "softmax NULL");
  CHECK_ERROR_HAS("softmax: input is NULL");
  jbx_release(ia);
  jbx_release(a);
}

int main(void) {
  test_softmax_values();
  test_raw_kernels();
  test_errors();
  return check_summary();
}
