/* Fused optimiser loops: one pass over each parameter, no temporaries. */
#include "jbx_optim.h"

#include <math.h>

#include "jbx_error.h"

static int check_pair(const char *op, const jbx_tensor *a, const jbx_tensor *b) {
  char s1[160], s2[160];
  if (!jbx_same_shape(a, b) || !jbx_is_contiguous(a) || !jbx_is_contiguous(b) ||
      a->dtype != JBX_F32 || b->dtype != JBX_F32)
    return jbx_fail("%s: tensors %s and %s must be contiguous float32 of one shape", op,
                    jbx_shape_str(a, s1, sizeof s1), jbx_shape_str(b, s2, sizeof s2));
  return 0;
}

int jbx_adam_step(jbx_tensor *p, jbx_tensor *m, jbx_tensor *v, const jbx_adam_opts *o) {
  if (!p->grad) return 0; /* a parameter the loss did not reach */
  if (check_pair("adam", p, m) || check_pair("adam", p, v) || check_pair("adam", p, p->grad)) return -1;
  if (o->step < 1) return jbx_fail("adam: step must be >= 1, got %lld", (long long)o->step);
  float *w = jbx_f32(p), *mm = jbx_f32(m), *vv = jbx_f32(v);
  const float *g = jbx_f32(p->grad);
  const float b1 = o->beta1, b2 = o->beta2, scale = o->grad_scale, wd = o->weight_decay;
  const double c1 = 1.0 - pow(b1, (double)o->step), c2 = 1.0 - pow(b2, (double)o->step);
  const float step_size = (float)(o->lr / c1), inv_c2 = (float)(1.0 / sqrt(c2)), eps = o->eps;
  int64_t n = jbx_numel(p);
#pragma omp parallel for simd if (n > (1 << 16))
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i] * scale + wd * w[i];
    mm[i] = b1 * mm[i] + (1 - b1) * gi;
    vv[i] = b2 * vv[i] + (1 - b2) * gi * gi;
    w[i] -= step_size * mm[i] / (sqrtf(vv[i]) * inv_c2 + eps);
  }
  return 0;
}

double jbx_grad_sumsq(const jbx_tensor *p) {
  if (!p->grad) return 0;
  const float *g = jbx_f32(p->grad);
  double s = 0;
  int64_t n = jbx_numel(p->grad);
#pragma omp parallel for reduction(+ : s) if (n > (1 << 16))
  for (int64_t i = 0; i < n; i++) s += (double)g[i] * g[i];
  return s;
}

int jbx_ema_update(jbx_tensor *ema, const jbx_tensor *p, float decay) {
  if (check_pair("ema", ema, p)) return -1;
  float *e = jbx_f32(ema);
  const float *w = jbx_f32(p);
  for (int64_t i = 0, n = jbx_numel(p); i < n; i++) e[i] = decay * e[i] + (1 - decay) * w[i];
  return 0;
}
