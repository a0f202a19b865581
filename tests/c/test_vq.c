/* VQ bottleneck: assignment against brute force (also across a block boundary),
 * dequantise/quantise values and gradients, the EMA update against hand computations,
 * restarts, metrics, determinism, every error message, and a PyTorch fixture. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixture.h"
#include "jbx_error.h"
#include "jbx_rng.h"
#include "jbx_tensor.h"
#include "jbx_vq.h"

static jbx_tensor *randn2(int64_t r, int64_t c, float scale, uint64_t seed) {
  jbx_rng rng;
  jbx_rng_seed(&rng, seed);
  int64_t shape[2] = {r, c};
  jbx_tensor *t = jbx_randn(2, shape, &rng);
  for (int64_t i = 0; i < r * c; i++) jbx_f32(t)[i] *= scale;
  return t;
}

static jbx_tensor *floats2(int64_t r, int64_t c, const float *v) {
  int64_t shape[2] = {r, c};
  return jbx_from_floats(2, shape, v);
}

static jbx_tensor *floats1(int64_t n, const float *v) { return jbx_from_floats(1, &n, v); }

static jbx_tensor *ints1(int64_t n, const int32_t *v) { return jbx_from_ints(1, &n, v); }

static double sqdist(const float *a, const float *b, int64_t d) {
  double s = 0;
  for (int64_t c = 0; c < d; c++) s += ((double)a[c] - b[c]) * ((double)a[c] - b[c]);
  return s;
}

/* Our codes are optimal up to float rounding of the distance, and min_dist agrees. */
static void check_assign_brute(int64_t n, int64_t kb, int64_t d, uint64_t seed) {
  jbx_tensor *x = randn2(n, d, 1.0f, seed), *k = randn2(kb, d, 1.0f, seed + 1), *codes, *md;
  CHECK(jbx_vq_assign(x, k, &codes, &md) == 0, "assign: %s", jbx_last_error());
  if (!codes) return;
  CHECK(codes->dtype == JBX_I32 && codes->ndim == 1 && codes->shape[0] == n, "codes shape");
  int64_t worse = 0, differ = 0;
  double worst_md = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *xi = jbx_f32(x) + i * d;
    int64_t best = 0;
    double bd = sqdist(xi, jbx_f32(k), d);
    for (int64_t j = 1; j < kb; j++) {
      double v = sqdist(xi, jbx_f32(k) + j * d, d);
      if (v < bd) bd = v, best = j;
    }
    int32_t c = jbx_i32(codes)[i];
    double ours = sqdist(xi, jbx_f32(k) + (int64_t)c * d, d);
    if (c != best) differ++;
    if (ours > bd + 1e-4 * (1 + bd)) worse++;
    double e = fabs(jbx_f32(md)[i] - bd) / (1 + bd);
    if (e > worst_md) worst_md = e;
  }
  CHECK(worse == 0, "N=%lld: %lld rows got a clearly worse code", (long long)n, (long long)worse);
  CHECK(differ <= n / 500, "N=%lld: %lld rows differ from brute force", (long long)n, (long long)differ);
  CHECK(worst_md < 1e-5, "N=%lld: min_dist off by %g", (long long)n, worst_md);
  /* The last row sits past the block boundary when n > JBX_VQ_BLOCK_ROWS. */
  jbx_release(codes);
  jbx_release(md);
  jbx_release(x);
  jbx_release(k);
}

static void test_assign(void) {
  check_assign_brute(1000, 64, 16, 1);
  check_assign_brute(JBX_VQ_BLOCK_ROWS + 1, 32, 8, 2);
  check_assign_brute(1, 1, 1, 3);

  /* Exact hits and first-index ties; a strided x (a transposed view) works too. */
  float kv[] = {0, 0, 1, 1, 1, 1, -2, 3};
  float xt[] = {1, -2, 0.1f, 0, 1, 3, 0.2f, 0}; /* x^T: rows (1,1), (-2,3), (0.1,0.2), (0,0) */
  jbx_tensor *k = floats2(4, 2, kv), *base = floats2(2, 4, xt), *x = jbx_transpose(base, 0, 1);
  jbx_tensor *codes = NULL;
  CHECK(jbx_vq_assign(x, k, &codes, NULL) == 0, "%s", jbx_last_error());
  if (codes) {
    int32_t want[] = {1, 3, 0, 0};
    for (int i = 0; i < 4; i++) CHECK(jbx_i32(codes)[i] == want[i], "row %d: code %d", i, jbx_i32(codes)[i]);
  }
  jbx_release(codes);
  jbx_release(x);
  jbx_release(base);
  jbx_release(k);
}

