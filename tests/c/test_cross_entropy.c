/* cross_entropy (core/ops/cross_entropy.c): mean and per-token losses and their gradients
 * against the PyTorch fixture (tools/fixtures/prior_ops.py: F.cross_entropy, autograd),
 * logits far from 0, many rows (the threaded path) against sums in double, empty inputs,
 * and every error message. Gradient checks are rows of op_table.h. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "fixture.h"
#include "gradcheck.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "values.h"

static void test_fixture(void) {
  fixture *fx = fixture_load("tests/fixtures/prior_ops.fix");
  CHECK(fx != NULL, "tests/fixtures/prior_ops.fix loads (make it with tools/fixtures/prior_ops.py)");
  if (!fx) return;
  jbx_tensor *targets = fixture_get(fx, "ce_targets");

  jbx_tensor *x = leaf(fixture_get(fx, "ce_logits")), *m = jbx_cross_entropy(x, targets, JBX_REDUCE_MEAN);
  check_shape("cross_entropy mean", m, 0, NULL);
  CHECK(backward_probe(m, NULL) == 0, "cross_entropy mean backward: %s", jbx_last_error());
  double em = max_abs_err(m, fixture_get(fx, "ce_mean")), edm = max_abs_err(x->grad, fixture_get(fx, "ce_dmean"));
  jbx_release(m);
  jbx_zero_grad(x);
  jbx_tensor *n = jbx_cross_entropy(x, targets, JBX_REDUCE_NONE);
  check_shape("cross_entropy none", n, 2, (int64_t[]){3, 4});
  CHECK(backward_probe(n, fixture_get(fx, "ce_g")) == 0, "cross_entropy none backward: %s", jbx_last_error());
  double en = max_abs_err(n, fixture_get(fx, "ce_none")), edn = max_abs_err(x->grad, fixture_get(fx, "ce_dnone"));
  printf("cross_entropy vs PyTorch: max abs error mean %.2g, d mean %.2g, none %.2g, d none %.2g\n", em, edm, en, edn);
  CHECK(em < 2e-6 && edm < 1e-7 && en < 4e-6 && edn < 2e-6, "cross_entropy: errors mean %g/%g none %g/%g", em, edm,
        en, edn);
  jbx_release(n);
  jbx_release(x);

  /* logits 40 N(0, 1) + 1000: no overflow, and the loss keeps its precision */
  x = leaf(fixture_get(fx, "ce_big_logits"));
  jbx_tensor *bt = fixture_get(fx, "ce_big_targets");
  n = jbx_cross_entropy(x, bt, JBX_REDUCE_NONE);
  m = jbx_cross_entropy(x, bt, JBX_REDUCE_MEAN);
  CHECK(backward_probe(m, NULL) == 0, "cross_entropy big backward: %s", jbx_last_error());
  double eb = max_abs_err(n, fixture_get(fx, "ce_big_none")), edb = max_abs_err(x->grad, fixture_get(fx, "ce_big_dmean"));
  printf("cross_entropy, logits near 1000, vs PyTorch: max abs error none %.2g, d mean %.2g\n", eb, edb);
  CHECK(eb < 2e-5 && edb < 1e-7, "cross_entropy with large logits: errors %g, %g", eb, edb);
  jbx_release(m);
  jbx_release(n);
  jbx_release(x);
  fixture_free(fx);
}

