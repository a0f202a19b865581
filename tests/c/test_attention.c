/* attention: the fused factorised attention (core/ops/attention.c) against the PyTorch
 * fixture (tests/fixtures/attention.fix: the reference's semantics with explicit dense
 * masks, in float64) for the four patterns over three shapes, outputs and q/k/v
 * gradients, contiguous and strided inputs; against a naive double-precision reference
 * at T = 256 (several query and key tiles, partial gradients); the same bits on 1 and 2
 * threads; dense attention at a long T without a T x T matrix; every error message.
 * Gradient checks are rows of op_table.h. */
#include <omp.h>
#include <stdlib.h>

#include "check.h"
#include "fixture.h"
#include "gradcheck.h"
#include "jbx_attention.h"
#include "jbx_error.h"
#include "jbx_ops.h"

/* max |a - b| / (1 + max |b|) */
static double rel_err(const jbx_tensor *a, const jbx_tensor *b) {
  if (!a || !b || !jbx_same_shape(a, b)) return 1e9;
  double worst = 0, scale = 0;
  for (int64_t i = 0, n = jbx_numel(b); i < n; i++) {
    double d = fabs(jbx_get(a, i) - jbx_get(b, i)), m = fabs(jbx_get(b, i));
    if (d > worst || d != d) worst = d != d ? 1e9 : d;
    if (m > scale) scale = m;
  }
  return worst / (1.0 + scale);
}

static jbx_tensor *leaf_copy(const jbx_tensor *t, bool grad) {
  jbx_tensor *c = jbx_from_floats(t->ndim, t->shape, jbx_f32(t));
  c->requires_grad = grad;
  return c;
}

/* out = attention(q, k, v) and the gradients of sum(out * go) into q, k, v's grad. */
static jbx_tensor *run(jbx_tensor *q, jbx_tensor *k, jbx_tensor *v, jbx_tensor *go, int func,
                       int64_t bc) {
  jbx_attn_opts o = {.attn_func = func, .block_ctx = bc};
  jbx_tensor *out = jbx_attention(q, k, v, &o);
  if (!out) return NULL;
  if (out->requires_grad && jbx_backward(out, go) < 0) {
    jbx_release(out);
    return NULL;
  }
  return out;
}

/* ------------------------------------------------------------ the PyTorch fixture */

static double worst_fixture_err;

static void fixture_case(fixture *fx, int s, int func, int bc, bool strided) {
  char name[64];
  jbx_tensor *in[4];
  const char *names[4] = {"q", "k", "v", "go"};
  for (int i = 0; i < 4; i++) {
    snprintf(name, sizeof name, "s%d_%s", s, names[i]);
    in[i] = fixture_get(fx, name);
  }
  if (!in[0] || !in[1] || !in[2] || !in[3]) {
    CHECK(0, "fixture case s%d f%d is missing", s, func);
    return;
  }
  jbx_tensor *q = leaf_copy(in[0], true), *k = leaf_copy(in[1], true), *v = leaf_copy(in[2], true);
  jbx_tensor *qa = NULL, *qv = q;
  if (strided) { /* q through a transposed copy: same values, non-contiguous strides */
    jbx_tensor *qt = jbx_transpose(in[0], 2, 3), *qc = jbx_clone(qt);
    qa = qc;
    qa->requires_grad = true;
    qv = jbx_transpose(qa, 2, 3);
    jbx_release(qt);
  }
  jbx_tensor *out = run(qv, k, v, in[3], func, bc);
  CHECK(out != NULL, "s%d f%d: %s", s, func, jbx_last_error());
  jbx_tensor *got[4] = {out, qa ? NULL : q->grad, k->grad, v->grad};
  jbx_tensor *gq_t = NULL;
  if (qa && qa->grad) got[1] = gq_t = jbx_transpose(qa->grad, 2, 3);
  const char *what[4] = {"out", "gq", "gk", "gv"};
  for (int i = 0; i < 4; i++) {
    snprintf(name, sizeof name, "s%d_f%d_%s", s, func, what[i]);
    jbx_tensor *want = fixture_get(fx, name);
    double e = rel_err(got[i], want);
    if (e > worst_fixture_err) worst_fixture_err = e;
    CHECK(e < 2e-5, "s%d f%d bc %d%s %s: error %.3g", s, func, bc, strided ? " strided q" : "",
          what[i], e);
  }
  jbx_release(gq_t);
  if (qa) jbx_release(qv);
  jbx_release(qa);
  jbx_release(out);
  jbx_release(q);
  jbx_release(k);
  jbx_release(v);
}