static void test_dequantise(void) {
  jbx_tensor *k = randn2(5, 3, 1.0f, 7);
  k->requires_grad = true;
  int32_t cv[] = {4, 0, 4, 2, 2, 2};
  int64_t cshape[2] = {2, 3};
  jbx_tensor *codes = jbx_from_ints(2, cshape, cv);
  jbx_tensor *out = jbx_vq_dequantise(k, codes);
  CHECK(out && out->ndim == 3 && out->shape[0] == 2 && out->shape[1] == 3 && out->shape[2] == 3,
        "dequantise shape: %s", jbx_last_error());
  if (!out) return;
  int ok = 1;
  for (int i = 0; i < 6; i++)
    for (int c = 0; c < 3; c++) ok &= jbx_f32(out)[i * 3 + c] == jbx_f32(k)[cv[i] * 3 + c];
  CHECK(ok, "dequantise values are rows of k");
  CHECK(out->requires_grad, "dequantise records a node when k requires grad");
  /* d sum(out * g) / d k[j] = sum of the g rows that picked j. */
  int64_t gshape[3] = {2, 3, 3};
  jbx_rng rng;
  jbx_rng_seed(&rng, 8);
  jbx_tensor *g = jbx_randn(3, gshape, &rng);
  CHECK(jbx_backward(out, g) == 0, "%s", jbx_last_error());
  double err = k->grad ? 0 : 1;
  for (int j = 0; k->grad && j < 5; j++)
    for (int c = 0; c < 3; c++) {
      double want = 0;
      for (int i = 0; i < 6; i++)
        if (cv[i] == j) want += jbx_f32(g)[i * 3 + c];
      err = fmax(err, fabs(want - jbx_f32(k->grad)[j * 3 + c]));
    }
  CHECK(err < 1e-6, "dequantise gradient off by %g", err);
  jbx_release(g);
  jbx_release(out);
  jbx_release(codes);
  jbx_release(k);
}

static void test_quantise(void) {
  int64_t n = 50, d = 4, kb = 8;
  jbx_tensor *x = randn2(n, d, 1.0f, 11), *k = randn2(kb, d, 1.0f, 12);
  x->requires_grad = true;
  jbx_vq_result r;
  CHECK(jbx_vq_quantise(x, k, &r) == 0, "%s", jbx_last_error());
  if (!r.codes) return;
  jbx_tensor *codes, *md;
  jbx_vq_assign(x, k, &codes, &md);
  double sq = 0, fit = 0, worst = 0;
  for (int64_t i = 0; i < n; i++) {
    CHECK(jbx_i32(codes)[i] == jbx_i32(r.codes)[i], "row %lld: quantise and assign disagree", (long long)i);
    const float *ki = jbx_f32(k) + (int64_t)jbx_i32(r.codes)[i] * d;
    for (int64_t c = 0; c < d; c++) worst = fmax(worst, fabs(jbx_f32(r.x_q)[i * d + c] - ki[c]));
    sq += sqdist(jbx_f32(x) + i * d, ki, d);
    fit += jbx_f32(md)[i];
  }
  CHECK(worst < 1e-6, "x_q differs from k[codes] by %g", worst);
  CHECK_CLOSE(jbx_get(r.commit, 0), sq / (double)(n * d), 1e-6);
  CHECK_CLOSE(r.fit, fit / (double)n, 1e-6);
  CHECK(r.commit->ndim == 0 && r.commit->requires_grad && r.x_q->requires_grad, "graph recorded");

  /* commit: d/dx = 2 (x - k[codes]) / numel. */
  CHECK(jbx_backward(r.commit, NULL) == 0, "%s", jbx_last_error());
  worst = x->grad ? 0 : 1;
  for (int64_t i = 0; x->grad && i < n; i++) {
    const float *ki = jbx_f32(k) + (int64_t)jbx_i32(r.codes)[i] * d;
    for (int64_t c = 0; c < d; c++) {
      double want = 2.0 * (jbx_f32(x)[i * d + c] - ki[c]) / (double)(n * d);
      worst = fmax(worst, fabs(want - jbx_f32(x->grad)[i * d + c]));
    }
  }
  CHECK(worst < 1e-7, "commit gradient off by %g", worst);

  /* Finite differences of the commit loss where no code flips (its true derivative). */
  jbx_vq_result rp, rm;
  double eps = 1e-2, fd_worst = 0;
  bool prev = jbx_set_grad_enabled(false);
  for (int64_t e = 0; x->grad && e < n * d; e += 7) {
    float keep = jbx_f32(x)[e];
    jbx_f32(x)[e] = keep + (float)eps;
    jbx_vq_quantise(x, k, &rp);
    jbx_f32(x)[e] = keep - (float)eps;
    jbx_vq_quantise(x, k, &rm);
    jbx_f32(x)[e] = keep;
    if (jbx_i32(rp.codes)[e / d] == jbx_i32(rm.codes)[e / d]) {
      double num = ((double)jbx_get(rp.commit, 0) - jbx_get(rm.commit, 0)) / (2 * eps);
      fd_worst = fmax(fd_worst, fabs(num - jbx_f32(x->grad)[e]) / 1e-2);
    }
    jbx_vq_result_free(&rp);
    jbx_vq_result_free(&rm);
  }
  jbx_set_grad_enabled(prev);
  CHECK(fd_worst < 1e-3, "commit finite differences off by %g (relative to 1e-2)", fd_worst);

  /* x_q: the gradient passes straight through to x. */
  jbx_zero_grad(x);
  jbx_tensor *g = randn2(n, d, 1.0f, 13);
  CHECK(jbx_backward(r.x_q, g) == 0, "%s", jbx_last_error());
  int same = x->grad != NULL;
  for (int64_t i = 0; same && i < n * d; i++) same = jbx_f32(x->grad)[i] == jbx_f32(g)[i];
  CHECK(same, "straight-through gradient equals the incoming one");

  /* Without grad mode nothing is recorded. */
  prev = jbx_set_grad_enabled(false);
  jbx_vq_result_free(&r);
  jbx_vq_quantise(x, k, &r);
  CHECK(!r.x_q->requires_grad && !r.commit->requires_grad, "no graph under no_grad");
  jbx_set_grad_enabled(prev);

  double pn;
  CHECK(jbx_vq_prenorm(x, &pn) == 0, "%s", jbx_last_error());
  double mean = 0, s = 0;
  for (int64_t i = 0; i < n * d; i++) mean += jbx_f32(x)[i];
  mean /= (double)(n * d);
  for (int64_t i = 0; i < n * d; i++) s += (jbx_f32(x)[i] - mean) * (jbx_f32(x)[i] - mean);
  CHECK_CLOSE(pn, sqrt(s / (double)(n * d)), 1e-9);

  jbx_vq_result_free(&r);
  jbx_release(g);
  jbx_release(codes);
  jbx_release(md);
  jbx_release(x);
  jbx_release(k);
}

