/* The op kit's shared helpers (see op_kit.h). */
#include "op_kit.h"

jbx_tensor *jbx_plain(jbx_tensor *t) {
  if (!t) return NULL;
  bool prev = jbx_set_grad_enabled(false);
  jbx_tensor *c = jbx_contiguous(t);
  jbx_set_grad_enabled(prev);
  return c;
}

int jbx_give_grad(jbx_tensor *t, jbx_tensor *g) {
  if (!t) {
    jbx_release(g);
    return 0;
  }
  if (!g) return -1;
  int rc = jbx_numel(g) ? jbx_accum_grad(t, g) : 0;
  jbx_release(g);
  return rc;
}

int jbx_give_grads(int rc, int n, jbx_tensor *const *ts, jbx_tensor *const *gs) {
  for (int k = 0; k < n; k++) {
    if (rc < 0) jbx_release(gs[k]);
    else if (gs[k] && jbx_give_grad(ts[k], gs[k]) < 0) rc = -1;
  }
  return rc < 0 ? -1 : 0;
}

int jbx_check_f32(const char *op, const char *what, const jbx_tensor *t) {
  if (!t || t->dtype == JBX_F32) return 0;
  return jbx_fail("%s: %s must be float32, got %s", op, what, jbx_dtype_name(t->dtype));
}
