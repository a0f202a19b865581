/* res_conv_block: the fused residual block against its composition from jbx_relu,
 * jbx_conv1d and jbx_add (output and all five gradients) over dilations 1..2187, one and
 * several panels per item, 1 and 2 threads, h recomputed or kept; optional biases and
 * partial requires_grad; every error message (gradient checks: rows of op_table.h). */
#include <omp.h>
#include <stdlib.h>

#include "check.h"
#include "gradcheck.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "values.h"
#include "jbx_resblock.h"
#include "jbx_rng.h"

/* ------------------------------------------------------------ helpers */


static jbx_tensor *randn_n(int ndim, const int64_t *shape, float scale, uint64_t seed) {
  return gradcheck_input(ndim, shape, scale, seed);
}

static jbx_tensor *copy_leaf(const jbx_tensor *t) {
  if (!t) return NULL;
  jbx_tensor *c = jbx_from_floats(t->ndim, t->shape, jbx_f32(t));
  c->requires_grad = t->requires_grad;
  return c;
}

/* The block from separate ops. */
static jbx_tensor *composed(jbx_tensor *x, jbx_tensor *w3, jbx_tensor *b3, jbx_tensor *w1,
                            jbx_tensor *b1, int d) {
  jbx_tensor *r = jbx_relu(x);
  jbx_tensor *c = jbx_conv1d(r, w3, b3, 1, d, d);
  jbx_tensor *h = jbx_relu(c);
  jbx_tensor *o = jbx_conv1d(h, w1, b1, 1, 0, 1);
  jbx_tensor *y = jbx_add(x, o);
  jbx_release(r);
  jbx_release(c);
  jbx_release(h);
  jbx_release(o);
  return y;
}

typedef struct {
  int64_t B, C, S, L;
  int d;
  int biases; /* 0: none, 1: both */
} rcase;

/* The five inputs of a case (biases NULL when absent), all requiring grad. Weights are
 * scaled like a trained block's (std ~ 1/sqrt(fan_in)). */
static void make_inputs(const rcase *c, uint64_t seed, jbx_tensor **in) {
  int64_t sx[3] = {c->B, c->C, c->L}, s3[3] = {c->S, c->C, 3}, s1[3] = {c->C, c->S, 1};
  in[0] = randn_n(3, sx, 1.0f, seed);
  in[1] = randn_n(3, s3, 1.0f / sqrtf(3.0f * (float)c->C), seed + 1);
  in[2] = c->biases ? randn_n(1, &c->S, 0.1f, seed + 2) : NULL;
  in[3] = randn_n(3, s1, 1.0f / sqrtf((float)c->S), seed + 3);
  in[4] = c->biases ? randn_n(1, &c->C, 0.1f, seed + 4) : NULL;
}

static void release_all(jbx_tensor **t, int n) {
  for (int k = 0; k < n; k++) jbx_release(t[k]);
}

static const char *NAMES[5] = {"x", "w3", "b3", "w1", "b1"};

/* Fused vs composed on case c: output and the gradients of sum(y * probe). */
static void compare_case(const rcase *c, const char *label, bool recompute) {
  jbx_tensor *a[5], *b[5];
  make_inputs(c, 100 + (uint64_t)c->L + (uint64_t)c->d, a);
  for (int k = 0; k < 5; k++) b[k] = copy_leaf(a[k]);
  jbx_rng rng;
  jbx_rng_seed(&rng, 7);
  int64_t sx[3] = {c->B, c->C, c->L};
  jbx_tensor *probe = jbx_randn(3, sx, &rng);
  jbx_tensor *yf = jbx_res_conv_block_ex(a[0], a[1], a[2], a[3], a[4], c->d, recompute);
  jbx_tensor *yc = composed(b[0], b[1], b[2], b[3], b[4], c->d);
  CHECK(yf != NULL, "%s: forward failed: %s", label, jbx_last_error());
  CHECK(!yf || !yf->node || (yf->node->n_saved == 1) == !recompute,
        "%s: h kept exactly when recompute is off", label);
  if (!yf || !yc) goto done;
  double e = rel_err(yf, yc);
  CHECK(e < 1e-5, "%s: forward differs by %.3g", label, e);
  CHECK(jbx_backward(yf, probe) == 0, "%s: backward failed: %s", label, jbx_last_error());
  CHECK(jbx_backward(yc, probe) == 0, "%s: composed backward failed: %s", label, jbx_last_error());
  for (int k = 0; k < 5; k++) {
    if (!a[k]) continue;
    if (c->B == 0) { /* nothing flows: x gets none, the weights none or zeros */
      jbx_tensor *gk = a[k]->grad;
      int zero = 1;
      for (int64_t i = 0; gk && i < jbx_numel(gk); i++) zero = zero && jbx_f32(gk)[i] == 0;
      CHECK(zero && (k || !gk), "%s: grad %s is not empty or zero", label, NAMES[k]);
      continue;
    }
    e = rel_err(a[k]->grad, b[k]->grad);
    CHECK(e < 1e-4, "%s: grad %s differs by %.3g", label, NAMES[k], e);
  }
done:
  jbx_release(yf);
  jbx_release(yc);
  jbx_release(probe);
  release_all(a, 5);
  release_all(b, 5);
}