/* The worked example of the header's formulas, no restarts (and so no random draws). */
static void test_ema_hand(void) {
  float kv[] = {0, 0, 1, 1, 5, 5}, ksv[] = {0, 0, 2, 2, 10, 10}, kev[] = {2, 2, 2};
  float xv[] = {0, 1, 1, 0, 1, 2, 0, 0};
  int32_t cv[] = {0, 1, 1, 0};
  jbx_tensor *k = floats2(3, 2, kv), *ks = floats2(3, 2, ksv), *ke = floats1(3, kev);
  jbx_tensor *x = floats2(4, 2, xv), *codes = ints1(4, cv);
  jbx_rng rng, before;
  jbx_rng_seed(&rng, 5);
  before = rng;
  jbx_vq_metrics m;
  CHECK(jbx_vq_ema_update(k, ks, ke, x, codes, 0.5, 0.5, &rng, &m) == 0, "%s", jbx_last_error());
  float want_k[] = {0, 0.25f, 1, 1, 5, 5}, want_ks[] = {0, 0.5f, 2, 2, 5, 5}, want_ke[] = {2, 2, 1};
  for (int i = 0; i < 6; i++) {
    CHECK_CLOSE(jbx_f32(k)[i], want_k[i], 1e-6);
    CHECK_CLOSE(jbx_f32(ks)[i], want_ks[i], 1e-6);
  }
  for (int i = 0; i < 3; i++) CHECK_CLOSE(jbx_f32(ke)[i], want_ke[i], 1e-6);
  CHECK(memcmp(&rng, &before, sizeof rng) == 0, "no restart draws nothing from the rng");
  CHECK(m.usage == 3 && m.used_curr == 2, "usage %g used_curr %g", m.usage, m.used_curr);
  CHECK_CLOSE(m.entropy, log(2.0), 1e-7);
  CHECK_CLOSE(m.dk, sqrt(0.25 * 0.25 / 6), 1e-7);
  CHECK_CLOSE(m.fit, 0.75, 1e-9);
  CHECK_CLOSE(m.pn, sqrt(3.875 / 8), 1e-9);
  jbx_release(k);
  jbx_release(ks);
  jbx_release(ke);
  jbx_release(x);
  jbx_release(codes);
}

/* Index of the row of x nearest to v, and the distance. */
static int64_t nearest_row(const float *x, int64_t n, int64_t d, const float *v, double *dist) {
  int64_t best = 0;
  *dist = INFINITY;
  for (int64_t i = 0; i < n; i++) {
    double s = sqdist(x + i * d, v, d);
    if (s < *dist) *dist = s, best = i;
  }
  return best;
}

/* Codes 0 and 1 stay in use, the others decay below the threshold and restart. */
static void check_restarts(int64_t n, uint64_t seed) {
  int64_t kb = 8, d = 3;
  jbx_tensor *x = randn2(n, d, 1.0f, seed), *k = randn2(kb, d, 1.0f, seed + 1);
  jbx_tensor *ks = jbx_clone(k), *ke = floats1(kb, (float[]){10, 10, 0.1f, 0.1f, 0.1f, 0.1f, 5, 0.1f});
  int32_t *cv = malloc((size_t)n * sizeof *cv);
  for (int64_t i = 0; i < n; i++) cv[i] = (int32_t)(i % 2);
  jbx_tensor *codes = ints1(n, cv), *ks0 = jbx_clone(ks), *ke0 = jbx_clone(ke);
  jbx_rng rng;
  jbx_rng_seed(&rng, 99);
  jbx_vq_metrics m;
  /* mu 0.9, threshold 1: code 6 (k_elem 5 -> 4.5) stays in use without being hit. */
  CHECK(jbx_vq_ema_update(k, ks, ke, x, codes, 0.9, 1.0, &rng, &m) == 0, "%s", jbx_last_error());
  CHECK(m.usage == 3, "usage %g (codes 0, 1, 6)", m.usage);
  CHECK(m.used_curr == 2, "used_curr %g", m.used_curr);
  int64_t seen[64] = {0};
  int distinct = 1;
  for (int64_t j = 0; j < kb; j++) {
    double cnt = j < 2 ? (double)((n + 1 - j) / 2) : 0;
    CHECK_CLOSE(jbx_f32(ke)[j], 0.9 * jbx_f32(ke0)[j] + 0.1 * cnt, 1e-6);
    const float *kj = jbx_f32(k) + j * d;
    bool used = j < 2 || j == 6;
    for (int64_t c = 0; c < d; c++) {
      double s = 0;
      for (int64_t i = j; j < 2 && i < n; i += 2) s += jbx_f32(x)[i * d + c];
      double want_ks = 0.9 * jbx_f32(ks0)[j * d + c] + 0.1 * s;
      /* Restarted or not, k_sum and k_elem take the EMA step (as the reference). */
      CHECK_CLOSE(jbx_f32(ks)[j * d + c], want_ks, 1e-6);
      if (used) CHECK_CLOSE(kj[c], jbx_f32(ks)[j * d + c] / jbx_f32(ke)[j], 1e-6);
    }
    if (!used) {
      double dist;
      int64_t r = nearest_row(jbx_f32(x), n, d, kj, &dist);
      if (n >= kb) {
        CHECK(dist == 0, "restart %lld is a row of x exactly (N >= K, no noise): %g", (long long)j, dist);
        if (seen[r]++) distinct = 0;
      } else {
        double std = 0.01 / sqrt((double)d);
        CHECK(dist > 0 && dist < d * 36 * std * std, "restart %lld is a row of x plus noise: %g",
              (long long)j, dist);
      }
    }
  }
  CHECK(distinct, "restarts pick distinct rows when N >= K");
  free(cv);
  jbx_release(x);
  jbx_release(k);
  jbx_release(ks);
  jbx_release(ke);
  jbx_release(ks0);
  jbx_release(ke0);
  jbx_release(codes);
}

