/* Gradient checks by central differences: perturbs every input element, compares the
 * numeric derivative of sum(f(inputs) * probe) with the one backward computes. Float32
 * ops, so the step and tolerances suit float32 (differences accumulated in double).
 * test_gradcheck.c runs it over every row of op_table.h. */
#ifndef JBX_GRADCHECK_H
#define JBX_GRADCHECK_H
#include <stdio.h>
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_rng.h"

/* The op under test: returns a new tensor from the inputs. */
typedef jbx_tensor *(*gradcheck_fn)(jbx_tensor **inputs, void *ctx);

/* Loss = sum(out * probe) with a fixed random probe, computed in double. */
static inline double gradcheck_loss(jbx_tensor *out, jbx_tensor *probe) {
  double s = 0;
  for (int64_t i = 0, n = jbx_numel(out); i < n; i++) s += jbx_get(out, i) * jbx_get(probe, i);
  return s;
}

/* The numeric derivative of the loss along element p[0] of an input: central differences
 * over the step the float perturbation really took. richardson: differences at eps and
 * eps / 2 combined as (4 d(eps/2) - d(eps)) / 3, which cancels the eps^2 error term
 * where the op curves sharply. */
static inline double gradcheck_numeric(gradcheck_fn fn, void *ctx, jbx_tensor **inputs,
                                       jbx_tensor *probe, float *p, double eps,
                                       bool richardson) {
  float keep = *p;
  double d[2];
  for (int h = 0; h < (richardson ? 2 : 1); h++) {
    double e = eps / (1 << h);
    *p = (float)(keep + e);
    double step = (double)*p;
    jbx_tensor *o1 = fn(inputs, ctx);
    double l1 = gradcheck_loss(o1, probe);
    *p = (float)(keep - e);
    step -= (double)*p;
    jbx_tensor *o2 = fn(inputs, ctx);
    double l2 = gradcheck_loss(o2, probe);
    jbx_release(o1);
    jbx_release(o2);
    d[h] = richardson ? (l1 - l2) / step : (l1 - l2) / (2 * e);
  }
  *p = keep;
  return richardson ? (4 * d[1] - d[0]) / 3 : d[0];
}

/* Checks d loss / d inputs[k] for every k with requires_grad (NULL inputs are absent
 * options); returns the worst error relative to max(1, |grad|) and prints details when
 * above tol. */
static inline double gradcheck(const char *name, gradcheck_fn fn, void *ctx, int n,
                                jbx_tensor **inputs, double eps, double tol, bool richardson) {
  jbx_rng rng;
  jbx_rng_seed(&rng, 1234);
  jbx_tensor *out = fn(inputs, ctx);
  if (!out) {
    fprintf(stderr, "gradcheck %s: forward failed: %s\n", name, jbx_last_error());
    return 1e9;
  }
  jbx_tensor *probe = jbx_randn(out->ndim, out->shape, &rng);
  for (int k = 0; k < n; k++)
    if (inputs[k]) jbx_zero_grad(inputs[k]);
  jbx_tensor *pc = jbx_contiguous(probe);
  jbx_tensor *weighted = jbx_mul(out, pc);
  jbx_tensor *loss = weighted ? jbx_sum(weighted, JBX_ALL_DIMS, false) : NULL;
  double worst = 0;
  if (!loss || jbx_backward(loss, NULL) < 0) {
    fprintf(stderr, "gradcheck %s: backward failed: %s\n", name, jbx_last_error());
    worst = 1e9;
  }
  bool prev = jbx_set_grad_enabled(false);
  for (int k = 0; k < n && worst < 1e9; k++) {
    jbx_tensor *x = inputs[k];
    if (!x || !x->requires_grad) continue;
    if (!x->grad) {
      fprintf(stderr, "gradcheck %s: input %d got no gradient\n", name, k);
      worst = 1e9;
      break;
    }
    float *p = jbx_f32(x); /* inputs are contiguous leaves */
    for (int64_t i = 0, m = jbx_numel(x); i < m; i++) {
      double numeric = gradcheck_numeric(fn, ctx, inputs, probe, p + i, eps, richardson);
      double analytic = jbx_get(x->grad, i);
      double err = fabs(numeric - analytic) / fmax(1.0, fabs(analytic));
      if (err > worst) worst = err;
      if (err > tol)
        fprintf(stderr, "gradcheck %s: input %d elem %lld: numeric %.6g analytic %.6g\n", name, k,
                (long long)i, numeric, analytic);
    }
  }
  jbx_set_grad_enabled(prev);
  jbx_release(loss);
  jbx_release(weighted);
  jbx_release(pc);
  jbx_release(probe);
  jbx_release(out);
  return worst;
}

/* A leaf with requires_grad filled from N(0, scale^2) (seeded). */
static inline jbx_tensor *gradcheck_input(int ndim, const int64_t *shape, float scale, uint64_t seed) {
  jbx_rng rng;
  jbx_rng_seed(&rng, seed);
  jbx_tensor *t = jbx_randn(ndim, shape, &rng);
  float *p = jbx_f32(t);
  for (int64_t i = 0, m = jbx_numel(t); i < m; i++) p[i] *= scale;
  t->requires_grad = true;
  return t;
}

#endif
