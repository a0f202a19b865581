/* The tensor core: creation, views, strided copies, the seeded generator, and the
 * autograd engine (recording, accumulation, no_grad, freed graphs). */
#include "check.h"
#include "gradcheck.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_rng.h"

static void test_creation(void) {
  int64_t shape[2] = {2, 3};
  jbx_tensor *z = jbx_zeros(2, shape), *f = jbx_full(2, shape, 2.5f);
  CHECK(jbx_numel(z) == 6 && jbx_is_contiguous(z), "zeros");
  CHECK(jbx_get(z, 5) == 0 && jbx_get(f, 4) == 2.5, "values");
  jbx_tensor *a = jbx_arange(0, 1, 0.25);
  CHECK(jbx_numel(a) == 4 && jbx_get(a, 3) == 0.75, "arange");
  CHECK(jbx_arange(0, 1, 0) == NULL, "zero step fails");
  CHECK_ERROR_HAS("arange: step must be non-zero");
  int64_t bad[1] = {-2};
  CHECK(jbx_empty(JBX_F32, 1, bad) == NULL, "negative size fails");
  CHECK_ERROR_HAS("negative size");
  int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  CHECK(jbx_empty(JBX_F32, 9, nine) == NULL, "9 dims fail");
  CHECK_ERROR_HAS("at most 8");
  jbx_release(z);
  jbx_release(f);
  jbx_release(a);
}

static void test_rng(void) {
  /* Golden values pin the stream: the same seed gives the same numbers everywhere. */
  jbx_rng r;
  jbx_rng_seed(&r, 42);
  uint64_t first = jbx_rng_u64(&r);
  jbx_rng_seed(&r, 42);
  CHECK(jbx_rng_u64(&r) == first, "reseeding repeats");
  CHECK(first == 0x15780b2e0c2ec716ULL, "golden u64 %llx", (unsigned long long)first);
  CHECK_CLOSE(jbx_rng_normal(&r), -0.41536520949523315, 1e-15);
  int64_t shape[1] = {10000};
  jbx_rng_seed(&r, 7);
  jbx_tensor *n = jbx_randn(1, shape, &r);
  double s = 0, s2 = 0;
  for (int i = 0; i < 10000; i++) {
    s += jbx_get(n, i);
    s2 += jbx_get(n, i) * jbx_get(n, i);
  }
  CHECK(fabs(s / 1e4) < 0.05 && fabs(s2 / 1e4 - 1) < 0.05, "randn moments %g %g", s / 1e4, s2 / 1e4);
  jbx_tensor *u = jbx_rand(1, shape, &r);
  double lo = 1, hi = 0;
  for (int i = 0; i < 10000; i++) {
    lo = fmin(lo, jbx_get(u, i));
    hi = fmax(hi, jbx_get(u, i));
  }
  CHECK(lo >= 0 && hi < 1 && hi > 0.99 && lo < 0.01, "rand range");
  for (int i = 0; i < 1000; i++) CHECK(jbx_rng_below(&r, 3) < 3, "below");
  jbx_release(n);
  jbx_release(u);
}