/* ------------------------------------------------------------ tests */

static void test_against_composition(void) {
  static const rcase cases[] = {
      {1, 3, 5, 7, 1, 1},       {4, 4, 6, 20, 3, 1},     {2, 5, 3, 10, 9, 1},
      {1, 8, 8, 1000, 27, 1},   {4, 16, 12, 1000, 9, 1}, {4, 6, 6, 37, 1, 0},
      {2, 64, 64, 3000, 243, 1}, /* three panels per item: the halo crosses them */
      {1, 64, 64, 3000, 2187, 1}, {3, 32, 32, 700, 81, 1}, {0, 4, 4, 9, 1, 1},
  };
  for (int mode = 0; mode < 3; mode++) { /* 1 and 2 threads recomputing h; 2 keeping it */
    int threads = mode == 0 ? 1 : 2;
    bool recompute = mode < 2;
    omp_set_num_threads(threads);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      char label[112];
      const rcase *c = &cases[i];
      snprintf(label, sizeof label, "B%lld C%lld S%lld L%lld d%d bias%d threads%d %s",
               (long long)c->B, (long long)c->C, (long long)c->S, (long long)c->L, c->d,
               c->biases, threads, recompute ? "recompute" : "keep h");
      compare_case(c, label, recompute);
    }
  }
}

/* Same bits on every run and for any thread count (panel sums are added in a fixed order). */
static void test_deterministic(void) {
  rcase c = {4, 16, 16, 9000, 9, 1};
  jbx_tensor *in[5];
  make_inputs(&c, 5, in);
  jbx_tensor *g[3][6] = {{NULL}};
  static const int threads[3] = {1, 2, 2};
  for (int run = 0; run < 3; run++) {
    omp_set_num_threads(threads[run]);
    for (int k = 0; k < 5; k++) jbx_zero_grad(in[k]);
    jbx_tensor *y = jbx_res_conv_block(in[0], in[1], in[2], in[3], in[4], c.d);
    jbx_tensor *q = jbx_mul(y, y), *s = jbx_sum(q, JBX_ALL_DIMS, false);
    CHECK(s && jbx_backward(s, NULL) == 0, "backward: %s", jbx_last_error());
    for (int k = 0; k < 5; k++) g[run][k] = jbx_retain(in[k]->grad);
    g[run][5] = y;
    jbx_release(s);
    jbx_release(q);
  }
  for (int run = 1; run < 3; run++)
    for (int k = 0; k < 6; k++) {
      int same = g[0][k] && g[run][k];
      for (int64_t i = 0; same && i < jbx_numel(g[0][k]); i++)
        same = jbx_f32(g[0][k])[i] == jbx_f32(g[run][k])[i];
      CHECK(same, "%s differs between run 1 (1 thread) and run %d (%d threads)",
            k < 5 ? NAMES[k] : "y", run + 1, threads[run]);
    }
  for (int run = 0; run < 3; run++) release_all(g[run], 6);
  release_all(in, 5);
}

/* A strided (transposed) input and weights give the same as contiguous copies. */
static void test_strided(void) {
  rcase c = {2, 5, 4, 30, 3, 1};
  jbx_tensor *in[5];
  make_inputs(&c, 9, in);
  int64_t st[3] = {2, 30, 5};
  jbx_tensor *base = randn_n(3, st, 1.0f, 11);
  jbx_tensor *xt = jbx_transpose(base, 1, 2); /* [2, 5, 30], not contiguous */
  jbx_tensor *xc = jbx_contiguous(xt);
  jbx_tensor *y1 = jbx_res_conv_block(xt, in[1], in[2], in[3], in[4], c.d);
  jbx_tensor *y2 = jbx_res_conv_block(xc, in[1], in[2], in[3], in[4], c.d);
  CHECK(rel_err(y1, y2) == 0, "strided input differs by %.3g", rel_err(y1, y2));
  jbx_tensor *s = jbx_sum(y1, JBX_ALL_DIMS, false);
  CHECK(s && jbx_backward(s, NULL) == 0, "backward: %s", jbx_last_error());
  CHECK(base->grad != NULL && jbx_same_shape(base->grad, base), "the strided input's base got a gradient");
  jbx_release(s);
  jbx_release(y1);
  jbx_release(y2);
  jbx_release(xc);
  jbx_release(xt);
  jbx_release(base);
  release_all(in, 5);
}