static void test_metrics(void) {
  /* Uniform histogram: entropy log(K); every code used this batch. */
  int64_t kb = 16, d = 2, n = 64;
  jbx_tensor *x = randn2(n, d, 1.0f, 21), *k = randn2(kb, d, 1.0f, 22);
  jbx_tensor *ks = jbx_clone(k), *ke = jbx_full(1, &kb, 1.0f);
  int32_t cv[64];
  for (int i = 0; i < n; i++) cv[i] = i % 16;
  jbx_tensor *codes = ints1(n, cv);
  jbx_vq_metrics m;
  CHECK(jbx_vq_ema_update(k, ks, ke, x, codes, 0.99, 1.0, NULL, &m) == 0, "%s", jbx_last_error());
  CHECK_CLOSE(m.entropy, log(16.0), 1e-6);
  CHECK(m.used_curr == 16 && m.usage == 16, "used_curr %g usage %g", m.used_curr, m.usage);
  jbx_release(codes);
  /* A single code: entropy 0, used_curr 1, the rest restart (k_elem 0.99 < 1). */
  jbx_fill_(ke, 1.0f);
  for (int i = 0; i < n; i++) cv[i] = 3;
  codes = ints1(n, cv);
  jbx_rng rng;
  jbx_rng_seed(&rng, 1);
  CHECK(jbx_vq_ema_update(k, ks, ke, x, codes, 0.99, 1.0, &rng, &m) == 0, "%s", jbx_last_error());
  CHECK(fabs(m.entropy) < 1e-7, "entropy %g", m.entropy);
  CHECK(m.used_curr == 1 && m.usage == 1, "used_curr %g usage %g", m.used_curr, m.usage);
  /* used_curr counts codes hit at least `threshold` times. */
  for (int i = 0; i < n; i++) cv[i] = i < 3 ? 0 : 1 + i % 4;
  jbx_release(codes);
  codes = ints1(n, cv);
  CHECK(jbx_vq_ema_update(k, ks, ke, x, codes, 0.99, 4.0, &rng, &m) == 0, "%s", jbx_last_error());
  CHECK(m.used_curr == 4, "used_curr with threshold 4: %g", m.used_curr);
  jbx_release(codes);
  jbx_release(x);
  jbx_release(k);
  jbx_release(ks);
  jbx_release(ke);
}

static void test_init(void) {
  /* N >= K: distinct rows of x, k_sum = k, k_elem = 1. */
  int64_t kb = 16, d = 4, n = 50;
  jbx_tensor *x = randn2(n, d, 1.0f, 31), *k = jbx_zeros(2, (int64_t[]){kb, d});
  jbx_tensor *ks = jbx_zeros(2, (int64_t[]){kb, d}), *ke = jbx_zeros(1, &kb);
  jbx_rng rng;
  jbx_rng_seed(&rng, 3);
  CHECK(jbx_vq_init_from_data(k, ks, ke, x, &rng) == 0, "%s", jbx_last_error());
  int seen[50] = {0}, ok = 1;
  for (int64_t j = 0; j < kb; j++) {
    double dist;
    int64_t r = nearest_row(jbx_f32(x), n, d, jbx_f32(k) + j * d, &dist);
    ok &= dist == 0 && !seen[r]++;
    ok &= jbx_f32(ke)[j] == 1.0f;
  }
  CHECK(ok, "init picks distinct rows, k_elem = 1");
  CHECK(memcmp(jbx_f32(k), jbx_f32(ks), (size_t)(kb * d) * 4) == 0, "k_sum = k");
  jbx_release(x), jbx_release(k), jbx_release(ks), jbx_release(ke);

  /* N < K: the batch tiled 100 times (every copy used once) plus noise of std 0.01/sqrt(D). */
  n = 3, kb = 300;
  x = randn2(n, d, 1.0f, 32);
  k = jbx_zeros(2, (int64_t[]){kb, d});
  ks = jbx_zeros(2, (int64_t[]){kb, d});
  ke = jbx_zeros(1, &kb);
  CHECK(jbx_vq_init_from_data(k, ks, ke, x, &rng) == 0, "%s", jbx_last_error());
  int uses[3] = {0};
  double s2 = 0;
  for (int64_t j = 0; j < kb; j++) {
    double dist;
    uses[nearest_row(jbx_f32(x), n, d, jbx_f32(k) + j * d, &dist)]++;
    s2 += dist;
  }
  double std = sqrt(s2 / (double)(kb * d)), want = 0.01 / sqrt((double)d);
  CHECK(uses[0] == 100 && uses[1] == 100 && uses[2] == 100, "uses %d %d %d", uses[0], uses[1], uses[2]);
  CHECK(fabs(std - want) < 0.1 * want, "noise std %g, want %g", std, want);
  jbx_release(x), jbx_release(k), jbx_release(ks), jbx_release(ke);

  /* x may be the codebook itself (it is read from a private copy): a permutation of k. */
  kb = 16;
  k = randn2(kb, d, 1.0f, 33);
  jbx_tensor *k0 = jbx_clone(k);
  ks = jbx_zeros(2, (int64_t[]){kb, d});
  ke = jbx_zeros(1, &kb);
  CHECK(jbx_vq_init_from_data(k, ks, ke, k, &rng) == 0, "%s", jbx_last_error());
  int hit[16] = {0};
  ok = 1;
  for (int64_t j = 0; j < kb; j++) {
    double dist;
    int64_t r = nearest_row(jbx_f32(k0), kb, d, jbx_f32(k) + j * d, &dist);
    ok &= dist == 0 && !hit[r]++;
  }
  CHECK(ok, "init from the codebook itself permutes its rows");
  jbx_release(k0), jbx_release(k), jbx_release(ks), jbx_release(ke);
}