static void test_fixture(void) {
  fixture *fx = fixture_load("tests/fixtures/attention.fix");
  CHECK(fx != NULL, "cannot load tests/fixtures/attention.fix");
  jbx_tensor *cases = fixture_get(fx, "cases");
  if (!cases) {
    fixture_free(fx);
    return;
  }
  const int32_t *c = jbx_i32(cases);
  for (int64_t i = 0; i < cases->shape[0]; i++)
    fixture_case(fx, c[3 * i], c[3 * i + 1], c[3 * i + 2], false);
  for (int func = 0; func < 4; func++) fixture_case(fx, 1, func, 8, true);
  printf("attention fixture: worst relative error %.3g over %lld cases\n", worst_fixture_err,
         (long long)cases->shape[0] + 4);
  fixture_free(fx);
}

/* ------------------------------------------------------------ a naive reference */

static bool sees(int func, int64_t bc, int64_t t, int64_t s) {
  switch (func) {
  case 0: return s <= t;
  case 1: return s / bc == t / bc && s <= t;
  case 2: return s % bc == t % bc && s <= t;
  default: return s / bc == t / bc - 1;
  }
}

/* Double precision, one (batch, head) slice [T, d] at a time: out, and gq, gk, gv for go.
 * Previous block's block 0 attends to zero keys: out 0, no gradient. */
static void naive(const float *q, const float *k, const float *v, const float *go, int64_t T,
                  int64_t d, int func, int64_t bc, double *out, double *gq, double *gk,
                  double *gv) {
  const double scale = 1.0 / sqrt((double)d);
  double *p = malloc((size_t)T * sizeof *p), *dp = malloc((size_t)T * sizeof *dp);
  memset(gq, 0, (size_t)(T * d) * sizeof *gq);
  memset(gk, 0, (size_t)(T * d) * sizeof *gk);
  memset(gv, 0, (size_t)(T * d) * sizeof *gv);
  for (int64_t t = 0; t < T; t++) {
    double mx = -INFINITY, sum = 0;
    for (int64_t s = 0; s < T; s++) {
      p[s] = -INFINITY;
      if (!sees(func, bc, t, s)) continue;
      double a = 0;
      for (int64_t c = 0; c < d; c++) a += (double)q[t * d + c] * k[s * d + c];
      p[s] = a * scale;
      if (p[s] > mx) mx = p[s];
    }
    for (int64_t s = 0; s < T; s++) {
      p[s] = p[s] == -INFINITY ? 0 : exp(p[s] - mx);
      sum += p[s];
    }
    for (int64_t c = 0; c < d; c++) out[t * d + c] = 0;
    if (sum == 0) continue;
    double D = 0;
    for (int64_t s = 0; s < T; s++) {
      p[s] /= sum;
      for (int64_t c = 0; c < d; c++) out[t * d + c] += p[s] * v[s * d + c];
    }
    for (int64_t c = 0; c < d; c++) D += out[t * d + c] * go[t * d + c];
    for (int64_t s = 0; s < T; s++) {
      if (p[s] == 0) continue;
      double a = 0;
      for (int64_t c = 0; c < d; c++) a += (double)go[t * d + c] * v[s * d + c];
      double ds = p[s] * (a - D) * scale;
      for (int64_t c = 0; c < d; c++) {
        gq[t * d + c] += ds * k[s * d + c];
        gk[s * d + c] += ds * q[t * d + c];
        gv[s * d + c] += p[s] * go[t * d + c];
      }
    }
  }
  free(p);
  free(dp);
}

static double err_vs(const jbx_tensor *t, const double *want, int64_t n) {
  if (!t) return 1e9;
  const float *a = jbx_f32(t);
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs(a[i] - want[i]);
    if (e > worst || e != e) worst = e != e ? 1e9 : e;
    if (fabs(want[i]) > scale) scale = fabs(want[i]);
  }
  return worst / (1.0 + scale);
}

/* B = 1, H = 2, T = 256, d = 32: dense has 4 query tiles and 2 key tiles; column slices
 * of 128 rows with block_ctx 2. wants[i]: which of q, k, v require a gradient. */
