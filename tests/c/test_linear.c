/* linear (core/ops/linear.c): values and gradients against the PyTorch fixture
 * (tools/fixtures/prior_ops.py: F.linear with w.T, autograd), every memory layout of x and
 * w against the composed matmul + add, the threaded bias gradient against sums in double,
 * empty sizes, every error message; and quick GELU (elementwise.c) against the same
 * fixture. Gradient checks are rows of op_table.h. */
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
  for (int with_bias = 1; with_bias >= 0; with_bias--) {
    jbx_tensor *x = leaf(fixture_get(fx, "lin_x")), *w = leaf(fixture_get(fx, "lin_w"));
    jbx_tensor *b = with_bias ? leaf(fixture_get(fx, "lin_b")) : NULL;
    jbx_tensor *y = jbx_linear(x, w, b);
    CHECK(y && backward_probe(y, fixture_get(fx, "lin_g")) == 0, "linear fixture: %s", jbx_last_error());
    const char *sfx = with_bias ? "" : "_nob";
    char n_y[32], n_dx[32], n_dw[32];
    snprintf(n_y, sizeof n_y, "lin_y%s", sfx);
    snprintf(n_dx, sizeof n_dx, "lin_dx%s", sfx);
    snprintf(n_dw, sizeof n_dw, "lin_dw%s", sfx);
    double ey = max_abs_err(y, fixture_get(fx, n_y)), ex = max_abs_err(x->grad, fixture_get(fx, n_dx));
    double ew = max_abs_err(w->grad, fixture_get(fx, n_dw));
    double eb = with_bias ? max_abs_err(b->grad, fixture_get(fx, "lin_db")) : 0;
    printf("linear%s vs PyTorch: max abs error y %.2g, dx %.2g, dw %.2g, db %.2g\n", with_bias ? "" : " (no bias)",
           ey, ex, ew, eb);
    CHECK(y && y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 3 && y->shape[2] == 4, "linear keeps the leading dims");
    CHECK(ey < 2e-6 && ex < 2e-6 && ew < 2e-6 && eb < 2e-6, "linear%s: errors y %g dx %g dw %g db %g", sfx, ey, ex, ew,
          eb);
    jbx_release(y);
    jbx_release(x);
    jbx_release(w);
    jbx_release(b);
  }

  /* quick GELU, x sigmoid(1.702 x): the reference transformer's MLP activation */
  jbx_tensor *qx = leaf(fixture_get(fx, "qg_x")), *qy = jbx_quick_gelu(qx);
  CHECK(qy && backward_probe(qy, fixture_get(fx, "qg_g")) == 0, "quick_gelu fixture: %s", jbx_last_error());
  double ey = max_abs_err(qy, fixture_get(fx, "qg_y")), ex = max_abs_err(qx->grad, fixture_get(fx, "qg_dx"));
  printf("quick_gelu vs PyTorch: max abs error y %.2g, dx %.2g\n", ey, ex);
  CHECK(ey < 4e-6 && ex < 4e-6, "quick_gelu: errors y %g dx %g", ey, ex);
  jbx_release(qy);
  jbx_release(qx);
  fixture_free(fx);
}

/* The composed reference: matmul(x, w) (+ b), the path nn.Linear took before. */
static jbx_tensor *composed(jbx_tensor *x, jbx_tensor *w, jbx_tensor *b) {
  jbx_tensor *m = jbx_matmul(x, w);
  if (!b || !m) return m;
  jbx_tensor *y = jbx_add(m, b);
  jbx_release(m);
  return y;
}

typedef jbx_tensor *(*viewer)(jbx_tensor *);
static jbx_tensor *as_is(jbx_tensor *t) { return jbx_retain(t); }
static jbx_tensor *t_last(jbx_tensor *t) { return jbx_transpose(t, -1, -2); }
static jbx_tensor *t01(jbx_tensor *t) { return jbx_transpose(t, 0, 1); }
static jbx_tensor *narrow_last(jbx_tensor *t) { return jbx_narrow(t, -1, 1, t->shape[t->ndim - 1] - 2); }
static jbx_tensor *narrow_first(jbx_tensor *t) { return jbx_narrow(t, 0, 1, t->shape[0] - 1); }
static jbx_tensor *expand_rows(jbx_tensor *t) { /* [1, k] -> [3, k]: stride 0 rows */
  return jbx_expand(t, 2, (int64_t[]){3, t->shape[1]});
}
static jbx_tensor *unsqueeze_mid(jbx_tensor *t) { return jbx_unsqueeze(t, 1); } /* a size-1 dim */

/* linear on a view of x and w against matmul + add on the same views: values and every
 * gradient, with bias and without. */