/* The same seed gives the same codebook; a saved rng state replays the same restarts. */
static void run_steps(jbx_rng *rng, int steps, jbx_tensor **k_out, jbx_rng *mid_state,
                      jbx_tensor **mid_k, jbx_tensor **mid_ks, jbx_tensor **mid_ke) {
  int64_t kb = 32, d = 4, n = 20;
  jbx_tensor *k = jbx_zeros(2, (int64_t[]){kb, d}), *ks = jbx_zeros(2, (int64_t[]){kb, d});
  jbx_tensor *ke = jbx_zeros(1, &kb);
  for (int s = 0; s < steps; s++) {
    jbx_tensor *x = randn2(n, d, 1.0f, 100 + (uint64_t)s), *codes;
    if (s == 0) jbx_vq_init_from_data(k, ks, ke, x, rng);
    if (s == steps / 2 && mid_state) {
      *mid_state = *rng;
      *mid_k = jbx_clone(k), *mid_ks = jbx_clone(ks), *mid_ke = jbx_clone(ke);
    }
    jbx_vq_assign(x, k, &codes, NULL);
    jbx_vq_ema_update(k, ks, ke, x, codes, 0.9, 1.0, rng, NULL);
    jbx_release(codes);
    jbx_release(x);
  }
  *k_out = k;
  jbx_release(ks);
  jbx_release(ke);
}

static void test_determinism(void) {
  jbx_rng a, b, mid;
  jbx_rng_seed(&a, 42);
  jbx_rng_seed(&b, 42);
  jbx_tensor *ka, *kb_, *mk, *mks, *mke;
  run_steps(&a, 6, &ka, &mid, &mk, &mks, &mke);
  run_steps(&b, 6, &kb_, NULL, NULL, NULL, NULL);
  CHECK(memcmp(jbx_f32(ka), jbx_f32(kb_), (size_t)jbx_numel(ka) * 4) == 0, "same seed, same codebook");
  /* Resume from the saved state at step 3 and replay steps 3..5. */
  for (int s = 3; s < 6; s++) {
    jbx_tensor *x = randn2(20, 4, 1.0f, 100 + (uint64_t)s), *codes;
    jbx_vq_assign(x, mk, &codes, NULL);
    jbx_vq_ema_update(mk, mks, mke, x, codes, 0.9, 1.0, &mid, NULL);
    jbx_release(codes);
    jbx_release(x);
  }
  CHECK(memcmp(jbx_f32(ka), jbx_f32(mk), (size_t)jbx_numel(ka) * 4) == 0, "resumed run is identical");
  CHECK(memcmp(&a, &mid, sizeof a) == 0, "and leaves the rng in the same state");
  jbx_rng c;
  jbx_rng_seed(&c, 43);
  jbx_tensor *kc;
  run_steps(&c, 6, &kc, NULL, NULL, NULL, NULL);
  CHECK(memcmp(jbx_f32(ka), jbx_f32(kc), (size_t)jbx_numel(ka) * 4) != 0, "another seed differs");
  jbx_release(ka), jbx_release(kb_), jbx_release(kc), jbx_release(mk), jbx_release(mks), jbx_release(mke);
}

