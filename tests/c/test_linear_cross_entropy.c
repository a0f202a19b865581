/* linear_cross_entropy (core/ops/linear_cross_entropy.c): the fused output layer and loss
 * equals the composed linear (x w^T) + cross_entropy (each pinned to PyTorch fixtures in
 * test_linear.c and test_cross_entropy.c) in loss and in both gradients, over several
 * chunks of rows and with an upstream gradient other than 1; and every error message.
 * Gradient checks are rows of op_table.h. */
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "values.h"

/* max |a - b| / max |b| */
static double rel_to_max(jbx_tensor *a, jbx_tensor *b) {
  double scale = 0;
  for (int64_t i = 0, n = jbx_numel(b); i < n; i++) scale = fmax(scale, fabs(jbx_get(b, i)));
  return max_abs_err(a, b) / (scale > 0 ? scale : 1);
}

static jbx_tensor *targets_of(int64_t n, int64_t V, uint64_t seed) {
  jbx_rng rng;
  jbx_rng_seed(&rng, seed);
  int64_t shape[1] = {n};
  jbx_tensor *t = jbx_empty(JBX_I32, 1, shape);
  for (int64_t i = 0; i < n; i++) jbx_i32(t)[i] = (int32_t)jbx_rng_below(&rng, (uint64_t)V);
  return t;
}

/* N rows of width K against V classes: fused vs composed, gradient scaled by 3. */
static void compare(int64_t N, int64_t K, int64_t V) {
  int64_t xs[2] = {N, K}, ws[2] = {V, K};
  jbx_tensor *x1 = gradcheck_input(2, xs, 1.0f, 7), *w1 = gradcheck_input(2, ws, 0.3f, 8);
  bool prev = jbx_set_grad_enabled(false); /* leaf copies, not clone nodes */
  jbx_tensor *x2 = jbx_clone(x1), *w2 = jbx_clone(w1);
  jbx_set_grad_enabled(prev);
  x2->requires_grad = w2->requires_grad = true;
  jbx_tensor *t = targets_of(N, V, 9);
  jbx_tensor *fused = jbx_linear_cross_entropy(x1, w1, t);
  jbx_tensor *wt = jbx_transpose(w2, 0, 1), *logits = jbx_linear(x2, wt, NULL);
  jbx_tensor *ref = jbx_cross_entropy(logits, t, JBX_REDUCE_MEAN);
  jbx_tensor *g = jbx_full(0, NULL, 3.0f);
  CHECK(fused && ref && jbx_backward(fused, g) == 0 && jbx_backward(ref, g) == 0, "backward: %s", jbx_last_error());
  double el = fused && ref ? fabs(jbx_get(fused, 0) - jbx_get(ref, 0)) / fabs(jbx_get(ref, 0)) : 1;
  double ex = rel_to_max(x1->grad, x2->grad), ew = rel_to_max(w1->grad, w2->grad);
  printf("linear_cross_entropy N %lld K %lld V %lld vs composed: loss %.2g, dx %.2g, dw %.2g (relative)\n",
         (long long)N, (long long)K, (long long)V, el, ex, ew);
  CHECK(el < 1e-6 && ex < 1e-5 && ew < 1e-5, "fused vs composed: loss %g dx %g dw %g", el, ex, ew);
  jbx_release(g);
  jbx_release(ref);
  jbx_release(logits);
  jbx_release(wt);
  jbx_release(fused);
  jbx_release(t);
  jbx_release(x1);
  jbx_release(w1);
  jbx_release(x2);
  jbx_release(w2);
}

static void test_errors(void) {
  int64_t xs[2] = {3, 4}, ws[2] = {5, 4}, bad[2] = {5, 3};
  jbx_tensor *x = jbx_zeros(2, xs), *w = jbx_zeros(2, ws), *wb = jbx_zeros(2, bad);
  jbx_tensor *t = targets_of(3, 5, 1), *tf = jbx_zeros(1, (int64_t[]){3}), *t2 = targets_of(2, 5, 1);
  CHECK(jbx_linear_cross_entropy(x, wb, t) == NULL, "width mismatch");
  CHECK_ERROR_HAS("input [3, 4] must end in 3 features (weight [5, 3])");
  CHECK(jbx_linear_cross_entropy(x, w, tf) == NULL, "float targets");
  CHECK_ERROR_HAS("targets must be int32 class ids");
  CHECK(jbx_linear_cross_entropy(x, w, t2) == NULL, "targets shape");
  CHECK_ERROR_HAS("targets [2] must have the shape of input [3, 4] without its last dim");
  jbx_i32(t)[1] = 5;
  CHECK(jbx_linear_cross_entropy(x, w, t) == NULL, "target out of range");
  CHECK_ERROR_HAS("target 5 at row 1 is out of range for 5 classes (ids are 0..4)");
  jbx_release(x);
  jbx_release(w);
  jbx_release(wb);
  jbx_release(t);
  jbx_release(tf);
  jbx_release(t2);
}

int main(void) {
  compare(5, 4, 7);      /* one chunk */
  compare(600, 16, 2048); /* three chunks of 256 rows */
  compare(300, 8, 3000);  /* chunks of 174 rows, a short last one */
  test_errors();
  return check_summary();
}
