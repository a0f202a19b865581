/* Optimiser kernels: jbx_adam_step, jbx_grad_sumsq and jbx_ema_update against a PyTorch
 * fixture (tools/fixtures/optim.py: torch.optim.Adam, clip_grad_norm_, an EMA
 * AveragedModel), five steps per case compared step by step in the parameters and both
 * moments; a first step by hand; a parameter without gradient; every error message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixture.h"
#include "jbx_error.h"
#include "jbx_optim.h"
#include "jbx_tensor.h"

/* Largest |a - b| over the largest |b|: the arrays' scales differ (v is ~ g^2). */
static double rel_err(const float *a, const float *b, int64_t n) {
  double e = 0, s = 0;
  for (int64_t i = 0; i < n; i++) {
    e = fmax(e, fabs((double)a[i] - b[i]));
    s = fmax(s, fabs((double)b[i]));
  }
  return e / (s > 0 ? s : 1);
}

/* float32 rounding over five steps stays near 1e-7 (torch divides by
 * sqrt(1 - beta2^t) where we multiply); AdamW or eps inside the sqrt are off by > 1e-3. */
#define TOL_ADAM 1e-6
#define TOL_EMA 1e-6

/* Sets p->grad to a copy of row t of a [steps, ...] stack of gradients. */
static void set_grad(jbx_tensor *p, const jbx_tensor *stack, int64_t t) {
  jbx_zero_grad(p);
  p->grad = jbx_from_floats(p->ndim, p->shape, jbx_f32(stack) + t * jbx_numel(p));
}

static jbx_tensor *fix(fixture *fx, const char *c, const char *part) {
  char name[64];
  snprintf(name, sizeof name, "%s_%s", c, part);
  return fixture_get(fx, name);
}

/* Row t of stack equals t (elementwise within tol, relative to the row's scale). */
static void check_row(const char *what, const char *c, int64_t t, const jbx_tensor *got,
                      const jbx_tensor *stack, double tol) {
  int64_t n = jbx_numel(got);
  double e = rel_err(jbx_f32(got), jbx_f32(stack) + t * n, n);
  CHECK(e < tol, "case %s step %lld: %s off by %.3g of its scale", c, (long long)(t + 1), what, e);
}

static void test_fixture(void) {
  fixture *fx = fixture_load("tests/fixtures/optim.fix");
  CHECK(fx != NULL, "tests/fixtures/optim.fix loads (make it with tools/fixtures/optim.py)");
  if (!fx) return;
  jbx_tensor *init[2] = {fixture_get(fx, "w0"), fixture_get(fx, "b0")};
  jbx_tensor *grads[2] = {fixture_get(fx, "gw"), fixture_get(fx, "gb")};
  jbx_tensor *gnorm = fixture_get(fx, "gnorm"), *ema_decay = fixture_get(fx, "ema_decay");
  jbx_tensor *ema_ref[2] = {fixture_get(fx, "ema_w"), fixture_get(fx, "ema_b")};
  const char *pn[2] = {"w", "b"};
  const int64_t steps = gnorm->shape[0];
  CHECK(steps == 5 && grads[0]->shape[0] == steps && grads[1]->shape[0] == steps, "5 steps");

  const char *cases[] = {"a", "b", "c"};
  for (int ci = 0; ci < 3; ci++) {
    const char *c = cases[ci];
    const float *hp = jbx_f32(fix(fx, c, "hp"));
    jbx_tensor *scale = strcmp(c, "c") == 0 ? fix(fx, c, "scale") : NULL;
    jbx_tensor *ref_p[2] = {fix(fx, c, "w"), fix(fx, c, "b")};
    jbx_tensor *ref_m[2] = {fix(fx, c, "mw"), fix(fx, c, "mb")};
    jbx_tensor *ref_v[2] = {fix(fx, c, "vw"), fix(fx, c, "vb")};
    jbx_tensor *p[2], *m[2], *v[2], *ema[2];
    for (int i = 0; i < 2; i++) {
      p[i] = jbx_clone(init[i]);
      m[i] = jbx_zeros(p[i]->ndim, p[i]->shape);
      v[i] = jbx_zeros(p[i]->ndim, p[i]->shape);
      ema[i] = scale ? jbx_clone(init[i]) : NULL; /* the EMA starts as a copy, as the reference's */
    }
    for (int64_t t = 0; t < steps; t++) {
      for (int i = 0; i < 2; i++) set_grad(p[i], grads[i], t);
      /* The global norm that clipping divides by (torch's clip_grad_norm_ returns it). */
      double gn = sqrt(jbx_grad_sumsq(p[0]) + jbx_grad_sumsq(p[1]));
      CHECK(fabs(gn - jbx_f32(gnorm)[t]) <= 1e-6 * jbx_f32(gnorm)[t], "case %s step %lld: grad norm %.9g vs %.9g",
            c, (long long)(t + 1), gn, (double)jbx_f32(gnorm)[t]);
      float gs = 1;
      if (scale) {
        gs = jbx_f32(scale)[t];
        /* optim.lua's factor clip / gn is torch's max_norm / (gn + 1e-6) up to that 1e-6. */
        float max_norm = jbx_f32(fix(fx, c, "max_norm"))[0];
        double lua_factor = gn > max_norm ? max_norm / gn : 1;
        CHECK(fabs(lua_factor - gs) <= 1e-5 * gs, "case %s step %lld: clip factor %.9g vs torch's %.9g", c,
              (long long)(t + 1), lua_factor, (double)gs);
      }
      jbx_adam_opts o = {.lr = hp[0], .beta1 = hp[1], .beta2 = hp[2], .eps = hp[3], .weight_decay = hp[4],
                         .step = t + 1, .grad_scale = gs};
      for (int i = 0; i < 2; i++) {
        CHECK(jbx_adam_step(p[i], m[i], v[i], &o) == 0, "case %s: %s", c, jbx_last_error());
        char what[32];
        snprintf(what, sizeof what, "param %s", pn[i]);
        check_row(what, c, t, p[i], ref_p[i], TOL_ADAM);
        snprintf(what, sizeof what, "m of %s", pn[i]);
        check_row(what, c, t, m[i], ref_m[i], TOL_ADAM);
        snprintf(what, sizeof what, "v of %s", pn[i]);
        check_row(what, c, t, v[i], ref_v[i], TOL_ADAM);
        if (ema[i]) {
          CHECK(jbx_ema_update(ema[i], p[i], jbx_f32(ema_decay)[0]) == 0, "ema: %s", jbx_last_error());
          snprintf(what, sizeof what, "ema of %s", pn[i]);
          check_row(what, c, t, ema[i], ema_ref[i], TOL_EMA);
        }
      }
    }
    for (int i = 0; i < 2; i++) {
      jbx_release(p[i]);
      jbx_release(m[i]);
      jbx_release(v[i]);
      jbx_release(ema[i]);
    }
  }
  fixture_free(fx);
}

