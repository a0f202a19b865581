/* linear_cross_entropy: the mean cross-entropy of logits = x w^T against class ids, with
 * the logits never stored whole (the priors' output layer and loss, fused).
 *
 * x [..., K] float32, w [V, K] (the prior's output weight: x_emb.weight when tied,
 * x_out.weight), targets int32 [...]. Rows go in chunks of about 2 MB of logits:
 *   logits_c = x_c w^T (sgemm); per row lse = max + log(sum exp(l - max)), loss = lse - l[t]
 * When a gradient is wanted, the gradient of the mean is known here already, up to the
 * upstream scalar g: dlogits = (softmax - onehot) / N. So each chunk goes on, in place:
 *   dx_c = dlogits_c w (sgemm),  dw += dlogits_c^T x_c (sgemm)
 * and the node keeps dx [..., K] and dw [V, K] instead of the [N, V] logits; the backward
 * scales them by g. The same sgemm work as linear + cross_entropy (the three products),
 * without writing, reading and differentiating an [N, V] tensor twice: with 2048 classes
 * that tensor is 4x the size of x at width 512, 2x at width 1024. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fsum.h"
#include "jbx_gemm.h"
#include "jbx_ops.h"
#include "op_kit.h"
#include "select.h"

#define CHUNK_FLOATS (512 * 1024) /* logits per chunk: 2 MB */

/* node: in = {x, w}; saved[0] = dx (x's shape) or an empty stand-in, saved[1] = dw. */
static int lce_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  (void)out;
  float g = jbx_f32(gout)[gout->offset];
  jbx_tensor *grads[2] = {NULL, NULL};
  for (int k = 0; k < 2; k++) {
    if (!jbx_wants_grad(nd->in[k])) continue;
    grads[k] = jbx_mul_scalar(nd->saved[k], g);
    if (!grads[k]) return jbx_give_grads(-1, 2, nd->in, grads);
  }
  return jbx_give_grads(0, 2, nd->in, grads);
}