static void check_layout(const char *what, int xnd, const int64_t *xs, viewer vx, const int64_t *ws, viewer vw) {
  for (int with_bias = 0; with_bias < 2; with_bias++) {
    jbx_tensor *x[2], *w[2], *b[2], *y[2];
    for (int k = 0; k < 2; k++) {
      x[k] = gradcheck_input(xnd, xs, 1.0f, 5);
      w[k] = gradcheck_input(2, ws, 0.5f, 6);
      jbx_tensor *xv = vx(x[k]), *wv = vw(w[k]);
      b[k] = with_bias ? gradcheck_input(1, &wv->shape[1], 1.0f, 7) : NULL;
      y[k] = k == 0 ? jbx_linear(xv, wv, b[k]) : composed(xv, wv, b[k]);
      jbx_tensor *g = y[k] ? gradcheck_input(y[k]->ndim, y[k]->shape, 1.0f, 8) : NULL;
      CHECK(y[k] && backward_probe(y[k], g) == 0, "%s (%s): %s", what, k ? "composed" : "linear", jbx_last_error());
      jbx_release(g);
      jbx_release(xv);
      jbx_release(wv);
    }
    double ey = max_abs_err(y[0], y[1]), ex = max_abs_err(x[0]->grad, x[1]->grad);
    double ew = max_abs_err(w[0]->grad, w[1]->grad), eb = with_bias ? max_abs_err(b[0]->grad, b[1]->grad) : 0;
    CHECK(ey < 1e-5 && ex < 1e-5 && ew < 1e-5 && eb < 1e-5, "%s%s: linear vs matmul + add: y %g dx %g dw %g db %g", what,
          with_bias ? " with bias" : "", ey, ex, ew, eb);
    for (int k = 0; k < 2; k++) {
      jbx_release(y[k]);
      jbx_release(x[k]);
      jbx_release(w[k]);
      jbx_release(b[k]);
    }
  }
}

static void test_layouts(void) {
  int64_t w45[2] = {4, 5}, w54[2] = {5, 4}, w47[2] = {4, 7};
  check_layout("contiguous [2, 3, 4]", 3, (int64_t[]){2, 3, 4}, as_is, w45, as_is);
  check_layout("1-D x", 1, (int64_t[]){4}, as_is, w45, as_is);
  check_layout("x^T (read transposed)", 2, (int64_t[]){4, 3}, t_last, w45, as_is);
  check_layout("x [3, 2, 4] transposed to [2, 3, 4] (copied)", 3, (int64_t[]){3, 2, 4}, t01, w45, as_is);
  check_layout("x narrowed in its last dim (ld > n_in)", 3, (int64_t[]){2, 3, 6}, narrow_last, w45, as_is);
  check_layout("x narrowed in dim 0 (an offset)", 3, (int64_t[]){3, 3, 4}, narrow_first, w45, as_is);
  check_layout("x with a size-1 dim", 2, (int64_t[]){3, 4}, unsqueeze_mid, w45, as_is);
  check_layout("x rows expanded (stride 0, copied)", 2, (int64_t[]){1, 4}, expand_rows, w45, as_is);
  check_layout("w^T (torch layout)", 3, (int64_t[]){2, 3, 4}, as_is, w54, t_last);
  check_layout("w narrowed (ld > n_out)", 3, (int64_t[]){2, 3, 4}, as_is, w47, narrow_last);
  check_layout("x^T and w^T", 2, (int64_t[]){4, 3}, t_last, w54, t_last);
  check_layout("one row", 2, (int64_t[]){1, 4}, as_is, w45, as_is);
}

/* Many rows: the threaded bias gradient and the big sgemm paths, against double sums. */
static void test_large(void) {
  int64_t M = 900, K = 96, N = 130;
  jbx_tensor *x = gradcheck_input(2, (int64_t[]){M, K}, 1.0f, 11);
  jbx_tensor *w = gradcheck_input(2, (int64_t[]){K, N}, 0.1f, 12), *b = gradcheck_input(1, &N, 1.0f, 13);
  jbx_tensor *g = gradcheck_input(2, (int64_t[]){M, N}, 1.0f, 14);
  g->requires_grad = false;
  jbx_tensor *y = jbx_linear(x, w, b);
  CHECK(y && backward_probe(y, g) == 0, "large linear: %s", jbx_last_error());
  const float *xv = jbx_f32(x), *wv = jbx_f32(w), *bv = jbx_f32(b), *gv = jbx_f32(g);
  int bad = 0;
  for (int64_t r = 0; y && r < M; r += 37)
    for (int64_t j = 0; j < N; j++) {
      double s = bv[j];
      for (int64_t k = 0; k < K; k++) s += (double)xv[r * K + k] * wv[k * N + j];
      bad += fabs(jbx_f32(y)[r * N + j] - s) > 1e-4 * (1 + fabs(s));
    }
  for (int64_t j = 0; b->grad && j < N; j++) {
    double s = 0;
    for (int64_t r = 0; r < M; r++) s += gv[r * N + j];
    bad += fabs(jbx_f32(b->grad)[j] - s) > 1e-4 * (1 + fabs(s));
  }
  CHECK(b->grad && bad == 0, "%d wrong elements in the large linear (values and bias gradient)", bad);
  /* deterministic: a second backward gives the same bits */
  float first = b->grad ? jbx_f32(b->grad)[N - 1] : 0;
  jbx_zero_grad(b);
  jbx_release(y);
  y = jbx_linear(x, w, b);
  CHECK(y && backward_probe(y, g) == 0 && b->grad && jbx_f32(b->grad)[N - 1] == first, "the bias gradient repeats");
  jbx_release(y);
  jbx_release(g);
  jbx_release(x);
  jbx_release(w);
  jbx_release(b);
}