static void test_errors(void) {
  jbx_tensor *x = randn2(10, 16, 1.0f, 1), *k = randn2(64, 8, 1.0f, 2), *k16 = randn2(64, 16, 1.0f, 3);
  jbx_tensor *codes = NULL, *md = NULL;
  CHECK(jbx_vq_assign(x, k, &codes, &md) < 0 && !codes && !md, "width mismatch fails");
  CHECK_ERROR_HAS("vq_assign: x [10, 16] and codebook k [64, 8] differ in width (16 vs 8)");
  jbx_tensor *x3 = jbx_zeros(3, (int64_t[]){2, 16, 5});
  CHECK(jbx_vq_assign(x3, k16, &codes, NULL) < 0, "3-D x fails");
  CHECK_ERROR_HAS("vq_assign: x must be float32 [N, D] (one encoder output per row), got [2, 16, 5]");
  jbx_tensor *xi = jbx_empty(JBX_I32, 2, (int64_t[]){10, 16});
  CHECK(jbx_vq_assign(xi, k16, &codes, NULL) < 0, "int32 x fails");
  CHECK_ERROR_HAS("got int32 [10, 16]");
  jbx_tensor *k0 = jbx_empty(JBX_F32, 2, (int64_t[]){0, 16}); /* jbx_zeros memsets NULL when empty */
  CHECK(jbx_vq_assign(x, k0, &codes, NULL) < 0, "empty codebook fails");
  CHECK_ERROR_HAS("vq_assign: codebook k must be float32 [K, D] with K, D >= 1, got [0, 16]");
  jbx_tensor *x0 = jbx_empty(JBX_F32, 2, (int64_t[]){0, 16});
  CHECK(jbx_vq_assign(x0, k16, &codes, NULL) < 0, "empty x fails");
  CHECK_ERROR_HAS("vq_assign: x [0, 16] has no rows");
  jbx_vq_result r;
  CHECK(jbx_vq_quantise(x, k, &r) < 0 && !r.codes, "quantise width mismatch");
  CHECK_ERROR_HAS("vq_quantise: x [10, 16] and codebook k [64, 8]");
  double pn;
  CHECK(jbx_vq_prenorm(xi, &pn) < 0, "prenorm of int32");
  CHECK_ERROR_HAS("vq_prenorm: x must be a non-empty float32 tensor, got int32 [10, 16]");

  /* Codes out of range, both ends; float codes. */
  jbx_tensor *bad = ints1(3, (int32_t[]){1, 63, 64}), *neg = ints1(2, (int32_t[]){0, -1});
  CHECK(jbx_vq_dequantise(k16, bad) == NULL, "code 64 of 64 fails");
  CHECK_ERROR_HAS("vq_dequantise: code 64 at position 2 is out of range for a codebook of 64 codes");
  CHECK(jbx_vq_dequantise(k16, neg) == NULL, "code -1 fails");
  CHECK_ERROR_HAS("code -1 at position 1 is out of range");
  jbx_tensor *fcodes = jbx_zeros(1, (int64_t[]){3});
  CHECK(jbx_vq_dequantise(k16, fcodes) == NULL, "float codes fail");
  CHECK_ERROR_HAS("vq_dequantise: codes must be int32, got float32 [3]");

  /* EMA update: nothing changes on any error. */
  int64_t kb = 64;
  jbx_tensor *ks = jbx_clone(k16), *ke = jbx_full(1, &kb, 1.0f), *k_copy = jbx_clone(k16);
  int32_t cv[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 64};
  jbx_tensor *c10 = ints1(10, cv), *c9 = ints1(9, cv);
  CHECK(jbx_vq_ema_update(k16, ks, ke, x, c10, 0.99, 1.0, NULL, NULL) < 0, "code 64 fails");
  CHECK_ERROR_HAS("vq_ema_update: code 64 at position 9 is out of range for a codebook of 64 codes");
  CHECK(memcmp(jbx_f32(k16), jbx_f32(k_copy), 64 * 16 * 4) == 0 && jbx_f32(ke)[0] == 1.0f,
        "a failed update leaves the state alone");
  CHECK(jbx_vq_ema_update(k16, ks, ke, x, c9, 0.99, 1.0, NULL, NULL) < 0, "9 codes for 10 rows");
  CHECK_ERROR_HAS("vq_ema_update: 9 codes [9] for the 10 rows of x [10, 16]: one code per row expected");
  cv[9] = 9;
  jbx_release(c10);
  c10 = ints1(10, cv);
  CHECK(jbx_vq_ema_update(k16, ks, ke, x, c10, 1.5, 1.0, NULL, NULL) < 0, "mu 1.5");
  CHECK_ERROR_HAS("vq_ema_update: mu must be in [0, 1], got 1.5");
  CHECK(jbx_vq_ema_update(k16, ks, ke, x, c10, 0.99, NAN, NULL, NULL) < 0, "threshold nan");
  CHECK_ERROR_HAS("vq_ema_update: threshold must be finite and >= 0");
  CHECK(jbx_vq_ema_update(k16, k, ke, x, c10, 0.99, 1.0, NULL, NULL) < 0, "k_sum shape");
  CHECK_ERROR_HAS("vq_ema_update: k_sum [64, 8] must be float32 with the shape of k [64, 16]");
  jbx_tensor *ke_bad = jbx_full(1, (int64_t[]){63}, 1.0f);
  CHECK(jbx_vq_ema_update(k16, ks, ke_bad, x, c10, 0.99, 1.0, NULL, NULL) < 0, "k_elem shape");
  CHECK_ERROR_HAS("vq_ema_update: k_elem [63] must be float32 [64], one count per code of k [64, 16]");
  CHECK(jbx_vq_ema_update(k16, k16, ke, x, c10, 0.99, 1.0, NULL, NULL) < 0, "aliased state");
  CHECK_ERROR_HAS("vq_ema_update: k, k_sum and k_elem must not share storage");
  jbx_tensor *kt_base = randn2(16, 64, 1.0f, 4), *kt = jbx_transpose(kt_base, 0, 1);
  CHECK(jbx_vq_ema_update(kt, ks, ke, x, c10, 0.99, 1.0, NULL, NULL) < 0, "strided k");
  CHECK_ERROR_HAS("vq_ema_update: k, k_sum and k_elem must be contiguous (they are updated in place)");
  CHECK(jbx_vq_ema_update(k16, ks, ke, x3, c10, 0.99, 1.0, NULL, NULL) < 0, "3-D x");
  CHECK_ERROR_HAS("vq_ema_update: x must be float32 [N, D]");
  CHECK(jbx_vq_ema_update(k16, ks, ke, x, fcodes, 0.99, 1.0, NULL, NULL) < 0, "float codes");
  CHECK_ERROR_HAS("vq_ema_update: codes must be int32");
  CHECK(jbx_vq_init_from_data(k, ks, ke, x, NULL) < 0, "init: k_sum shape");
  CHECK_ERROR_HAS("vq_init: k_sum [64, 16] must be float32 with the shape of k [64, 8]");
  jbx_tensor *ks8 = jbx_clone(k);
  CHECK(jbx_vq_init_from_data(k, ks8, ke, x, NULL) < 0, "init: width");
  CHECK_ERROR_HAS("vq_init: x [10, 16] and codebook k [64, 8] differ in width (16 vs 8)");
  CHECK(memcmp(jbx_f32(k16), jbx_f32(k_copy), 64 * 16 * 4) == 0, "state untouched after errors");

  jbx_release(x), jbx_release(k), jbx_release(k16), jbx_release(x3), jbx_release(xi);
  jbx_release(k0), jbx_release(x0), jbx_release(bad), jbx_release(neg), jbx_release(fcodes);
  jbx_release(ks), jbx_release(ke), jbx_release(k_copy), jbx_release(c10), jbx_release(c9);
  jbx_release(ke_bad), jbx_release(kt), jbx_release(kt_base), jbx_release(ks8);
}