/* Many rows and classes (threaded forward and backward) against double sums. */
static void test_large(void) {
  int64_t R = 300, V = 512;
  jbx_tensor *x = gradcheck_input(2, (int64_t[]){R, V}, 3.0f, 21);
  jbx_tensor *t = jbx_empty(JBX_I32, 1, &R);
  for (int64_t r = 0; r < R; r++) jbx_i32(t)[r] = (int32_t)((r * 97) % V);
  jbx_tensor *m = jbx_cross_entropy(x, t, JBX_REDUCE_MEAN), *n = jbx_cross_entropy(x, t, JBX_REDUCE_NONE);
  CHECK(m && n && jbx_backward(m, NULL) == 0, "large cross_entropy: %s", jbx_last_error());
  const float *xv = jbx_f32(x);
  double total = 0;
  int bad = 0;
  for (int64_t r = 0; r < R; r++) {
    double mx = -INFINITY, s = 0;
    for (int64_t j = 0; j < V; j++) mx = fmax(mx, xv[r * V + j]);
    for (int64_t j = 0; j < V; j++) s += exp(xv[r * V + j] - mx);
    double lse = mx + log(s), loss = lse - xv[r * V + jbx_i32(t)[r]];
    total += loss;
    bad += n && fabs(jbx_f32(n)[r] - loss) > 1e-5 * (1 + loss);
    for (int64_t j = 0; x->grad && j < V; j++) {
      double want = (exp(xv[r * V + j] - lse) - (j == jbx_i32(t)[r])) / R;
      bad += fabs(jbx_f32(x->grad)[r * V + j] - want) > 1e-8;
    }
  }
  CHECK(x->grad && bad == 0, "%d wrong elements in the large cross_entropy", bad);
  CHECK(m && fabs(jbx_get(m, 0) - total / R) < 1e-5, "large mean %g vs %g", m ? jbx_get(m, 0) : NAN, total / R);
  jbx_release(m), jbx_release(n), jbx_release(x), jbx_release(t);
}

static void test_edges(void) {
  /* one class: the loss is 0 and so is the gradient */
  jbx_tensor *x = gradcheck_input(2, (int64_t[]){3, 1}, 1.0f, 3), *t = jbx_from_ints(1, (int64_t[]){3}, (int32_t[]){0, 0, 0});
  jbx_tensor *m = jbx_cross_entropy(x, t, JBX_REDUCE_MEAN);
  check_values("cross_entropy of one class", m, (double[]){0}, 1, 0);
  CHECK(m && jbx_backward(m, NULL) == 0 && x->grad && jbx_get(x->grad, 2) == 0, "one class: zero gradient");
  jbx_release(m), jbx_release(x), jbx_release(t);

  /* 1-D logits: one token, 0-dim targets */
  x = jbx_from_floats(1, (int64_t[]){3}, (float[]){0, 0, 0});
  t = jbx_from_ints(0, NULL, (int32_t[]){2});
  jbx_tensor *n = jbx_cross_entropy(x, t, JBX_REDUCE_NONE);
  check_shape("1-D logits, reduction none", n, 0, NULL);
  check_values("uniform over 3 classes: ln 3", n, (double[]){log(3.0)}, 1, 1e-7);
  jbx_release(n), jbx_release(x), jbx_release(t);

  /* no tokens: the mean is NaN (PyTorch's mean over nothing), none is empty */
  x = jbx_zeros(2, (int64_t[]){0, 5});
  t = jbx_empty(JBX_I32, 1, (int64_t[]){0});
  m = jbx_cross_entropy(x, t, JBX_REDUCE_MEAN);
  n = jbx_cross_entropy(x, t, JBX_REDUCE_NONE);
  CHECK(m && isnan(jbx_get(m, 0)), "the mean over no tokens is NaN");
  check_shape("none over no tokens", n, 1, (int64_t[]){0});
  jbx_release(m), jbx_release(n), jbx_release(x), jbx_release(t);

  /* a -inf logit on the target: an infinite loss, as in PyTorch */
  x = jbx_from_floats(2, (int64_t[]){1, 2}, (float[]){-INFINITY, 0});
  t = jbx_from_ints(1, (int64_t[]){1}, (int32_t[]){0});
  n = jbx_cross_entropy(x, t, JBX_REDUCE_NONE);
  CHECK(n && isinf(jbx_get(n, 0)) && jbx_get(n, 0) > 0, "-inf on the target gives +inf");
  jbx_release(n), jbx_release(x), jbx_release(t);

  /* targets given as a non-contiguous view are read in their logical order */
  x = gradcheck_input(3, (int64_t[]){2, 3, 4}, 1.0f, 4);
  jbx_tensor *tt = jbx_from_ints(2, (int64_t[]){3, 2}, (int32_t[]){0, 1, 2, 3, 1, 0}), *tv = jbx_transpose(tt, 0, 1);
  jbx_tensor *tc = jbx_contiguous(tv);
  jbx_tensor *a = jbx_cross_entropy(x, tv, JBX_REDUCE_NONE), *b = jbx_cross_entropy(x, tc, JBX_REDUCE_NONE);
  CHECK(a && b && max_abs_err(a, b) == 0, "transposed targets read as their contiguous copy");
  jbx_release(a), jbx_release(b), jbx_release(tc), jbx_release(tv), jbx_release(tt), jbx_release(x);

  bool prev = jbx_set_grad_enabled(false);
  x = gradcheck_input(2, (int64_t[]){2, 3}, 1.0f, 5);
  t = jbx_from_ints(1, (int64_t[]){2}, (int32_t[]){0, 2});
  m = jbx_cross_entropy(x, t, JBX_REDUCE_MEAN);
  CHECK(m && !m->node, "no_grad: cross_entropy records nothing");
  jbx_set_grad_enabled(prev);
  jbx_release(m), jbx_release(x), jbx_release(t);
}