static int check(const jbx_tensor *x, const jbx_tensor *w, const jbx_tensor *t) {
  char sx[160], sw[160], st[160];
  if (!x || !w || !t) return jbx_fail("linear_cross_entropy: input, weight and targets are required");
  jbx_shape_str(x, sx, sizeof sx);
  jbx_shape_str(w, sw, sizeof sw);
  jbx_shape_str(t, st, sizeof st);
  if (jbx_check_f32("linear_cross_entropy", "input", x) < 0 || jbx_check_f32("linear_cross_entropy", "weight", w) < 0)
    return -1;
  if (t->dtype != JBX_I32) return jbx_fail("linear_cross_entropy: targets must be int32 class ids, got float32 %s", st);
  if (w->ndim != 2 || w->shape[0] < 1) return jbx_fail("linear_cross_entropy: weight %s must be [classes, n_in]", sw);
  if (x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
    return jbx_fail("linear_cross_entropy: input %s must end in %lld features (weight %s)", sx,
                    (long long)w->shape[1], sw);
  bool same = t->ndim == x->ndim - 1;
  for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == x->shape[d];
  if (!same) return jbx_fail("linear_cross_entropy: targets %s must have the shape of input %s without its last dim", st, sx);
  if (jbx_numel(t) == 0) return jbx_fail("linear_cross_entropy: no targets (the mean over nothing)");
  if (jbx_numel(t) > INT_MAX || w->shape[0] > INT_MAX || w->shape[1] > INT_MAX)
    return jbx_fail("linear_cross_entropy: input %s x weight %s: sizes too large for BLAS", sx, sw);
  return 0;
}

/* Chunk [r0, r0 + R): logits into l [R, V], the loss per row into loss[], and, when
 * want_grad, l turned into dlogits (softmax - onehot) / N in place. */
static void chunk_loss(const float *x, const float *w, const int32_t *t, float *l, float *loss, int64_t r0,
                       int64_t R, int64_t K, int64_t V, int64_t N, bool want_grad) {
  jbx_sgemm(CblasNoTrans, CblasTrans, (int)R, (int)V, (int)K, 1.0f, x + r0 * K, (int)K, w, (int)K,
            0.0f, l, (int)V);
#pragma omp parallel for schedule(static) if (R * V >= JBX_PAR_MIN)
  for (int64_t r = 0; r < R; r++) {
    float *lr = l + r * V;
    int32_t tr = t[r0 + r];
    float m = jbx_fmax(lr, V), at_target = lr[tr];
    double sum = jbx_exp_sum(lr, want_grad ? lr : NULL, V, m); /* lr = exp(l - m) when the grad is wanted */
    double ls = log(sum);
    loss[r0 + r] = (float)((double)(m - at_target) + ls);
    if (want_grad) {
      float s = (float)(1.0 / (sum * (double)N));
      for (int64_t j = 0; j < V; j++) lr[j] *= s;
      lr[tr] -= 1.0f / (float)N;
    }
  }
}

jbx_tensor *jbx_linear_cross_entropy(jbx_tensor *x, jbx_tensor *w, jbx_tensor *targets) {
  if (check(x, w, targets) < 0) return NULL;
  int64_t K = w->shape[1], V = w->shape[0], N = jbx_numel(targets);
  jbx_tensor *tc = jbx_plain(targets);
  if (!tc) return NULL;
  const int32_t *t = jbx_i32(tc);
  int64_t bad = jbx_bad_index(t, N, V);
  if (bad >= 0) {
    jbx_fail("linear_cross_entropy: target %d at row %lld is out of range for %lld classes (ids are 0..%lld)", t[bad],
             (long long)jbx_msg_pos(bad), (long long)V, (long long)V - 1);
    jbx_release(tc);
    return NULL;
  }
  jbx_tensor *in[2] = {x, w};
  bool want_x = jbx_needs_grad(1, &x), want_w = jbx_needs_grad(1, &w), want = want_x || want_w;
  jbx_tensor *xc = jbx_plain(x), *wc = jbx_plain(w), *out = jbx_empty(JBX_F32, 0, NULL);
  jbx_tensor *dx = want_x ? jbx_empty(JBX_F32, x->ndim, x->shape) : jbx_empty(JBX_F32, 1, (int64_t[]){0});
  jbx_tensor *dw = want_w ? jbx_empty(JBX_F32, 2, w->shape) : jbx_empty(JBX_F32, 1, (int64_t[]){0});
  int64_t rows = CHUNK_FLOATS / V > 0 ? CHUNK_FLOATS / V : 1;
  if (rows > N) rows = N;
  float *l = malloc((size_t)(rows * V) * sizeof *l), *loss = malloc((size_t)N * sizeof *loss);
  int rc = xc && wc && out && dx && dw ? 0 : -1;
  if (rc == 0 && (!l || !loss)) rc = jbx_fail("linear_cross_entropy: out of memory");
  if (rc == 0) {
    const float *xv = jbx_f32(xc), *wv = jbx_f32(wc);
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
      int64_t R = N - r0 < rows ? N - r0 : rows;
      chunk_loss(xv, wv, t, l, loss, r0, R, K, V, N, want);
      if (want_x) /* dx_c [R, K] = dlogits_c [R, V] w [V, K] */
        jbx_sgemm(CblasNoTrans, CblasNoTrans, (int)R, (int)K, (int)V, 1.0f, l, (int)V, wv, (int)K,
                  0.0f, jbx_f32(dx) + r0 * K, (int)K);
      if (want_w) /* dw [V, K] (+)= dlogits_c^T [V, R] x_c [R, K] */
        jbx_sgemm(CblasTrans, CblasNoTrans, (int)V, (int)K, (int)R, 1.0f, l, (int)V, xv + r0 * K,
                  (int)K, r0 ? 1.0f : 0.0f, jbx_f32(dw), (int)K);
    }
    double s = 0; /* the mean in row order, in double: the same bits at any thread count */
    for (int64_t r = 0; r < N; r++) s += loss[r];
    jbx_f32(out)[0] = (float)(s / (double)N);
  }
  free(l);
  free(loss);
  jbx_release(xc);
  jbx_release(wc);
  jbx_release(tc);
  jbx_node *nd = NULL;
  if (rc == 0 && want) {
    nd = jbx_record(out, "linear_cross_entropy", lce_backward, 2, in);
    if (!nd || jbx_node_save(nd, dx) < 0 || jbx_node_save(nd, dw) < 0) rc = -1;
  }
  jbx_release(dx);
  jbx_release(dw);
  if (rc < 0) {
    jbx_release(out);
    return NULL;
  }
  return out;
}