/* Step 1 by hand: m_hat = g and v_hat = g^2, so p -= lr g / (|g| + eps); with eps 0 that is
 * lr sign(g) whatever the grad_scale. */
static void test_first_step(void) {
  float pv[] = {1, -2, 0.5f, 3}, gv[] = {0.25f, -4, 1e-3f, 2};
  int64_t n = 4;
  jbx_tensor *p = jbx_from_floats(1, &n, pv), *m = jbx_zeros(1, &n), *v = jbx_zeros(1, &n);
  p->grad = jbx_from_floats(1, &n, gv);
  jbx_adam_opts o = {.lr = 0.125f, .beta1 = 0.5f, .beta2 = 0.75f, .eps = 0, .weight_decay = 0,
                     .step = 1, .grad_scale = 1e-3f};
  CHECK(jbx_adam_step(p, m, v, &o) == 0, "%s", jbx_last_error());
  for (int i = 0; i < 4; i++) {
    float g = gv[i] * 1e-3f;
    CHECK_CLOSE(jbx_f32(p)[i], pv[i] - (gv[i] > 0 ? 0.125f : -0.125f), 1e-6);
    CHECK_CLOSE(jbx_f32(m)[i], 0.5f * g, 1e-6);
    CHECK_CLOSE(jbx_f32(v)[i], 0.25f * g * g, 1e-6);
  }
  /* eps and L2 decay at step 1: g' = g + wd p, p -= lr g' / (|g'| + eps). */
  jbx_fill_(m, 0);
  jbx_fill_(v, 0);
  float p1[4];
  memcpy(p1, jbx_f32(p), sizeof p1);
  o = (jbx_adam_opts){.lr = 0.125f, .beta1 = 0.5f, .beta2 = 0.75f, .eps = 0.5f, .weight_decay = 0.25f,
                      .step = 1, .grad_scale = 1};
  CHECK(jbx_adam_step(p, m, v, &o) == 0, "%s", jbx_last_error());
  for (int i = 0; i < 4; i++) {
    double g = gv[i] + 0.25 * p1[i];
    CHECK_CLOSE(jbx_f32(p)[i], p1[i] - 0.125 * g / (fabs(g) + 0.5), 1e-6);
  }
  /* grad_sumsq: in double over the gradient; 0 without one. */
  CHECK_CLOSE(jbx_grad_sumsq(p), 0.0625 + 16 + 1e-6 + 4, 1e-9);
  jbx_zero_grad(p);
  CHECK(jbx_grad_sumsq(p) == 0, "no gradient: sum of squares 0");
  jbx_release(p);
  jbx_release(m);
  jbx_release(v);
}

/* A parameter the loss did not reach is skipped: nothing changes, and it is not an error
 * (not even step 0, which is only checked for parameters that have a gradient). */