static double max_abs_diff(const jbx_tensor *a, const jbx_tensor *b) {
  double w = 0;
  for (int64_t i = 0, n = jbx_numel(a); i < n; i++) w = fmax(w, fabs(jbx_get(a, i) - jbx_get(b, i)));
  return w;
}

static void test_fixture(void) {
  fixture *fx = fixture_load("tests/fixtures/vq.fix");
  CHECK(fx != NULL, "fixture loads");
  if (!fx) return;
  jbx_tensor *x = fixture_get(fx, "x"), *k0 = fixture_get(fx, "k"), *params = fixture_get(fx, "params");
  jbx_tensor *want_codes = fixture_get(fx, "codes"), *metrics = fixture_get(fx, "metrics");
  double mu = jbx_get(params, 0), thr = jbx_get(params, 1);
  jbx_tensor *k = jbx_clone(k0), *ks = jbx_clone(fixture_get(fx, "k_sum"));
  jbx_tensor *ke = jbx_clone(fixture_get(fx, "k_elem"));
  jbx_tensor *codes, *md;
  CHECK(jbx_vq_assign(x, k, &codes, &md) == 0, "%s", jbx_last_error());
  int64_t n = x->shape[0], same = 0;
  for (int64_t i = 0; i < n; i++) same += jbx_i32(codes)[i] == jbx_i32(want_codes)[i];
  CHECK(same == n, "codes: %lld of %lld agree with PyTorch", (long long)same, (long long)n);
  CHECK(max_abs_diff(md, fixture_get(fx, "min_dist")) < 1e-4, "min_dist off by %g",
        max_abs_diff(md, fixture_get(fx, "min_dist")));
  jbx_vq_result r;
  CHECK(jbx_vq_quantise(x, k, &r) == 0, "%s", jbx_last_error());
  jbx_tensor *xd = jbx_vq_dequantise(k, codes);
  CHECK(max_abs_diff(xd, fixture_get(fx, "x_d")) == 0, "dequantised rows equal");
  CHECK(max_abs_diff(r.x_q, fixture_get(fx, "x_q")) < 1e-6, "x_q off by %g",
        max_abs_diff(r.x_q, fixture_get(fx, "x_q")));
  CHECK_CLOSE(jbx_get(r.commit, 0), jbx_get(fixture_get(fx, "commit"), 0), 1e-5);
  CHECK_CLOSE(r.fit, jbx_get(fixture_get(fx, "fit"), 0), 1e-5);

  jbx_vq_metrics m;
  jbx_rng rng;
  jbx_rng_seed(&rng, 0);
  CHECK(jbx_vq_ema_update(k, ks, ke, x, codes, mu, thr, &rng, &m) == 0, "%s", jbx_last_error());
  CHECK(max_abs_diff(k, fixture_get(fx, "new_k")) < 1e-5, "new k off by %g", max_abs_diff(k, fixture_get(fx, "new_k")));
  CHECK(max_abs_diff(ks, fixture_get(fx, "new_k_sum")) < 1e-4, "new k_sum off by %g",
        max_abs_diff(ks, fixture_get(fx, "new_k_sum")));
  CHECK(max_abs_diff(ke, fixture_get(fx, "new_k_elem")) < 1e-4, "new k_elem off by %g",
        max_abs_diff(ke, fixture_get(fx, "new_k_elem")));
  CHECK(m.usage == jbx_get(metrics, 0), "usage %g vs %g", m.usage, jbx_get(metrics, 0));
  CHECK(m.used_curr == jbx_get(metrics, 1), "used_curr %g vs %g", m.used_curr, jbx_get(metrics, 1));
  CHECK_CLOSE(m.entropy, jbx_get(metrics, 2), 1e-5);
  CHECK_CLOSE(m.dk, jbx_get(metrics, 3), 1e-4);
  CHECK_CLOSE(m.fit, jbx_get(fixture_get(fx, "fit"), 0), 1e-5);
  CHECK_CLOSE(m.pn, jbx_get(fixture_get(fx, "pn"), 0), 1e-5);
  jbx_vq_result_free(&r);
  jbx_release(xd), jbx_release(codes), jbx_release(md);
  jbx_release(k), jbx_release(ks), jbx_release(ke);
  fixture_free(fx);
}