/* Gradients only where asked, including the bias1-only and non-leaf bias1 paths. */
static void test_partial_grads(void) {
  rcase c = {2, 4, 5, 16, 2, 1};
  omp_set_num_threads(2);
  for (int want = 1; want < 64; want++) { /* bit 5: keep h */
    if (!(want & 31)) continue;
    bool recompute = !(want & 32);
    jbx_tensor *a[5], *b[5];
    make_inputs(&c, 21, a);
    for (int k = 0; k < 5; k++) {
      a[k]->requires_grad = (want >> k) & 1;
      b[k] = copy_leaf(a[k]);
    }
    jbx_tensor *yf = jbx_res_conv_block_ex(a[0], a[1], a[2], a[3], a[4], c.d, recompute);
    jbx_tensor *yc = composed(b[0], b[1], b[2], b[3], b[4], c.d);
    jbx_tensor *qf = jbx_mul(yf, yf), *qc = jbx_mul(yc, yc);
    jbx_tensor *sf = jbx_sum(qf, JBX_ALL_DIMS, false), *sc = jbx_sum(qc, JBX_ALL_DIMS, false);
    CHECK(sf && jbx_backward(sf, NULL) == 0, "want %d: backward: %s", want, jbx_last_error());
    CHECK(sc && jbx_backward(sc, NULL) == 0, "want %d: composed backward", want);
    for (int k = 0; k < 5; k++) {
      if ((want >> k) & 1) {
        double e = rel_err(a[k]->grad, b[k]->grad);
        CHECK(e < 1e-4, "want %d: grad %s differs by %.3g", want, NAMES[k], e);
      } else {
        CHECK(a[k]->grad == NULL, "want %d: %s got a gradient it did not ask for", want, NAMES[k]);
      }
    }
    jbx_release(qf);
    jbx_release(qc);
    jbx_release(sf);
    jbx_release(sc);
    jbx_release(yf);
    jbx_release(yc);
    release_all(a, 5);
    release_all(b, 5);
  }
  /* bias1 computed by an op: its gradient flows on to the leaf it came from */
  jbx_tensor *a[5];
  make_inputs(&c, 33, a);
  jbx_tensor *b1 = jbx_mul_scalar(a[4], 2.0f);
  jbx_tensor *y = jbx_res_conv_block(a[0], a[1], a[2], a[3], b1, c.d);
  jbx_tensor *s = jbx_sum(y, JBX_ALL_DIMS, false);
  CHECK(s && jbx_backward(s, NULL) == 0, "non-leaf bias1: backward: %s", jbx_last_error());
  int ok = a[4]->grad != NULL;
  for (int64_t i = 0; ok && i < c.C; i++) ok = fabs(jbx_f32(a[4]->grad)[i] - 2.0 * c.B * c.L) < 1e-3;
  CHECK(ok, "non-leaf bias1: the leaf behind it gets 2 * B * L per element");
  jbx_release(s);
  jbx_release(y);
  jbx_release(b1);
  release_all(a, 5);
}

/* No graph in no-grad mode; a graph (and requires_grad) otherwise. */
static void test_recording(void) {
  rcase c = {1, 3, 3, 8, 1, 1};
  jbx_tensor *in[5];
  make_inputs(&c, 41, in);
  bool prev = jbx_set_grad_enabled(false);
  jbx_tensor *y = jbx_res_conv_block(in[0], in[1], in[2], in[3], in[4], 1);
  CHECK(y && !y->requires_grad && !y->node, "no-grad mode records nothing");
  jbx_release(y);
  jbx_set_grad_enabled(prev);
  y = jbx_res_conv_block(in[0], in[1], in[2], in[3], in[4], 1);
  CHECK(y && y->requires_grad && y->node, "grad mode records a node");
  jbx_release(y);
  release_all(in, 5);
}

/* ------------------------------------------------------------ errors */

