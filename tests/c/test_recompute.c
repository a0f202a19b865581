/* recompute (core/ops/recompute.c): recompute in the backward gives exactly the
 * gradients of the plain graph, to the inputs and to the watched parameters; keeps no
 * activations of fn; frees its context once (recorded or not); passes a failing
 * recompute's error on; and records nothing when nothing wants a gradient. */
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "values.h"

/* fn(x) = tanh(x @ w) * x, with w read through the context (a parameter). */
typedef struct {
  jbx_tensor *w;
  int calls, frees;
  bool fail;
} block;

static jbx_tensor *block_fn(void *ctx, int n, jbx_tensor *const *in) {
  block *b = ctx;
  b->calls++;
  if (n != 1) {
    jbx_fail("block_fn: wants 1 input, got %d", n);
    return NULL;
  }
  if (b->fail) {
    jbx_fail("block_fn: failed on purpose");
    return NULL;
  }
  jbx_tensor *m = jbx_matmul(in[0], b->w), *t = m ? jbx_tanh(m) : NULL, *y = t ? jbx_mul(t, in[0]) : NULL;
  jbx_release(m);
  jbx_release(t);
  return y;
}

static jbx_tensor *identity_fn(void *ctx, int n, jbx_tensor *const *in) {
  (void)ctx;
  (void)n;
  return jbx_retain(in[0]);
}

static void count_free(void *ctx) { ((block *)ctx)->frees++; }

static jbx_tensor *loss_of(jbx_tensor *y) {
  jbx_tensor *sq = jbx_mul(y, y), *l = jbx_sum(sq, JBX_ALL_DIMS, false);
  jbx_release(sq);
  return l;
}

static void test_same_gradients(void) {
  int64_t xs[2] = {4, 6}, ws[2] = {6, 6};
  for (int watch_only = 0; watch_only <= 1; watch_only++) {
    jbx_tensor *x = gradcheck_input(2, xs, 1.0f, 11), *w = gradcheck_input(2, ws, 0.5f, 12);
    x->requires_grad = !watch_only; /* the node must still be recorded for w alone */
    block b = {w, 0, 0, false};
    jbx_tensor *plain = block_fn(&b, 1, &x), *lp = loss_of(plain);
    CHECK(jbx_backward(lp, NULL) == 0, "plain backward: %s", jbx_last_error());
    jbx_tensor *gx = x->grad ? jbx_clone(x->grad) : NULL, *gw = jbx_clone(w->grad);
    jbx_zero_grad(x);
    jbx_zero_grad(w);

    b.calls = 0;
    jbx_tensor *y = jbx_recompute(block_fn, &b, count_free, 1, &x, 1, &w);
    CHECK(y && y->node && strcmp(y->node->op, "recompute") == 0, "recompute records one node");
    CHECK(y && y->node && y->node->n_saved == 0, "no saved activations");
    CHECK(b.calls == 1 && b.frees == 0, "forward ran fn once (%d) and kept the context", b.calls);
    CHECK(max_abs_err(y, plain) == 0, "same output");
    jbx_tensor *l = loss_of(y);
    CHECK(jbx_backward(l, NULL) == 0, "recompute backward: %s", jbx_last_error());
    CHECK(b.calls == 2, "the backward recomputed fn once (calls %d)", b.calls);
    CHECK(b.frees == 1, "the spent node freed the context once (frees %d)", b.frees);
    CHECK(max_abs_err(w->grad, gw) == 0, "watched parameter gets the same gradient");
    if (!watch_only) CHECK(x->grad && max_abs_err(x->grad, gx) == 0, "input gets the same gradient");
    else CHECK(x->grad == NULL, "an input without requires_grad gets none");
    jbx_release(l);
    jbx_release(y);
    jbx_release(lp);
    jbx_release(plain);
    jbx_release(gx);
    jbx_release(gw);
    jbx_release(x);
    jbx_release(w);
  }
}

static void test_lifetimes_and_errors(void) {
  int64_t xs[2] = {3, 5}, ws[2] = {5, 5};
  jbx_tensor *x = gradcheck_input(2, xs, 1.0f, 1), *w = gradcheck_input(2, ws, 1.0f, 2);

  /* Without grad: nothing recorded, the context freed at once. */
  block b = {w, 0, 0, false};
  bool prev = jbx_set_grad_enabled(false);
  jbx_tensor *y = jbx_recompute(block_fn, &b, count_free, 1, &x, 1, &w);
  jbx_set_grad_enabled(prev);
  CHECK(y && !y->node && !y->requires_grad && b.frees == 1, "no-grad recompute records nothing, frees ctx");
  jbx_release(y);

  /* A graph released without a backward frees the context too. */
  b.frees = 0;
  y = jbx_recompute(block_fn, &b, count_free, 1, &x, 1, &w);
  jbx_release(y);
  CHECK(b.frees == 1, "a dropped graph frees the context (frees %d)", b.frees);

  /* fn returning its own input: the output is a header of its own, the input keeps no node. */
  y = jbx_recompute(identity_fn, NULL, NULL, 1, &x, 0, NULL);
  CHECK(y && y != x && x->node == NULL && y->node, "identity output is a new header");
  jbx_release(y);

  /* Failing in the forward and in the recompute: the error passes on. */
  b = (block){w, 0, 0, true};
  y = jbx_recompute(block_fn, &b, count_free, 1, &x, 1, &w);
  CHECK(y == NULL && b.frees == 1, "a failing forward returns NULL and frees ctx");
  CHECK_ERROR_HAS("failed on purpose");
  b = (block){w, 0, 0, false};
  y = jbx_recompute(block_fn, &b, count_free, 1, &x, 1, &w);
  b.fail = true;
  jbx_tensor *l = loss_of(y);
  CHECK(jbx_backward(l, NULL) < 0, "a failing recompute fails the backward");
  CHECK_ERROR_HAS("failed on purpose");
  jbx_release(l);
  jbx_release(y);
  CHECK(b.frees == 1, "context freed after a failed backward (frees %d)", b.frees);
  jbx_release(x);
  jbx_release(w);
}

int main(void) {
  test_same_gradients();
  test_lifetimes_and_errors();
  return check_summary();
}