static void test_empty_and_no_grad(void) {
  /* no rows: [0, 4] -> [0, 3]; the backward runs (an empty gradient carries nothing,
   * as for matmul) */
  jbx_tensor *x = jbx_zeros(2, (int64_t[]){0, 4}), *w = gradcheck_input(2, (int64_t[]){4, 3}, 1.0f, 1);
  jbx_tensor *b = gradcheck_input(1, (int64_t[]){3}, 1.0f, 2);
  jbx_tensor *y = jbx_linear(x, w, b), *l = y ? jbx_sum(y, JBX_ALL_DIMS, false) : NULL;
  check_shape("linear of no rows", y, 2, (int64_t[]){0, 3});
  CHECK(l && jbx_backward(l, NULL) == 0, "no rows backward: %s", jbx_last_error());
  jbx_release(l), jbx_release(y), jbx_release(x), jbx_release(w), jbx_release(b);

  /* no input features: y = b on every row, db = the row count */
  x = gradcheck_input(2, (int64_t[]){2, 0}, 1.0f, 3);
  w = gradcheck_input(2, (int64_t[]){0, 3}, 1.0f, 4);
  b = jbx_from_floats(1, (int64_t[]){3}, (float[]){1, 2, 3});
  b->requires_grad = true;
  y = jbx_linear(x, w, b);
  l = y ? jbx_sum(y, JBX_ALL_DIMS, false) : NULL;
  check_values("linear with n_in 0", y, (double[]){1, 2, 3, 1, 2, 3}, 6, 0);
  CHECK(l && jbx_backward(l, NULL) == 0 && b->grad && jbx_get(b->grad, 1) == 2, "n_in 0: db = rows (%s)",
        jbx_last_error());
  jbx_release(l), jbx_release(y), jbx_release(w);
  w = jbx_zeros(2, (int64_t[]){0, 3});
  y = jbx_linear(x, w, NULL);
  check_values("linear with n_in 0, no bias", y, (double[]){0, 0, 0, 0, 0, 0}, 6, 0);
  jbx_release(y), jbx_release(x), jbx_release(w), jbx_release(b);

  /* grad mode off, or nothing wanting a gradient: nothing recorded */
  x = gradcheck_input(2, (int64_t[]){2, 4}, 1.0f, 5);
  w = gradcheck_input(2, (int64_t[]){4, 3}, 1.0f, 6);
  bool prev = jbx_set_grad_enabled(false);
  y = jbx_linear(x, w, NULL);
  CHECK(y && !y->node && !y->requires_grad, "no_grad: linear records nothing");
  jbx_set_grad_enabled(prev);
  jbx_release(y);
  x->requires_grad = w->requires_grad = false;
  y = jbx_linear(x, w, NULL);
  CHECK(y && !y->node, "constant inputs: linear records nothing");
  jbx_release(y), jbx_release(x), jbx_release(w);
}

static void test_errors(void) {
  jbx_tensor *x = jbx_zeros(2, (int64_t[]){2, 5}), *w = jbx_zeros(2, (int64_t[]){4, 3});
  jbx_tensor *b4 = jbx_zeros(1, (int64_t[]){4}), *w3 = jbx_zeros(3, (int64_t[]){4, 3, 1});
  jbx_tensor *xi = jbx_empty(JBX_I32, 2, (int64_t[]){2, 4}), *s = jbx_scalar(1);
  CHECK(jbx_linear(x, w, NULL) == NULL, "a wrong feature count fails");
  CHECK_ERROR_HAS("linear: input [2, 5] must end in 4 features (weight [4, 3])");
  CHECK(jbx_linear(s, w, NULL) == NULL, "a 0-dim input fails");
  CHECK_ERROR_HAS("linear: input [] must end in 4 features (weight [4, 3])");
  CHECK(jbx_linear(x, w3, NULL) == NULL, "a 3-D weight fails");
  CHECK_ERROR_HAS("linear: weight [4, 3, 1] must be [n_in, n_out]");
  jbx_tensor *x4 = jbx_zeros(2, (int64_t[]){2, 4});
  CHECK(jbx_linear(x4, w, b4) == NULL, "a bias of the wrong size fails");
  CHECK_ERROR_HAS("linear: bias [4] must be [3] to match weight [4, 3]");
  CHECK(jbx_linear(xi, w, NULL) == NULL, "an int32 input fails");
  CHECK_ERROR_HAS("linear: input must be float32, got int32");
  CHECK(jbx_linear(NULL, w, NULL) == NULL && jbx_linear(x4, NULL, NULL) == NULL, "NULL operands fail");
  CHECK_ERROR_HAS("linear: input and weight are required");
  jbx_release(x), jbx_release(w), jbx_release(b4), jbx_release(w3), jbx_release(xi), jbx_release(s), jbx_release(x4);
}

int main(void) {
  test_fixture();
  test_layouts();
  test_large();
  test_empty_and_no_grad();
  test_errors();
  return check_summary();
}
