/* cross_entropy: fused log-softmax + negative log-likelihood over the last dim, as
 * torch.nn.functional.cross_entropy with class ids (the reference prior's loss, which it
 * divides by ln 2 to report bits per token; the Lua side does that division).
 *
 * logits [..., V] float32, targets int32 [...] (0-based class ids). Per row:
 *   lse = max + log(sum exp(x - max)),  loss = lse - x[target]
 * computed in one read of the row (the exps are summed, never stored). The forward keeps
 * max and log(sum) per row, so the backward writes the softmax once, straight into the
 * gradient (x - max first: precise for logits far from 0):
 *   dlogits[r, j] = scale_r * (exp((x[r, j] - max_r) - log(sum)_r) - [j == target_r])
 * with scale_r = g / N for the mean (N rows), g_r for reduction none. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsum.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "op_kit.h"
#include "select.h"

typedef struct {
  jbx_reduction reduction;
  int64_t rows, classes;
} ce_params;

/* node: in[0] = logits; saved[0] = targets (contiguous int32 [rows]), saved[1] = [rows, 2]:
 * max and log(sum exp(x - max)) per row. */
static int cross_entropy_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  const ce_params *p = JBX_NODE_PARAMS(nd, ce_params);
  jbx_tensor *logits = nd->in[0];
  int64_t R = p->rows, V = p->classes;
  jbx_tensor *xc = jbx_plain(logits), *gc = jbx_plain(gout);
  jbx_tensor *gx = xc && gc ? jbx_empty(JBX_F32, logits->ndim, logits->shape) : NULL;
  if (gx && R > 0) {
    const float *x = jbx_f32(xc), *g = jbx_f32(gc), *stats = jbx_f32(nd->saved[1]);
    const int32_t *t = jbx_i32(nd->saved[0]);
    float *d = jbx_f32(gx);
    bool mean = p->reduction == JBX_REDUCE_MEAN;
    float gm = mean ? (float)(g[0] / (double)R) : 0.0f;
#pragma omp parallel for schedule(static) if (R > 1 && R * V >= JBX_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
      const float *xr = x + r * V;
      float *dr = d + r * V, s = mean ? gm : g[r], m = stats[2 * r], ls = stats[2 * r + 1];
      for (int64_t j = 0; j < V; j++) dr[j] = s * expf((xr[j] - m) - ls);
      dr[t[r]] -= s;
    }
  }
  jbx_release(xc);
  jbx_release(gc);
  return jbx_give_grad(logits, gx);
}

static int check(const jbx_tensor *logits, const jbx_tensor *targets, jbx_reduction reduction) {
  char sl[160], st[160], sw[160];
  if (!logits || !targets) return jbx_fail("cross_entropy: logits and targets are required");
  jbx_shape_str(logits, sl, sizeof sl);
  jbx_shape_str(targets, st, sizeof st);
  if (logits->dtype != JBX_F32) return jbx_fail("cross_entropy: logits must be float32, got int32 %s", sl);
  if (targets->dtype != JBX_I32)
    return jbx_fail("cross_entropy: targets must be int32 class ids, got float32 %s", st);
  if (reduction != JBX_REDUCE_MEAN && reduction != JBX_REDUCE_NONE)
    return jbx_fail("cross_entropy: unknown reduction %d (mean or none)", (int)reduction);
  if (logits->ndim == 0 || logits->shape[logits->ndim - 1] == 0)
    return jbx_fail("cross_entropy: logits %s need a last dim of at least 1 class", sl);
  bool same = targets->ndim == logits->ndim - 1;
  for (int d = 0; same && d < targets->ndim; d++) same = targets->shape[d] == logits->shape[d];
  if (!same) {
    /* the shape wanted: logits without the class dim */
    jbx_tensor want = *logits;
    want.ndim = logits->ndim - 1;
    return jbx_fail("cross_entropy: targets %s must have the shape of logits %s without its last dim, %s", st, sl,
                    jbx_shape_str(&want, sw, sizeof sw));
  }
  return 0;
}