static void test_errors(void) {
  jbx_tensor *x = jbx_zeros(3, (int64_t[]){2, 3, 7});
  jbx_tensor *t = jbx_from_ints(2, (int64_t[]){2, 3}, (int32_t[]){0, 6, 2, 3, 7, -1});
  CHECK(jbx_cross_entropy(x, t, JBX_REDUCE_MEAN) == NULL, "an id of V fails");
  CHECK_ERROR_HAS("cross_entropy: target 7 at [1, 1] is out of range for 7 classes (ids are 0..6)");
  jbx_i32(t)[4] = 0;
  CHECK(jbx_cross_entropy(x, t, JBX_REDUCE_NONE) == NULL, "a negative id fails");
  CHECK_ERROR_HAS("cross_entropy: target -1 at [1, 2] is out of range");
  jbx_set_message_base(1); /* as the Lua binding counts */
  CHECK(jbx_cross_entropy(x, t, JBX_REDUCE_NONE) == NULL, "a negative id fails");
  CHECK_ERROR_HAS("cross_entropy: target -1 at [2, 3] is out of range");
  jbx_set_message_base(0);
  jbx_tensor *t2 = jbx_from_ints(1, (int64_t[]){2}, (int32_t[]){0, 1});
  CHECK(jbx_cross_entropy(x, t2, JBX_REDUCE_MEAN) == NULL, "targets of the wrong shape fail");
  CHECK_ERROR_HAS("cross_entropy: targets [2] must have the shape of logits [2, 3, 7] without its last dim, [2, 3]");
  jbx_tensor *tf = jbx_zeros(2, (int64_t[]){2, 3});
  CHECK(jbx_cross_entropy(x, tf, JBX_REDUCE_MEAN) == NULL, "float targets fail");
  CHECK_ERROR_HAS("cross_entropy: targets must be int32 class ids, got float32 [2, 3]");
  CHECK(jbx_cross_entropy(t, t2, JBX_REDUCE_MEAN) == NULL, "int logits fail");
  CHECK_ERROR_HAS("cross_entropy: logits must be float32, got int32 [2, 3]");
  jbx_tensor *x0 = jbx_zeros(2, (int64_t[]){2, 0});
  CHECK(jbx_cross_entropy(x0, t2, JBX_REDUCE_MEAN) == NULL, "no classes fail");
  CHECK_ERROR_HAS("cross_entropy: logits [2, 0] need a last dim of at least 1 class");
  jbx_tensor *s = jbx_scalar(0);
  CHECK(jbx_cross_entropy(s, t2, JBX_REDUCE_MEAN) == NULL, "0-dim logits fail");
  CHECK_ERROR_HAS("cross_entropy: logits [] need a last dim of at least 1 class");
  jbx_i32(t)[5] = 0;
  CHECK(jbx_cross_entropy(x, t, (jbx_reduction)7) == NULL, "an unknown reduction fails");
  CHECK_ERROR_HAS("cross_entropy: unknown reduction 7 (mean or none)");
  CHECK(jbx_cross_entropy(NULL, t, JBX_REDUCE_MEAN) == NULL, "NULL logits fail");
  CHECK_ERROR_HAS("cross_entropy: logits and targets are required");
  jbx_release(x), jbx_release(t), jbx_release(t2), jbx_release(tf), jbx_release(x0), jbx_release(s);
}

int main(void) {
  test_fixture();
  test_large();
  test_edges();
  test_errors();
  return check_summary();
}