static void naive_case(int func, int64_t bc, const bool wants[3], uint64_t seed) {
  const int64_t B = 1, H = 2, T = 256, d = 32, n = B * H * T * d;
  int64_t sh[4] = {B, H, T, d};
  jbx_tensor *in[4];
  for (int i = 0; i < 4; i++) {
    in[i] = gradcheck_input(4, sh, 1.5f, seed + (uint64_t)i);
    in[i]->requires_grad = i < 3 && wants[i];
  }
  jbx_tensor *out = run(in[0], in[1], in[2], in[3], func, bc);
  CHECK(out != NULL, "naive f%d: %s", func, jbx_last_error());
  double *w = malloc((size_t)(4 * n) * sizeof *w);
  for (int64_t bh = 0; bh < B * H; bh++) {
    const int64_t o = bh * T * d;
    naive(jbx_f32(in[0]) + o, jbx_f32(in[1]) + o, jbx_f32(in[2]) + o, jbx_f32(in[3]) + o, T, d,
          func, bc, w + o, w + n + o, w + 2 * n + o, w + 3 * n + o);
  }
  CHECK(err_vs(out, w, n) < 1e-5, "naive f%d bc %lld out: error %.3g", func, (long long)bc,
        err_vs(out, w, n));
  const char *what[3] = {"gq", "gk", "gv"};
  for (int i = 0; i < 3; i++) {
    if (!wants[i]) {
      CHECK(in[i]->grad == NULL, "naive f%d: %s computed though not wanted", func, what[i]);
      continue;
    }
    double e = err_vs(in[i]->grad, w + (i + 1) * n, n);
    CHECK(e < 2e-5, "naive f%d bc %lld %s: error %.3g", func, (long long)bc, what[i], e);
  }
  free(w);
  jbx_release(out);
  for (int i = 0; i < 4; i++) jbx_release(in[i]);
}

static void test_naive(void) {
  const bool all[3] = {true, true, true}, only_q[3] = {true, false, false},
             only_kv[3] = {false, true, true};
  naive_case(0, 0, all, 100);
  naive_case(1, 32, all, 110);
  naive_case(1, 128, all, 115); /* two query tiles in a block */
  naive_case(2, 16, all, 120);
  naive_case(2, 2, all, 125);
  naive_case(3, 32, all, 130);
  naive_case(3, 128, all, 135);
  naive_case(0, 0, only_q, 140);
  naive_case(2, 8, only_kv, 150);
}

/* ------------------------------------------------------------ threads, no grad, long T */

/* [2, 2, 128, 16] for each pattern, and [1, 1, 256, 16] dense (its backward split into
 * chunks: func 4 below means dense on that shape). */
static void test_threads(void) {
  int keep = omp_get_max_threads();
  for (int f = 0; f < 5; f++) {
    const int func = f == 4 ? 0 : f;
    int64_t sh[4] = {2, 2, 128, 16};
    if (f == 4) sh[0] = 1, sh[1] = 1, sh[2] = 256;
    jbx_tensor *r[2][4] = {{NULL}};
    for (int th = 1; th <= 2; th++) {
      omp_set_num_threads(th);
      jbx_tensor *in[4];
      for (int i = 0; i < 4; i++) {
        in[i] = gradcheck_input(4, sh, 1.0f, 200 + (uint64_t)i);
        in[i]->requires_grad = i < 3;
      }
      r[th - 1][0] = run(in[0], in[1], in[2], in[3], func, 16);
      for (int i = 0; i < 3; i++) r[th - 1][i + 1] = jbx_retain(in[i]->grad);
      for (int i = 0; i < 4; i++) jbx_release(in[i]);
    }
    for (int i = 0; i < 4; i++) {
      bool same = r[0][i] && r[1][i] &&
                  memcmp(jbx_f32(r[0][i]), jbx_f32(r[1][i]),
                         (size_t)jbx_numel(r[0][i]) * sizeof(float)) == 0;
      CHECK(same, "case %d: result %d differs between 1 and 2 threads", f, i);
      jbx_release(r[0][i]);
      jbx_release(r[1][i]);
    }
  }
  omp_set_num_threads(keep);
}

/* Dense attention over T = 8192 (a forward, then a recorded forward + backward, d = 4):
 * a T x T float matrix alone would be 256 MB; rows checked against the naive
 * formula at a few positions. */