static void test_views(void) {
  float data[6] = {0, 1, 2, 3, 4, 5};
  int64_t shape[2] = {2, 3};
  jbx_tensor *a = jbx_from_floats(2, shape, data);
  jbx_tensor *t = jbx_transpose(a, 0, 1);
  CHECK(t->shape[0] == 3 && t->shape[1] == 2 && !jbx_is_contiguous(t), "transpose shape");
  CHECK(jbx_get(t, 1) == 3 && jbx_get(t, 2) == 1, "transpose values");
  jbx_tensor *c = jbx_contiguous(t);
  CHECK(jbx_is_contiguous(c) && jbx_f32(c)[1] == 3, "contiguous copy");
  int64_t flat[1] = {-1};
  jbx_tensor *v = jbx_view(t, 1, flat); /* not viewable: copies */
  CHECK(v->shape[0] == 6 && jbx_get(v, 1) == 3, "view of transposed");
  jbx_tensor *n = jbx_narrow(a, 1, 1, 2);
  CHECK(n->shape[1] == 2 && jbx_get(n, 0) == 1 && jbx_get(n, 3) == 5, "narrow");
  int64_t big[3] = {4, 2, 3};
  jbx_tensor *e = jbx_expand(a, 3, big);
  CHECK(jbx_numel(e) == 24 && jbx_get(e, 23) == 5, "expand");
  jbx_tensor *u = jbx_unsqueeze(a, 0), *s = jbx_squeeze(u, 0);
  CHECK(u->ndim == 3 && s->ndim == 2, "unsqueeze/squeeze");
  int64_t bad[2] = {4, 2};
  CHECK(jbx_view(a, 2, bad) == NULL, "bad view");
  CHECK_ERROR_HAS("view: cannot view [2, 3] (6 elements) as [4, 2]");
  CHECK(jbx_narrow(a, 1, 2, 2) == NULL, "bad narrow");
  CHECK_ERROR_HAS("narrow: range [2, 4) is outside dim 1 of size 3");
  CHECK(jbx_transpose(a, 0, 2) == NULL, "bad transpose");
  CHECK_ERROR_HAS("transpose: dim 2 out of range for a tensor of shape [2, 3]");
  CHECK(jbx_squeeze(a, 0) == NULL, "bad squeeze");
  CHECK_ERROR_HAS("squeeze: dim 0 of [2, 3] is not of size 1");
  int64_t wide[2] = {2, 4};
  CHECK(jbx_expand(a, 2, wide) == NULL, "bad expand");
  CHECK_ERROR_HAS("expand: dim 1 of [2, 3] has size 3, cannot expand to 4");
  int perm[2] = {0, 0};
  CHECK(jbx_permute(a, perm) == NULL, "bad permute");
  CHECK_ERROR_HAS("permute: order is not a permutation");
  /* copy_ into a strided destination */
  jbx_tensor *z = jbx_zeros(2, shape);
  jbx_tensor *zt = jbx_transpose(z, 0, 1);
  CHECK(jbx_copy_(zt, t) == 0 && jbx_get(z, 1) == 1 && jbx_get(z, 3) == 3, "strided copy");
  jbx_tensor *gs[] = {a, t, c, v, n, e, u, s, z, zt};
  for (int i = 0; i < 10; i++) jbx_release(gs[i]);
}

/* Gradient checks of the differentiable views, composed with a mul so values matter. */
static jbx_tensor *fn_transpose_view(jbx_tensor **in, void *ctx) {
  jbx_tensor *t = jbx_transpose(in[0], 0, 1);
  int64_t flat[1] = {-1};
  jbx_tensor *v = jbx_view(t, 1, flat);
  jbx_release(t);
  return v;
}
static jbx_tensor *fn_narrow_expand(jbx_tensor **in, void *ctx) {
  jbx_tensor *n = jbx_narrow(in[0], 1, 1, 2);
  int64_t big[3] = {3, 2, 2};
  jbx_tensor *e = jbx_expand(n, 3, big);
  jbx_release(n);
  return e;
}
static jbx_tensor *fn_permute_clone(jbx_tensor **in, void *ctx) {
  int perm[3] = {2, 0, 1};
  jbx_tensor *p = jbx_permute(in[0], perm);
  jbx_tensor *c = jbx_clone(p);
  jbx_release(p);
  return c;
}
static jbx_tensor *fn_unsqueeze_squeeze(jbx_tensor **in, void *ctx) {
  jbx_tensor *u = jbx_unsqueeze(in[0], 1);
  jbx_tensor *s = jbx_squeeze(u, 1);
  jbx_release(u);
  return s;
}

static void test_view_grads(void) {
  int64_t s2[2] = {2, 3}, s3[3] = {2, 3, 4};
  jbx_tensor *a = gradcheck_input(2, s2, 1, 1), *b = gradcheck_input(3, s3, 1, 2);
  CHECK_GRAD("transpose+view", fn_transpose_view, NULL, 1, &a, 1e-2, 1e-3);
  CHECK_GRAD("narrow+expand", fn_narrow_expand, NULL, 1, &a, 1e-2, 1e-3);
  CHECK_GRAD("permute+clone", fn_permute_clone, NULL, 1, &b, 1e-2, 1e-3);
  CHECK_GRAD("unsqueeze+squeeze", fn_unsqueeze_squeeze, NULL, 1, &a, 1e-2, 1e-3);
  jbx_release(a);
  jbx_release(b);
}

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
  test_creation();
  test_rng();
  test_views();
  test_view_grads();
  test_engine();
  test_deep_graph();
  return check_summary();
}