/* "[1, 2]": the position of flat element i of a tensor of `shape`, as the user counts. */
static const char *position_str(const jbx_tensor *t, int64_t i, char *buf, size_t size) {
  int64_t idx[JBX_MAX_DIMS];
  for (int d = t->ndim - 1; d >= 0; d--) {
    idx[d] = t->shape[d] ? i % t->shape[d] : 0;
    i = t->shape[d] ? i / t->shape[d] : 0;
  }
  size_t n = (size_t)snprintf(buf, size, "[");
  for (int d = 0; d < t->ndim && n < size; d++)
    n += (size_t)snprintf(buf + n, size - n, "%s%lld", d ? ", " : "", jbx_msg_pos(idx[d]));
  if (n < size) snprintf(buf + n, size - n, "]");
  return buf;
}

jbx_tensor *jbx_cross_entropy(jbx_tensor *logits, jbx_tensor *targets, jbx_reduction reduction) {
  if (check(logits, targets, reduction) < 0) return NULL;
  int64_t V = logits->shape[logits->ndim - 1], R = jbx_numel(targets);
  jbx_tensor *tc = jbx_plain(targets);
  if (!tc) return NULL;
  const int32_t *t = jbx_i32(tc);
  int64_t bad = jbx_bad_index(t, R, V);
  if (bad >= 0) {
    char pos[160];
    jbx_fail("cross_entropy: target %d at %s is out of range for %lld classes (ids are 0..%lld)", t[bad],
             position_str(targets, bad, pos, sizeof pos), (long long)V, (long long)V - 1);
    jbx_release(tc);
    return NULL;
  }
  bool mean = reduction == JBX_REDUCE_MEAN, grad = jbx_needs_grad(1, &logits);
  jbx_tensor *xc = jbx_plain(logits);
  jbx_tensor *out = mean ? jbx_empty(JBX_F32, 0, NULL) : jbx_empty(JBX_F32, targets->ndim, targets->shape);
  jbx_tensor *stats = grad ? jbx_empty(JBX_F32, 2, (int64_t[]){R, 2}) : NULL;
  float *per_row = mean ? malloc((size_t)(R ? R : 1) * sizeof *per_row) : NULL;
  if (!xc || !out || (grad && !stats) || (mean && !per_row)) {
    if (mean && !per_row) jbx_fail("cross_entropy: out of memory");
    jbx_release(out);
    out = NULL;
  } else {
    const float *x = jbx_f32(xc);
    float *loss = mean ? per_row : jbx_f32(out), *l = stats ? jbx_f32(stats) : NULL;
#pragma omp parallel for schedule(static) if (R > 1 && R * V >= JBX_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
      const float *xr = x + r * V;
      float m = jbx_fmax(xr, V);
      double ls = log(jbx_exp_sum(xr, NULL, V, m));
      /* (m - x[t]) + log(s): precise when the logits sit far from 0 */
      loss[r] = (float)((double)(m - xr[t[r]]) + ls);
      if (l) l[2 * r] = m, l[2 * r + 1] = (float)ls;
    }
    /* the mean in row order, in double: the same bits at any thread count */
    if (mean) {
      double s = 0;
      for (int64_t r = 0; r < R; r++) s += per_row[r];
      jbx_f32(out)[0] = R ? (float)(s / (double)R) : NAN; /* PyTorch's mean over nothing */
    }
  }
  free(per_row);
  jbx_release(xc);
  ce_params p = {reduction, R, V};
  jbx_node *nd = out && grad ? JBX_RECORD(out, "cross_entropy", cross_entropy_backward, 1, &logits, p) : NULL;
  if (out && grad && (!nd || jbx_node_save(nd, tc) < 0 || jbx_node_save(nd, stats) < 0)) {
    jbx_release(out);
    out = NULL;
  }
  jbx_release(tc);
  jbx_release(stats);
  return out;
}