static void test_long(void) {
  const int64_t T = 8192, d = 4;
  int64_t sh[4] = {1, 1, T, d};
  jbx_tensor *q = gradcheck_input(4, sh, 1.0f, 300), *k = gradcheck_input(4, sh, 1.0f, 301),
             *v = gradcheck_input(4, sh, 1.0f, 302);
  jbx_attn_opts o = {0, 0};
  jbx_tensor *out = jbx_attention(q, k, v, &o);
  CHECK(out != NULL, "dense T 8192: %s", jbx_last_error());
  const int64_t rows[4] = {0, 1, 4097, T - 1};
  for (int r = 0; out && r < 4; r++) {
    const int64_t t = rows[r];
    const float *qp = jbx_f32(q), *kp = jbx_f32(k), *vp = jbx_f32(v);
    double mx = -INFINITY, sum = 0, acc[4] = {0};
    for (int64_t s = 0; s <= t; s++) {
      double a = 0;
      for (int c = 0; c < d; c++) a += (double)qp[t * d + c] * kp[s * d + c];
      if (a / 2 > mx) mx = a / 2;
    }
    for (int64_t s = 0; s <= t; s++) {
      double a = 0;
      for (int c = 0; c < d; c++) a += (double)qp[t * d + c] * kp[s * d + c];
      double p = exp(a / 2 - mx);
      sum += p;
      for (int c = 0; c < d; c++) acc[c] += p * vp[s * d + c];
    }
    for (int c = 0; c < d; c++) CHECK_CLOSE(jbx_get(out, t * d + c), acc[c] / sum, 1e-4);
  }
  jbx_release(out);
  q->requires_grad = k->requires_grad = v->requires_grad = true;
  out = jbx_attention(q, k, v, &o);
  jbx_tensor *loss = out ? jbx_sum(out, JBX_ALL_DIMS, false) : NULL;
  CHECK(loss && jbx_backward(loss, NULL) == 0, "dense T 8192 backward: %s", jbx_last_error());
  CHECK(q->grad && k->grad && v->grad, "dense T 8192: gradients missing");
  /* with go = 1, gv[s][c] = sum over t of p[t][s], and every row of p sums to 1 */
  for (int c = 0; v->grad && c < d; c++) {
    double s = 0;
    for (int64_t t = 0; t < T; t++) s += jbx_get(v->grad, t * d + c);
    CHECK_CLOSE(s, (double)T, 1e-5);
  }
  jbx_release(loss);
  jbx_release(out);
  jbx_release(q);
  jbx_release(k);
  jbx_release(v);
}

/* ------------------------------------------------------------ errors */

static void expect_error(jbx_tensor *q, jbx_tensor *k, jbx_tensor *v, int func, int64_t bc,
                         const char *part) {
  jbx_attn_opts o = {func, bc};
  jbx_tensor *out = jbx_attention(q, k, v, &o);
  CHECK(out == NULL, "expected an error containing '%s'", part);
  jbx_release(out);
  CHECK_ERROR_HAS(part);
}

static void test_errors(void) {
  int64_t s4[4] = {1, 2, 8, 4}, s3[3] = {2, 8, 4}, s4b[4] = {1, 2, 6, 4}, s0[4] = {1, 2, 0, 4};
  jbx_tensor *q = jbx_zeros(4, s4), *k = jbx_zeros(4, s4), *v = jbx_zeros(4, s4);
  jbx_tensor *q3 = jbx_zeros(3, s3), *kb = jbx_zeros(4, s4b), *e = jbx_zeros(4, s0);
  int32_t ids[64] = {0};
  jbx_tensor *qi = jbx_from_ints(4, s4, ids);
  expect_error(q3, k, v, 0, 0, "attention: q [2, 8, 4] must be 4-D [batch, heads, T, d]");
  expect_error(q, kb, v, 0, 0, "attention: k [1, 2, 6, 4] must have q's shape [1, 2, 8, 4]");
  expect_error(q, k, kb, 0, 0, "attention: v [1, 2, 6, 4] must have q's shape [1, 2, 8, 4]");
  expect_error(qi, k, v, 0, 0, "attention: q must be float32, got int32");
  expect_error(e, e, e, 0, 0, "attention: q [1, 2, 0, 4] is empty");
  expect_error(q, k, v, 1, 3, "attention: T = 8 (q [1, 2, 8, 4]) is not a multiple of block_ctx 3");
  expect_error(q, k, v, 2, 0, "attention: block_ctx must be >= 1 for attn_func 2, got 0");
  expect_error(q, k, v, 6, 4, "attention: attn_func 6 (encoder-decoder) is not implemented yet");
  expect_error(q, k, v, 7, 4, "attention: attn_func 7 (prime) is not implemented yet");
  expect_error(q, k, v, 4, 4, "attention: attn_func 4 (summary) is not implemented");
  expect_error(q, k, v, 9, 4, "attention: unknown attn_func 9 (0 dense, 1 block, 2 transposed "
                              "block, 3 previous block)");
  expect_error(q, k, v, -1, 4, "attention: unknown attn_func -1");
  expect_error(NULL, k, v, 0, 0, "attention: q, k and v are required");
  /* dense ignores block_ctx; NULL options mean dense */
  jbx_attn_opts o = {0, 3};
  jbx_tensor *a = jbx_attention(q, k, v, &o), *b = jbx_attention(q, k, v, NULL);
  CHECK(a && b, "dense with block_ctx 3 or no options: %s", jbx_last_error());
  jbx_release(a);
  jbx_release(b);
  jbx_tensor *all[] = {q, k, v, q3, kb, e, qi};
  for (int i = 0; i < 7; i++) jbx_release(all[i]);
}

int main(void) {
  test_fixture();
  test_naive();
  test_threads();
  test_long();
  test_errors();
  return check_summary();
}
