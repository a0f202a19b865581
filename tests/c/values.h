/* Value checks shared by the C tests: small matrices and ramps, shapes, and element by
 * element comparison with a reference (tol 0: exact), NaN and infinities included. */
#ifndef JBX_TEST_VALUES_H
#define JBX_TEST_VALUES_H
#include <math.h>

#include "check.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_tensor.h"

static inline jbx_tensor *mat(int64_t r, int64_t c, const float *v) {
  int64_t s[2] = {r, c};
  return jbx_from_floats(2, s, v);
}

/* Every element of t equals want[] (row-major), within tol. */
static inline void check_values(const char *what, jbx_tensor *t, const double *want, int64_t n, double tol) {
  CHECK(t != NULL, "%s: NULL (%s)", what, jbx_last_error());
  if (!t) return;
  CHECK(jbx_numel(t) == n, "%s: %lld elements, want %lld", what, (long long)jbx_numel(t), (long long)n);
  for (int64_t i = 0; i < n && i < jbx_numel(t); i++) {
    double got = jbx_get(t, i);
    bool ok = (isnan(want[i]) && isnan(got)) || (isinf(want[i]) && got == want[i]) ||
              fabs(got - want[i]) <= tol * (1 + fabs(want[i]));
    CHECK(ok, "%s[%lld]: %.8g vs %.8g", what, (long long)i, got, want[i]);
  }
}

static inline void check_shape(const char *what, jbx_tensor *t, int ndim, const int64_t *shape) {
  CHECK(t && t->ndim == ndim, "%s: ndim %d, want %d", what, t ? t->ndim : -1, ndim);
  for (int d = 0; t && d < ndim && d < t->ndim; d++)
    CHECK(t->shape[d] == shape[d], "%s: dim %d is %lld, want %lld", what, d, (long long)t->shape[d],
          (long long)shape[d]);
}

/* 0, 1, 2, ... in row-major order. */
static inline jbx_tensor *ramp(int ndim, const int64_t *shape) {
  jbx_tensor *t = jbx_empty(JBX_F32, ndim, shape);
  for (int64_t i = 0, n = jbx_numel(t); i < n; i++) jbx_f32(t)[i] = (float)i;
  return t;
}

/* Largest |a - b| over two tensors of the same numel (1e9 when one is missing). */
static inline double max_abs_err(const jbx_tensor *a, const jbx_tensor *b) {
  if (!a || !b || jbx_numel(a) != jbx_numel(b)) return 1e9;
  double m = 0;
  for (int64_t i = 0, n = jbx_numel(a); i < n; i++) m = fmax(m, fabs(jbx_get(a, i) - jbx_get(b, i)));
  return m;
}

/* A leaf copy of a fixture array that wants a gradient. */
static inline jbx_tensor *leaf(jbx_tensor *t) {
  jbx_tensor *c = t ? jbx_clone(t) : NULL;
  if (c) c->requires_grad = true;
  return c;
}

/* Backward of sum(y * g), a fixture's loss, or of y itself when g is NULL (a 0-dim loss). */
static inline int backward_probe(jbx_tensor *y, jbx_tensor *g) {
  if (!y) return -1;
  if (!g) return jbx_backward(y, NULL);
  jbx_tensor *p = jbx_mul(y, g), *l = p ? jbx_sum(p, JBX_ALL_DIMS, false) : NULL;
  int rc = l ? jbx_backward(l, NULL) : -1;
  jbx_release(l);
  jbx_release(p);
  return rc;
}

/* max |a - b| / (1 + max |b|), 1e9 for a NaN or a shape mismatch: long sums of
 * thousands of terms differ by their rounding, so errors are relative to the scale. */
static inline double rel_err(const jbx_tensor *a, const jbx_tensor *b) {
  if (!a || !b || !jbx_same_shape(a, b)) return 1e9;
  double worst = 0, scale = 0;
  for (int64_t i = 0, n = jbx_numel(b); i < n; i++) {
    double d = fabs(jbx_get(a, i) - jbx_get(b, i)), m = fabs(jbx_get(b, i));
    if (d > worst || d != d) worst = d != d ? 1e9 : d;
    if (m > scale) scale = m;
  }
  return worst / (1.0 + scale);
}

#endif