static void test_no_grad(void) {
  int64_t n = 3;
  float pv[] = {1, 2, 3};
  jbx_tensor *p = jbx_from_floats(1, &n, pv), *m = jbx_full(1, &n, 0.5f), *v = jbx_full(1, &n, 0.25f);
  jbx_adam_opts o = {.lr = 1, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.5f,
                     .step = 0, .grad_scale = 1};
  CHECK(jbx_adam_step(p, m, v, &o) == 0, "no grad: %s", jbx_last_error());
  int same = 1;
  for (int i = 0; i < 3; i++) same &= jbx_f32(p)[i] == pv[i] && jbx_f32(m)[i] == 0.5f && jbx_f32(v)[i] == 0.25f;
  CHECK(same, "a parameter without gradient keeps its value and moments");
  jbx_release(p);
  jbx_release(m);
  jbx_release(v);
}

static void test_errors(void) {
  int64_t s34[2] = {3, 4}, s43[2] = {4, 3}, s12 = 12, s5 = 5;
  jbx_tensor *p = jbx_full(2, s34, 1), *m = jbx_zeros(2, s34), *v = jbx_zeros(2, s34);
  jbx_tensor *m43 = jbx_zeros(2, s43), *mt = jbx_transpose(m43, 0, 1); /* [3, 4], strided */
  jbx_tensor *vi = jbx_empty(JBX_I32, 2, s34), *flat = jbx_zeros(1, &s12), *b5 = jbx_zeros(1, &s5);
  memset(jbx_i32(vi), 0, 12 * sizeof(int32_t));
  p->grad = jbx_full(2, s34, 1);
  jbx_adam_opts o = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0,
                     .step = 1, .grad_scale = 1};

  CHECK(jbx_adam_step(p, m43, v, &o) < 0, "m of another shape");
  CHECK_ERROR_HAS("adam: tensors [3, 4] and [4, 3] must be contiguous float32 of one shape");
  CHECK(jbx_adam_step(p, m, flat, &o) < 0, "v of another shape, same size");
  CHECK_ERROR_HAS("adam: tensors [3, 4] and [12] must be contiguous float32 of one shape");
  CHECK(jbx_adam_step(p, mt, v, &o) < 0, "strided m");
  CHECK_ERROR_HAS("adam: tensors [3, 4] and [3, 4] must be contiguous float32 of one shape");
  CHECK(jbx_adam_step(p, m, vi, &o) < 0, "int32 v");
  CHECK_ERROR_HAS("adam: tensors [3, 4] and [3, 4] must be contiguous float32");
  jbx_release(p->grad);
  p->grad = jbx_zeros(1, &s12);
  CHECK(jbx_adam_step(p, m, v, &o) < 0, "gradient of another shape");
  CHECK_ERROR_HAS("adam: tensors [3, 4] and [12] must be contiguous float32 of one shape");
  jbx_release(p->grad);
  p->grad = jbx_full(2, s34, 1);
  o.step = 0;
  CHECK(jbx_adam_step(p, m, v, &o) < 0, "step 0");
  CHECK_ERROR_HAS("adam: step must be >= 1, got 0");
  o.step = -3;
  CHECK(jbx_adam_step(p, m, v, &o) < 0, "negative step");
  CHECK_ERROR_HAS("adam: step must be >= 1, got -3");
  /* None of the failed calls touched anything. */
  int same = 1;
  for (int i = 0; i < 12; i++) same &= jbx_f32(p)[i] == 1 && jbx_f32(m)[i] == 0 && jbx_f32(v)[i] == 0;
  CHECK(same, "failed steps leave p, m and v unchanged");

  CHECK(jbx_ema_update(p, b5, 0.9f) < 0, "ema of another shape");
  CHECK_ERROR_HAS("ema: tensors [3, 4] and [5] must be contiguous float32 of one shape");
  CHECK(jbx_ema_update(mt, p, 0.9f) < 0, "strided ema");
  CHECK_ERROR_HAS("ema: tensors [3, 4] and [3, 4] must be contiguous float32 of one shape");
  CHECK(jbx_ema_update(vi, p, 0.9f) < 0, "int32 ema");
  CHECK_ERROR_HAS("ema: tensors [3, 4] and [3, 4] must be contiguous float32");
  /* decay 1 keeps the average, decay 0 copies the weights. */
  CHECK(jbx_ema_update(m, p, 1) == 0 && jbx_f32(m)[0] == 0, "decay 1 keeps the EMA");
  CHECK(jbx_ema_update(m, p, 0) == 0 && jbx_f32(m)[11] == 1, "decay 0 copies the weights");

  jbx_tensor *ts[] = {p, m, v, mt, m43, vi, flat, b5};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) jbx_release(ts[i]);
}

int main(void) {
  test_fixture();
  test_first_step();
  test_no_grad();
  test_errors();
  return check_summary();
}
