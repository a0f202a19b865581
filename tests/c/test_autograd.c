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

/* ---- the node: any number of inputs, saved tensors, a typed parameter struct ---- */

typedef struct {
  float scale;
  int64_t skip; /* an input that gets no gradient */
} weighted_params;

/* out = scale * sum of the inputs except in[skip]; saved[0] carries a second scale. */
static int weighted_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  const weighted_params *p = JBX_NODE_PARAMS(nd, weighted_params);
  float s = p->scale * jbx_f32(nd->saved[0])[0];
  for (int k = 0; k < nd->n_in; k++) {
    if (k == p->skip || !nd->in[k]) continue;
    jbx_tensor *gk = jbx_mul_scalar(g, s);
    int rc = gk ? jbx_accum_grad(nd->in[k], gk) : -1;
    jbx_release(gk);
    if (rc < 0) return -1;
  }
  return 0;
}

static void test_node(void) {
  enum { N = 12 }; /* more inputs than any fixed cap the node ever had */
  int64_t s[1] = {2};
  jbx_tensor *in[N];
  for (int k = 0; k < N; k++) in[k] = k == 5 ? NULL : gradcheck_input(1, s, 1, 10 + (uint64_t)k);
  jbx_tensor *out = jbx_zeros(1, s), *scale2 = jbx_scalar(2.0f);
  weighted_params p = {0.5f, 3};
  jbx_node *nd = JBX_RECORD(out, "weighted", weighted_backward, N, in, p);
  CHECK(nd && nd->n_in == N && out->requires_grad && out->node == nd, "recorded %d inputs", N);
  p.scale = 99; /* the node holds a copy */
  CHECK(nd && JBX_NODE_PARAMS(nd, weighted_params)->scale == 0.5f, "params copied");
  for (int i = 0; i < 5; i++) CHECK(nd && jbx_node_save(nd, i ? NULL : scale2) == 0, "save %d", i);
  CHECK(nd && nd->n_saved == 5 && nd->saved[0] == scale2 && scale2->refs == 2, "saved and retained");
  jbx_tensor *l = jbx_sum(out, JBX_ALL_DIMS, false);
  CHECK(l && jbx_backward(l, NULL) == 0, "backward: %s", jbx_last_error());
  for (int k = 0; k < N; k++) {
    if (!in[k]) continue;
    CHECK(k == 3 ? in[k]->grad == NULL : in[k]->grad && jbx_get(in[k]->grad, 1) == 1.0,
          "input %d gradient", k);
  }
  /* the pass spent the node: inputs and saved tensors released, the op name kept */
  CHECK(nd->n_in == 0 && nd->n_saved == 0 && nd->saved == NULL && scale2->refs == 1,
        "node spent after backward");
  jbx_tensor *seed = jbx_full(1, s, 1.0f);
  CHECK(jbx_backward(out, seed) == -1, "spent node");
  CHECK_ERROR_HAS("the graph of 'weighted' was already freed");
  jbx_release(seed);
  jbx_release(l);
  jbx_release(out);
  jbx_release(scale2);
  for (int k = 0; k < N; k++) jbx_release(in[k]);

  /* Nothing requires grad: nothing is recorded. */
  jbx_tensor *a = jbx_zeros(1, s), *b = jbx_zeros(1, s);
  CHECK(jbx_record(b, "none", weighted_backward, 1, &a) == NULL && !b->requires_grad && !b->node,
        "no node without a requiring input");
  jbx_release(a);
  jbx_release(b);
}

/* Releasing an unspent graph releases the saved tensors and inputs of every node. */
static void test_release_unspent(void) {
  int64_t s[1] = {3};
  jbx_tensor *x = gradcheck_input(1, s, 1, 5), *keep = jbx_scalar(1.0f);
  jbx_tensor *y = jbx_exp(x), *z = jbx_zeros(1, s);
  weighted_params p = {1, -1};
  jbx_node *nd = JBX_RECORD(z, "weighted", weighted_backward, 1, &y, p);
  CHECK(nd && jbx_node_save(nd, keep) == 0 && keep->refs == 2 && y->refs == 2, "held by the node");
  jbx_release(y);
  jbx_release(z);
  CHECK(keep->refs == 1 && x->refs == 1, "graph released without a backward");
  jbx_release(keep);
  jbx_release(x);
}

int main(void) {
  test_engine();
  test_deep_graph();
  test_node();
  test_release_unspent();
  return check_summary();
}