/* restart = false: no code is replaced by a row of x and the rng is untouched. Codes below
 * the threshold take k_sum / k_elem like the live ones, a code with k_elem 0 keeps its k
 * (no 0/0), and the metrics are those of the same step with restarts. */
static void test_no_restart(void) {
  int64_t kb = 8, d = 3, n = 20;
  jbx_tensor *x = randn2(n, d, 1.0f, 61), *k = randn2(kb, d, 1.0f, 62);
  jbx_tensor *ks = jbx_clone(k);
  jbx_tensor *ke = floats1(kb, (float[]){10, 10, 0.1f, 0.1f, 0.5f, 0.1f, 5, 0});
  /* k_sum = k_elem * k for the dead codes, as an EMA leaves it; code 7 has none. */
  for (int64_t j = 0; j < kb; j++)
    for (int64_t c = 0; c < d; c++) jbx_f32(ks)[j * d + c] = jbx_f32(k)[j * d + c] * jbx_f32(ke)[j];
  int32_t cv[20];
  for (int64_t i = 0; i < n; i++) cv[i] = (int32_t)(i % 2);
  jbx_tensor *codes = ints1(n, cv), *k0 = jbx_clone(k);
  jbx_tensor *kr = jbx_clone(k), *ksr = jbx_clone(ks), *ker = jbx_clone(ke);
  jbx_rng rng, before, rr;
  jbx_rng_seed(&rng, 7);
  before = rng;
  rr = rng;
  jbx_vq_metrics m, mr;
  CHECK(jbx_vq_ema_update_ex(k, ks, ke, x, codes, 0.9, 1.0, false, &rng, &m) == 0, "%s", jbx_last_error());
  CHECK(memcmp(&rng, &before, sizeof rng) == 0, "restart=false draws nothing from the rng");
  int restarted = 0, finite = 1;
  for (int64_t j = 0; j < kb; j++) {
    const float *kj = jbx_f32(k) + j * d, *k0j = jbx_f32(k0) + j * d;
    for (int64_t c = 0; c < d; c++) {
      if (!isfinite(kj[c])) finite = 0;
      if (j == 7) CHECK(kj[c] == k0j[c], "code 7 (k_elem 0) keeps k");
      else CHECK_CLOSE(kj[c], jbx_f32(ks)[j * d + c] / jbx_f32(ke)[j], 1e-6);
      /* An unhit code's k_sum / k_elem is its old k: both decayed by mu. */
      if (j >= 2) CHECK_CLOSE(kj[c], k0j[c], 1e-5);
    }
    double dist;
    nearest_row(jbx_f32(x), n, d, kj, &dist);
    if (j >= 2 && dist == 0) restarted++;
  }
  CHECK(finite, "no NaN or inf in k");
  CHECK(restarted == 0, "no code became a row of x: %d did", restarted);
  /* The same step with restarts: equal state except the restarted k, equal metrics. */
  CHECK(jbx_vq_ema_update_ex(kr, ksr, ker, x, codes, 0.9, 1.0, true, &rr, &mr) == 0, "%s", jbx_last_error());
  CHECK(memcmp(&rr, &before, sizeof rr) != 0, "restart=true draws from the rng");
  for (int64_t i = 0; i < kb * d; i++) CHECK(jbx_f32(ksr)[i] == jbx_f32(ks)[i], "k_sum agrees");
  for (int64_t j = 0; j < kb; j++) CHECK(jbx_f32(ker)[j] == jbx_f32(ke)[j], "k_elem agrees");
  CHECK(m.usage == 3 && mr.usage == 3, "usage %g / %g (codes 0, 1, 6)", m.usage, mr.usage);
  CHECK(m.used_curr == mr.used_curr && m.entropy == mr.entropy && m.fit == mr.fit && m.pn == mr.pn,
        "metrics other than dk agree");
  CHECK(m.dk < mr.dk, "restarts move the codebook more: dk %g vs %g", m.dk, mr.dk);
  /* jbx_vq_ema_update is the restarting variant. */
  jbx_tensor *ka = jbx_clone(k0), *ksa = jbx_clone(k0), *kea = floats1(kb, (float[]){10, 10, 0.1f, 0.1f, 0.5f, 0.1f, 5, 0});
  jbx_tensor *kb2 = jbx_clone(ka), *ksb = jbx_clone(ksa), *keb = jbx_clone(kea);
  jbx_rng ra, rb;
  jbx_rng_seed(&ra, 3);
  rb = ra;
  CHECK(jbx_vq_ema_update(ka, ksa, kea, x, codes, 0.9, 1.0, &ra, NULL) == 0, "%s", jbx_last_error());
  CHECK(jbx_vq_ema_update_ex(kb2, ksb, keb, x, codes, 0.9, 1.0, true, &rb, NULL) == 0, "%s", jbx_last_error());
  CHECK(max_abs_diff(ka, kb2) == 0 && memcmp(&ra, &rb, sizeof ra) == 0, "update == update_ex(restart=true)");
  jbx_tensor *all[] = {x, k, ks, ke, codes, k0, kr, ksr, ker, ka, ksa, kea, kb2, ksb, keb};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) jbx_release(all[i]);
}

int main(void) {
  test_assign();
  test_dequantise();
  test_quantise();
  test_ema_hand();
  check_restarts(5, 41);  /* N < K: tiled with noise */
  check_restarts(20, 43); /* N >= K: exact rows */
  test_no_restart();
  test_metrics();
  test_init();
  test_determinism();
  test_errors();
  test_fixture();
  return check_summary();
}