static void test_errors(void) {
  rcase c = {2, 4, 6, 10, 1, 1};
  jbx_tensor *in[5];
  make_inputs(&c, 61, in);
  jbx_tensor *x = in[0], *w3 = in[1], *b3 = in[2], *w1 = in[3], *b1 = in[4];
  int64_t s2[2] = {4, 10}, s3b[3] = {6, 5, 3}, s3k[3] = {6, 4, 2}, s1b[3] = {4, 5, 1},
          s1k[3] = {4, 6, 3}, s0[3] = {2, 4, 0};
  jbx_tensor *x2 = jbx_zeros(2, s2), *w3b = jbx_zeros(3, s3b), *w3k = jbx_zeros(3, s3k),
             *w1b = jbx_zeros(3, s1b), *w1k = jbx_zeros(3, s1k), *x0 = jbx_zeros(3, s0);
  int64_t n5 = 5;
  jbx_tensor *b5 = jbx_zeros(1, &n5);
  int32_t ids[2] = {1, 2};
  int64_t n2 = 2;
  jbx_tensor *xi = jbx_from_ints(1, &n2, ids);

  CHECK(jbx_res_conv_block(NULL, w3, b3, w1, b1, 1) == NULL, "missing input");
  CHECK_ERROR_HAS("res_conv_block: input, weight3 and weight1 are required");
  CHECK(jbx_res_conv_block(x, w3, b3, NULL, b1, 1) == NULL, "missing weight1");
  CHECK_ERROR_HAS("res_conv_block: input, weight3 and weight1 are required");
  CHECK(jbx_res_conv_block(xi, w3, b3, w1, b1, 1) == NULL, "int input");
  CHECK_ERROR_HAS("res_conv_block: input must be float32, got int32");
  CHECK(jbx_res_conv_block(x, w3, xi, w1, b1, 1) == NULL, "int bias3");
  CHECK_ERROR_HAS("res_conv_block: bias3 must be float32, got int32");
  CHECK(jbx_res_conv_block(x2, w3, b3, w1, b1, 1) == NULL, "2-D input");
  CHECK_ERROR_HAS("res_conv_block: input [4, 10] must be 3-D [batch, channels, length]");
  CHECK(jbx_res_conv_block(x, w3b, b3, w1, b1, 1) == NULL, "weight3 channels");
  CHECK_ERROR_HAS("res_conv_block: weight3 [6, 5, 3] must be [state, 4, 3] for input [2, 4, 10]");
  CHECK(jbx_res_conv_block(x, w3k, b3, w1, b1, 1) == NULL, "weight3 kernel");
  CHECK_ERROR_HAS("res_conv_block: weight3 [6, 4, 2] must be [state, 4, 3]");
  CHECK(jbx_res_conv_block(x, w3, b3, w1b, b1, 1) == NULL, "weight1 state");
  CHECK_ERROR_HAS("res_conv_block: weight1 [4, 5, 1] must be [4, 6, 1] for input [2, 4, 10] and "
                  "weight3 [6, 4, 3]");
  CHECK(jbx_res_conv_block(x, w3, b3, w1k, b1, 1) == NULL, "weight1 kernel");
  CHECK_ERROR_HAS("res_conv_block: weight1 [4, 6, 3] must be [4, 6, 1]");
  CHECK(jbx_res_conv_block(x, w3, b5, w1, b1, 1) == NULL, "bias3 size");
  CHECK_ERROR_HAS("res_conv_block: bias3 [5] must be [6], one value per state channel of weight3 "
                  "[6, 4, 3]");
  CHECK(jbx_res_conv_block(x, w3, b3, w1, b5, 1) == NULL, "bias1 size");
  CHECK_ERROR_HAS("res_conv_block: bias1 [5] must be [4], one value per channel of input "
                  "[2, 4, 10]");
  CHECK(jbx_res_conv_block(x, w3, b3, w1, b1, 0) == NULL, "dilation 0");
  CHECK_ERROR_HAS("res_conv_block: dilation must be >= 1, got 0");
  CHECK(jbx_res_conv_block(x0, w3, b3, w1, b1, 1) == NULL, "empty length");
  CHECK_ERROR_HAS("res_conv_block: input [2, 4, 0] with weight3 [6, 4, 3] is empty");

  jbx_tensor *more[] = {x2, w3b, w3k, w1b, w1k, x0, b5, xi};
  release_all(more, 8);
  release_all(in, 5);
}

int main(void) {
  test_against_composition();
  test_deterministic();
  test_strided();
  test_partial_grads();
  test_recording();
  test_errors();
  return check_summary();
}
