/* Gradient checks by central differences: perturbs every input element, compares the
 * numeric derivative of sum(f(inputs) * probe) with the one backward computes. Float32
 * ops, so the step and tolerances suit float32 (differences accumulated in double). */
#ifndef JBX_GRADCHECK_H
#define JBX_GRADCHECK_H
#include <stdio.h>
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_rng.h"

/* The op under test: returns a new tensor from the inputs. */
typedef jbx_tensor *(*gradcheck_fn)(jbx_tensor **inputs, void *ctx);

/* Loss = sum(out * probe) with a fixed random probe, computed in double. */
static double gradcheck_loss(jbx_tensor *out, jbx_tensor *probe) {
  double s = 0;
  for (int64_t i = 0, n = jbx_numel(out); i < n; i++) s += jbx_get(out, i) * jbx_get(probe, i);
  return s;
}

/* Checks d loss / d inputs[k] for every k with requires_grad; returns the worst error
 * relative to max(1, |grad|) and prints details when above tol. */
static double gradcheck(const char *name, gradcheck_fn fn, void *ctx, int n, jbx_tensor **inputs,
                        double eps, double tol) {
  jbx_rng rng;
  jbx_rng_seed(&rng, 1234);
  jbx_tensor *out = fn(inputs, ctx);
  if (!out) {
    fprintf(stderr, "gradcheck %s: forward failed: %s\n", name, jbx_last_error());
    return 1e9;
  }
  jbx_tensor *probe = jbx_randn(out->ndim, out->shape, &rng);
  for (int k = 0; k < n; k++) jbx_zero_grad(inputs[k]);
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
    if (!x->requires_grad) continue;
    if (!x->grad) {
      fprintf(stderr, "gradcheck %s: input %d got no gradient\n", name, k);
      worst = 1e9;
      break;
    }
    float *p = jbx_f32(x); /* inputs are contiguous leaves */
    for (int64_t i = 0, m = jbx_numel(x); i < m; i++) {
      float keep = p[i];
      p[i] = keep + (float)eps;
      jbx_tensor *o1 = fn(inputs, ctx);
      double l1 = gradcheck_loss(o1, probe);
      p[i] = keep - (float)eps;
      jbx_tensor *o2 = fn(inputs, ctx);
      double l2 = gradcheck_loss(o2, probe);
      p[i] = keep;
      jbx_release(o1);
      jbx_release(o2);
      double numeric = (l1 - l2) / (2 * eps), analytic = jbx_get(x->grad, i);
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

#define CHECK_GRAD(name, fn, ctx, n, inputs, eps, tol)                                   \
  do {                                                                                   \
    double gc_err_ = gradcheck(name, fn, ctx, n, inputs, eps, tol);                      \
    CHECK(gc_err_ <= (tol), "%s: worst gradient error %.3g above %.3g", name, gc_err_,   \
          (double)(tol));                                                                \
  } while (0)
#endif
