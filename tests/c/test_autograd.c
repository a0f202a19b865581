/* The autograd engine (core/autograd.c, and the release of graphs in tensor.c):
 * accumulation, freed graphs, seeds, no_grad, detach, deep graphs, and the node itself:
 * any number of inputs, saved tensors and a typed parameter struct. */
#include "check.h"
#include "gradcheck.h"
#include "jbx_error.h"
#include "jbx_ops.h"

static void test_engine(void) {
  int64_t s[1] = {3};
  jbx_tensor *a = gradcheck_input(1, s, 1, 3);
  /* Two backward passes accumulate; zero_grad resets. */
  for (int pass = 0; pass < 2; pass++) {
    jbx_tensor *v = jbx_view(a, 1, s);
    jbx_tensor *l = jbx_sum(v, JBX_ALL_DIMS, false);
    CHECK(l && jbx_backward(l, NULL) == 0, "backward %s", jbx_last_error());
    jbx_release(l);
    jbx_release(v);
  }
  CHECK(a->grad && jbx_get(a->grad, 0) == 2, "accumulated");
  jbx_zero_grad(a);
  CHECK(a->grad == NULL, "zero_grad");
  /* A freed graph cannot be walked twice. */
  jbx_tensor *v = jbx_view(a, 1, s);
  jbx_tensor *l = jbx_sum(v, JBX_ALL_DIMS, false);
  CHECK(jbx_backward(l, NULL) == 0, "first");
  CHECK(jbx_backward(l, NULL) == -1, "second fails");
  CHECK_ERROR_HAS("already freed");
  jbx_release(l);
  jbx_release(v);
  /* Non-scalar root needs a gradient; shapes must match. */
  v = jbx_view(a, 1, s);
  CHECK(jbx_backward(v, NULL) == -1, "non-scalar");
  CHECK_ERROR_HAS("backward: the tensor [3] has more than one element");
  int64_t two[1] = {2};
  jbx_tensor *g = jbx_zeros(1, two);
  CHECK(jbx_backward(v, g) == -1, "bad grad");
  CHECK_ERROR_HAS("backward: gradient [2] does not match the tensor [3]");
  jbx_release(g);
  jbx_release(v);
  /* no_grad records nothing; detach cuts the graph. */
  bool prev = jbx_set_grad_enabled(false);
  v = jbx_view(a, 1, s);
  CHECK(v->node == NULL && !v->requires_grad, "no_grad");
  jbx_release(v);
  jbx_set_grad_enabled(prev);
  jbx_tensor *d = jbx_detach(a);
  CHECK(!d->requires_grad && jbx_f32(d) == jbx_f32(a), "detach shares storage");
  CHECK(jbx_backward(d, NULL) == -1, "detached");
  CHECK_ERROR_HAS("does not require grad");
  jbx_release(d);
  jbx_release(a);
}

/* A long chain must not overflow the stack in the topological sort. */
static void test_deep_graph(void) {
  int64_t s[1] = {2};
  jbx_tensor *a = gradcheck_input(1, s, 1, 4);
  jbx_tensor *x = jbx_retain(a);
  for (int i = 0; i < 100000; i++) {
    jbx_tensor *y = jbx_view(x, 1, s);
    jbx_release(x);
    x = y;
  }
  jbx_tensor *l = jbx_sum(x, JBX_ALL_DIMS, false);
  CHECK(l && jbx_backward(l, NULL) == 0, "deep backward: %s", jbx_last_error());
  CHECK(a->grad && jbx_get(a->grad, 1) == 1, "deep grad");
  jbx_release(l);
  jbx_release(x);
  jbx_release(a);
}

int main(void) {
  test_engine();
  test_deep_graph();
  return check_summary();
}
