/* sampler (core/sampler.c) on a small random prior whose layers use every cached
 * attn_func (1, 2, 3, 0): chunked priming gives the logits of priming one token at a
 * time, for chunk sizes that straddle block boundaries, with x_cond and y_cond; the codes
 * of a seed are the same twice and on 1 and 2 threads; sampling with top_k = 1 follows
 * the argmax of the stepped logits; the filters (top-k with ties, top-p's boundary) and
 * the draw on known logits; Ctrl-C stops before a token with the state consistent; every
 * error a caller can reach; batch 1's own kernels against the chunked sgemm path, and their
 * bits on 1 and 2 threads. Values against the Lua Prior:forward are tests/lua/test_sampler.lua. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "check.h"
#include "jbx_error.h"
#include "jbx_interrupt.h"
#include "jbx_ops.h"
#include "jbx_rng.h"
#include "jbx_sampler.h"
#include "jbx_tensor.h"

enum { B = 2, NCTX = 16, W = 16, S = 8, M = 16, HEADS = 2, BINS = 11, BC = 4, DEPTH = 4 };

static jbx_rng rng;

static jbx_tensor *rnd(int64_t d0, int64_t d1, float scale) {
  int64_t shape[2] = {d0, d1};
  jbx_tensor *t = jbx_randn(d1 < 0 ? 1 : 2, shape, &rng);
  float *v = jbx_f32(t);
  for (int64_t i = 0; i < jbx_numel(t); i++) v[i] *= scale;
  return t;
}

typedef struct {
  jbx_prior_layer layers[DEPTH];
  jbx_prior_desc d;
} prior;

static void make_prior(prior *p, bool labelled, bool conditioned) {
  const int funcs[DEPTH] = {1, 2, 3, 0};
  for (int l = 0; l < DEPTH; l++) {
    jbx_prior_layer *L = &p->layers[l];
    L->attn_func = funcs[l];
    L->ln_0_w = rnd(W, -1, 0.1f), L->ln_0_b = rnd(W, -1, 0.1f);
    L->c_attn_w = rnd(W, 3 * S, 0.3f), L->c_attn_b = rnd(3 * S, -1, 0.1f);
    L->c_proj_w = rnd(S, W, 0.3f), L->c_proj_b = rnd(W, -1, 0.1f);
    L->ln_1_w = rnd(W, -1, 0.1f), L->ln_1_b = rnd(W, -1, 0.1f);
    L->c_fc_w = rnd(W, M, 0.3f), L->c_fc_b = rnd(M, -1, 0.1f);
    L->mlp_proj_w = rnd(M, W, 0.3f), L->mlp_proj_b = rnd(W, -1, 0.1f);
    float *w0 = jbx_f32(L->ln_0_w), *w1 = jbx_f32(L->ln_1_w);
    for (int i = 0; i < W; i++) w0[i] += 1.0f, w1[i] += 1.0f;
  }
  jbx_tensor *x_emb = rnd(BINS, W, 0.2f);
  p->d = (jbx_prior_desc){.bins = BINS, .width = W, .n_ctx = NCTX, .heads = HEADS,
                          .block_ctx = BC, .depth = DEPTH, .layers = p->layers,
                          .res_scale = 1.0f, .ln_eps = 1e-5f, .x_emb = x_emb,
                          .out_w = jbx_retain(x_emb), .pos_emb = rnd(NCTX, W, 0.5f),
                          .start_token = labelled ? NULL : rnd(1, W, 0.5f),
                          .x_cond = conditioned, .cond_after = conditioned};
}

static void free_prior(prior *p) {
  for (int l = 0; l < DEPTH; l++) {
    jbx_prior_layer *L = &p->layers[l];
    jbx_tensor *all[] = {L->ln_0_w, L->ln_0_b, L->c_attn_w, L->c_attn_b, L->c_proj_w, L->c_proj_b,
                         L->ln_1_w, L->ln_1_b, L->c_fc_w, L->c_fc_b, L->mlp_proj_w, L->mlp_proj_b};
    for (int i = 0; i < 12; i++) jbx_release(all[i]);
  }
  jbx_release(p->d.x_emb);
  jbx_release(p->d.out_w);
  jbx_release(p->d.pos_emb);
  jbx_release(p->d.start_token);
}

static jbx_tensor *codes_of(int64_t n, uint64_t seed) {
  jbx_rng r;
  jbx_rng_seed(&r, seed);
  int64_t shape[2] = {B, n};
  jbx_tensor *t = jbx_empty(JBX_I32, 2, shape);
  for (int64_t i = 0; i < B * n; i++) jbx_i32(t)[i] = (int32_t)jbx_rng_below(&r, BINS);
  return t;
}

/* Logits [B, NCTX, BINS] of priming all of codes in calls of `call` tokens on a sampler
 * with chunk_size `chunk`. */
static jbx_tensor *primed(const prior *p, jbx_tensor *codes, int64_t chunk, int64_t call,
                          jbx_tensor *xc, jbx_tensor *yc) {
  jbx_sampler *s = jbx_sampler_new(&p->d, B, chunk, 1);
  if (!s || jbx_sampler_set_conditioning(s, xc, yc) < 0) return NULL;
  int64_t shape[3] = {B, NCTX, BINS};
  jbx_tensor *all = jbx_zeros(3, shape);
  for (int64_t c0 = 0; c0 < NCTX; c0 += call) {
    int64_t n = NCTX - c0 < call ? NCTX - c0 : call;
    jbx_tensor *view = jbx_narrow(codes, 1, c0, n), *part = jbx_contiguous(view);
    jbx_release(view);
    int64_t ls[3] = {B, n, BINS};
    jbx_tensor *lg = jbx_empty(JBX_F32, 3, ls);
    CHECK(jbx_sampler_prime(s, part, lg) == 0, "%s", jbx_last_error());
    for (int64_t b = 0; b < B; b++)
      memcpy(jbx_f32(all) + (b * NCTX + c0) * BINS, jbx_f32(lg) + b * n * BINS, sizeof(float) * n * BINS);
    jbx_release(part);
    jbx_release(lg);
  }
  CHECK(jbx_sampler_position(s) == NCTX, "position %lld", (long long)jbx_sampler_position(s));
  jbx_sampler_free(s);
  return all;
}

/* max |a - b| relative to the scale of b (its largest magnitude, at least 1). */
static double max_diff(const jbx_tensor *a, const jbx_tensor *b) {
  double e = 0, scale = 1;
  for (int64_t i = 0; i < jbx_numel(a); i++) {
    e = fmax(e, fabs(jbx_f32(a)[i] - jbx_f32(b)[i]));
    scale = fmax(scale, fabs(jbx_f32(b)[i]));
  }
  return e / scale;
}

static void test_chunking(bool labelled, bool conditioned) {
  prior p;
  make_prior(&p, labelled, conditioned);
  jbx_tensor *codes = codes_of(NCTX, 3);
  jbx_tensor *xc = NULL, *yc = NULL;
  if (conditioned) {
    int64_t s3[3] = {B, NCTX, W};
    xc = jbx_randn(3, s3, &rng);
  }
  if (labelled) {
    int64_t s3[3] = {B, 1, W};
    yc = jbx_randn(3, s3, &rng);
  }
  jbx_tensor *one = primed(&p, codes, 1, 1, xc, yc);
  const int64_t cases[][2] = {{NCTX, NCTX}, {5, NCTX}, {3, 7}, {BC, BC}, {16, 5}};
  for (int c = 0; c < 5; c++) {
    jbx_tensor *got = primed(&p, codes, cases[c][0], cases[c][1], xc, yc);
    double e = max_diff(got, one);
    CHECK(e <= 1e-6, "labelled %d conditioned %d chunk %lld call %lld: max relative diff %g", labelled,
          conditioned, (long long)cases[c][0], (long long)cases[c][1], e);
    jbx_release(got);
  }
  jbx_release(one);
  jbx_release(codes);
  jbx_release(xc);
  jbx_release(yc);
  free_prior(&p);
}

/* Codes of sampling NCTX - 3 tokens after priming 3, with o. */
static jbx_tensor *sampled(const prior *p, uint64_t seed, const jbx_sample_opts *o) {
  jbx_sampler *s = jbx_sampler_new(&p->d, B, 4, seed);
  jbx_tensor *prime = codes_of(3, 9);
  CHECK(jbx_sampler_prime(s, prime, NULL) == 0, "%s", jbx_last_error());
  int64_t shape[2] = {B, NCTX - 3};
  jbx_tensor *out = jbx_empty(JBX_I32, 2, shape);
  int64_t done = -1;
  CHECK(jbx_sampler_sample(s, NCTX - 3, o, out, &done) == 0 && done == NCTX - 3, "%s", jbx_last_error());
  jbx_release(prime);
  jbx_sampler_free(s);
  return out;
}

static void test_sampling(void) {
  prior p;
  make_prior(&p, false, false);
  jbx_sample_opts o = {.temp = 1.0};
  omp_set_num_threads(1);
  jbx_tensor *a = sampled(&p, 42, &o);
  omp_set_num_threads(2);
  jbx_tensor *b = sampled(&p, 42, &o), *c = sampled(&p, 42, &o), *d = sampled(&p, 43, &o);
  const size_t bytes = sizeof(int32_t) * B * (NCTX - 3);
  CHECK(memcmp(jbx_i32(a), jbx_i32(b), bytes) == 0, "1 and 2 threads give the same codes");
  CHECK(memcmp(jbx_i32(b), jbx_i32(c), bytes) == 0, "a seed gives the same codes twice");
  CHECK(memcmp(jbx_i32(b), jbx_i32(d), bytes) != 0, "another seed, other codes");
  int distinct = 0, seen[BINS] = {0};
  for (int i = 0; i < B * (NCTX - 3); i++) distinct += !seen[jbx_i32(b)[i]]++;
  CHECK(distinct >= 3, "temp 1 draws varied codes (%d distinct)", distinct);
  jbx_release(a), jbx_release(b), jbx_release(c), jbx_release(d);

  /* top_k = 1: each token is the argmax of the logits a stepped twin gives there */
  jbx_sample_opts greedy = {.temp = 0.7, .top_k = 1};
  jbx_tensor *g = sampled(&p, 1, &greedy);
  jbx_sample_opts tiny_p = {.temp = 1.0, .top_p = 1e-9};
  jbx_tensor *g2 = sampled(&p, 99, &tiny_p);
  CHECK(memcmp(jbx_i32(g), jbx_i32(g2), sizeof(int32_t) * B * (NCTX - 3)) == 0, "top_p tiny is argmax too");
  jbx_sampler *twin = jbx_sampler_new(&p.d, B, 4, 0);
  jbx_tensor *prime = codes_of(3, 9);
  jbx_sampler_prime(twin, prime, NULL);
  int64_t cs[2] = {B, 1}, ls[3] = {B, 1, BINS};
  jbx_tensor *col = jbx_empty(JBX_I32, 2, cs), *lg = jbx_empty(JBX_F32, 3, ls);
  int bad = 0;
  for (int t = 0; t < NCTX - 3; t++) {
    for (int bb = 0; bb < B; bb++) jbx_i32(col)[bb] = jbx_i32(g)[bb * (NCTX - 3) + t];
    jbx_sampler_prime(twin, col, lg);
    for (int bb = 0; bb < B; bb++) {
      const float *z = jbx_f32(lg) + bb * BINS;
      int best = 0;
      for (int j = 1; j < BINS; j++) best = z[j] > z[best] ? j : best;
      bad += best != jbx_i32(col)[bb];
    }
  }
  CHECK(bad == 0, "top_k 1 follows the argmax (%d misses)", bad);
  jbx_release(g), jbx_release(g2), jbx_release(col), jbx_release(lg), jbx_release(prime);
  jbx_sampler_free(twin);
  free_prior(&p);
}

static void test_filters(void) {
  float work[8];
  int32_t order[16];
  /* top-k keeps ties with the k-th */
  float z[6] = {1.0f, 3.0f, 2.0f, 2.0f, -1.0f, 0.5f};
  jbx_logits_filter(z, 6, 2, 0.0, work, order);
  CHECK(z[1] == 3.0f && z[2] == 2.0f && z[3] == 2.0f && isinf(z[0]) && isinf(z[4]) && isinf(z[5]),
        "top_k 2 keeps 3 and both 2s");
  float z1[6] = {1.0f, 3.0f, 2.0f, 2.0f, -1.0f, 0.5f};
  jbx_logits_filter(z1, 6, 1, 0.0, work, order);
  int kept = 0;
  for (int j = 0; j < 6; j++) kept += !isinf(z1[j]);
  CHECK(kept == 1 && z1[1] == 3.0f, "top_k 1 keeps the max only");
  float z2[3] = {3.0f, 2.0f, 1.0f};
  jbx_logits_filter(z2, 3, 10, 0.0, work, order);
  CHECK(!isinf(z2[0]) && !isinf(z2[1]) && !isinf(z2[2]), "top_k >= bins keeps all");
  /* top-p: probabilities 0.5, 0.3, 0.2 (in scrambled order): 0.6 keeps 0.5 and 0.3 */
  float p3[3] = {logf(0.2f), logf(0.5f), logf(0.3f)};
  jbx_logits_filter(p3, 3, 0, 0.6, work, order);
  CHECK(isinf(p3[0]) && !isinf(p3[1]) && !isinf(p3[2]), "top_p 0.6 keeps 0.5 and 0.3");
  float p4[3] = {logf(0.2f), logf(0.5f), logf(0.3f)};
  jbx_logits_filter(p4, 3, 0, 0.4, work, order);
  CHECK(isinf(p4[0]) && !isinf(p4[1]) && isinf(p4[2]), "top_p 0.4 keeps the top only");
  float p5[3] = {logf(0.2f), logf(0.5f), logf(0.3f)};
  jbx_logits_filter(p5, 3, 0, 0.85, work, order);
  CHECK(!isinf(p5[0]) && !isinf(p5[1]) && !isinf(p5[2]), "top_p 0.85 keeps all three");
  /* the draw: inverse CDF in index order over 0.2 / 0.5 / 0.3 */
  float q[3] = {logf(0.2f), logf(0.5f), logf(0.3f)};
  CHECK(jbx_logits_draw(q, 3, 0.0, work) == 0 && jbx_logits_draw(q, 3, 0.19, work) == 0, "u < 0.2 -> 0");
  CHECK(jbx_logits_draw(q, 3, 0.21, work) == 1 && jbx_logits_draw(q, 3, 0.69, work) == 1, "u in (0.2, 0.7) -> 1");
  CHECK(jbx_logits_draw(q, 3, 0.71, work) == 2 && jbx_logits_draw(q, 3, 0.999999, work) == 2, "u > 0.7 -> 2");
  float f[3] = {-INFINITY, 1.0f, -INFINITY};
  CHECK(jbx_logits_draw(f, 3, 0.0, work) == 1 && jbx_logits_draw(f, 3, 0.99, work) == 1, "only the kept one");
  /* options */
  jbx_sample_opts o = {.temp = 0.0};
  CHECK(jbx_sample_opts_check("s", &o) < 0, "temp 0");
  CHECK_ERROR_HAS("s: temp must be > 0, got 0 (for greedy decoding use top_k = 1)");
  o = (jbx_sample_opts){.temp = 1.0, .top_k = 5, .top_p = 0.9};
  CHECK(jbx_sample_opts_check("s", &o) < 0, "both filters");
  CHECK_ERROR_HAS("s: top_k (5) and top_p (0.9) cannot both be set");
  o = (jbx_sample_opts){.temp = 1.0, .top_p = 1.5};
  CHECK(jbx_sample_opts_check("s", &o) < 0, "top_p > 1");
  CHECK_ERROR_HAS("s: top_p must be in [0, 1], got 1.5");
  o = (jbx_sample_opts){.temp = 1.0, .top_k = -1};
  CHECK(jbx_sample_opts_check("s", &o) < 0, "top_k < 0");
  CHECK_ERROR_HAS("s: top_k must be >= 0, got -1");
}

static void test_errors_and_interrupt(void) {
  prior p;
  make_prior(&p, true, true);
  jbx_sampler *s = jbx_sampler_new(&p.d, B, 4, 0);
  CHECK(s != NULL, "%s", jbx_last_error());
  jbx_tensor *codes = codes_of(4, 1);
  CHECK(jbx_sampler_prime(s, codes, NULL) < 0, "x_cond needed");
  CHECK_ERROR_HAS("sampler: this prior is conditioned per position: set_conditioning with x_cond [2, T, 16] first");
  int64_t s3[3] = {B, 6, W}, y3[3] = {B, 1, W}, bad3[3] = {3, 1, W};
  jbx_tensor *xc = jbx_randn(3, s3, &rng), *yc = jbx_randn(3, y3, &rng), *ybad = jbx_randn(3, bad3, &rng);
  CHECK(jbx_sampler_set_conditioning(s, xc, ybad) < 0, "y_cond batch 3");
  CHECK_ERROR_HAS("sampler: y_cond is float32 [3, 1, 16], expected float32 [2, 1, 16]");
  CHECK(jbx_sampler_set_conditioning(s, ybad, NULL) < 0, "x_cond wrong width... batch");
  CHECK_ERROR_HAS("sampler: x_cond is float32 [3, 1, 16], expected float32 [2, T, 16]");
  CHECK(jbx_sampler_set_conditioning(s, xc, NULL) == 0, "%s", jbx_last_error());
  CHECK(jbx_sampler_prime(s, codes, NULL) < 0, "y_cond needed at 0");
  CHECK_ERROR_HAS("sampler: this prior starts from its labels: set_conditioning with y_cond [2, 1, 16] first");
  CHECK(jbx_sampler_set_conditioning(s, xc, yc) == 0, "%s", jbx_last_error());
  jbx_i32(codes)[5] = BINS;
  CHECK(jbx_sampler_prime(s, codes, NULL) < 0, "code out of range");
  CHECK_ERROR_HAS("sampler: code 11 at [1, 1] is out of range [0, 11) (bins)");
  CHECK(jbx_sampler_position(s) == 0, "nothing fed");
  jbx_i32(codes)[5] = 0;
  jbx_tensor *wrong = codes_of(4, 1);
  wrong->shape[0] = 1; /* [1, 4]: the wrong batch */
  CHECK(jbx_sampler_prime(s, wrong, NULL) < 0, "batch 1");
  CHECK_ERROR_HAS("sampler: codes are int32 [1, 4], expected int32 [2, n] with n >= 1");
  wrong->shape[0] = 2;
  CHECK(jbx_sampler_prime(s, codes, NULL) == 0, "%s", jbx_last_error());
  int64_t os[2] = {B, 3};
  jbx_tensor *out = jbx_empty(JBX_I32, 2, os);
  jbx_sample_opts o = {.temp = 1.0};
  CHECK(jbx_sampler_sample(s, 3, &o, out, NULL) < 0, "x_cond of 6 positions");
  CHECK_ERROR_HAS("sampler: x_cond covers positions 0 to 5, position 6 needs a longer one");
  /* Ctrl-C: stops before the first token, nothing fed */
  jbx_interrupt_raise();
  int64_t done = -1;
  jbx_tensor *out2 = jbx_empty(JBX_I32, 2, (int64_t[]){B, 2});
  CHECK(jbx_sampler_sample(s, 2, &o, out2, &done) == JBX_SAMPLER_INTERRUPTED && done == 0, "interrupted");
  CHECK_ERROR_HAS("sampler: stopped by Ctrl-C at position 4 (sample: 0 of 2 tokens drawn)");
  CHECK(!jbx_interrupt_pending(), "the request was taken");
  CHECK(jbx_sampler_position(s) == 4, "position unchanged");
  CHECK(jbx_sampler_sample(s, 2, &o, out2, &done) == 0 && done == 2, "then it goes on: %s", jbx_last_error());
  CHECK(jbx_sampler_position(s) == 6, "position 6");
  jbx_interrupt_raise();
  jbx_tensor *c2 = codes_of(2, 5);
  jbx_sampler_reset(s);
  CHECK(jbx_sampler_prime(s, c2, NULL) == JBX_SAMPLER_INTERRUPTED, "prime interrupted");
  CHECK_ERROR_HAS("sampler: stopped by Ctrl-C at position 0 (prime: 0 of 2 tokens fed)");
  /* past n_ctx */
  jbx_sampler_reset(s);
  jbx_tensor *full = jbx_randn(3, (int64_t[]){B, NCTX, W}, &rng);
  jbx_sampler_set_conditioning(s, full, yc);
  jbx_tensor *many = codes_of(NCTX, 2);
  CHECK(jbx_sampler_prime(s, many, NULL) == 0, "%s", jbx_last_error());
  jbx_tensor *one = jbx_empty(JBX_I32, 2, (int64_t[]){B, 1});
  CHECK(jbx_sampler_sample(s, 1, &o, one, NULL) < 0, "past n_ctx");
  CHECK_ERROR_HAS("sampler: positions 16 to 16 exceed n_ctx 16 (reset for a new window)");
  jbx_release(one);
  jbx_release(many), jbx_release(full), jbx_release(c2), jbx_release(out2), jbx_release(out);
  jbx_release(wrong), jbx_release(codes), jbx_release(xc), jbx_release(yc), jbx_release(ybad);
  jbx_sampler_free(s);
  /* bad weights */
  jbx_tensor *keep = p.layers[2].c_proj_w;
  p.layers[2].c_proj_w = rnd(S, W + 1, 1.0f);
  CHECK(jbx_sampler_new(&p.d, B, 4, 0) == NULL, "a wrong shape");
  CHECK_ERROR_HAS("sampler: layer 2 c_proj.w is float32 [8, 17], expected float32 [8, 16]");
  jbx_release(p.layers[2].c_proj_w);
  p.layers[2].c_proj_w = keep;
  p.layers[1].attn_func = 6;
  CHECK(jbx_sampler_new(&p.d, B, 4, 0) == NULL, "attn_func 6");
  CHECK_ERROR_HAS("sampler: layer 1: attn_func 6 (encoder-decoder, lyrics) has no KV cache yet");
  p.layers[1].attn_func = 2;
  CHECK(jbx_sampler_new(&p.d, 0, 4, 0) == NULL, "batch 0");
  CHECK_ERROR_HAS("sampler: batch (0) and chunk_size (4) must be >= 1");
  free_prior(&p);
}

/* Batch 1 takes its own Linear and output kernels (linear_one, logits_one in sampler.c):
 * on a prior wide enough for several tasks of GEMV_ROWS rows, with row counts that are
 * not multiples of 4 (W 198, S 70, M 134) and a width not a multiple of 8, stepping one
 * token at a time (those kernels) gives the logits of priming the window in one chunk
 * (sgemm), and the same bits on 1 and 2 threads. */
enum { WW = 198, WS = 70, WM = 134, WBINS = 150, WN = 12, WBC = 4, WDEPTH = 2 };

static jbx_tensor *wide_logits(const jbx_prior_desc *d, jbx_tensor *codes, int64_t call) {
  jbx_sampler *s = jbx_sampler_new(d, 1, call, 1);
  int64_t shape[3] = {1, WN, WBINS};
  jbx_tensor *all = jbx_zeros(3, shape);
  for (int64_t c0 = 0; s && c0 < WN; c0 += call) {
    jbx_tensor *view = jbx_narrow(codes, 1, c0, call), *part = jbx_contiguous(view);
    int64_t ls[3] = {1, call, WBINS};
    jbx_tensor *lg = jbx_empty(JBX_F32, 3, ls);
    CHECK(jbx_sampler_prime(s, part, lg) == 0, "%s", jbx_last_error());
    memcpy(jbx_f32(all) + c0 * WBINS, jbx_f32(lg), sizeof(float) * call * WBINS);
    jbx_release(view);
    jbx_release(part);
    jbx_release(lg);
  }
  jbx_sampler_free(s);
  return all;
}

static void test_batch_one_kernels(void) {
  jbx_prior_layer layers[WDEPTH];
  for (int l = 0; l < WDEPTH; l++) {
    jbx_prior_layer *L = &layers[l];
    L->attn_func = l == 0 ? 2 : 0;
    L->ln_0_w = rnd(WW, -1, 0.1f), L->ln_0_b = rnd(WW, -1, 0.1f);
    L->c_attn_w = rnd(WW, 3 * WS, 0.1f), L->c_attn_b = rnd(3 * WS, -1, 0.1f);
    L->c_proj_w = rnd(WS, WW, 0.1f), L->c_proj_b = rnd(WW, -1, 0.1f);
    L->ln_1_w = rnd(WW, -1, 0.1f), L->ln_1_b = rnd(WW, -1, 0.1f);
    L->c_fc_w = rnd(WW, WM, 0.1f), L->c_fc_b = rnd(WM, -1, 0.1f);
    L->mlp_proj_w = rnd(WM, WW, 0.1f), L->mlp_proj_b = rnd(WW, -1, 0.1f);
    for (int i = 0; i < WW; i++) jbx_f32(L->ln_0_w)[i] += 1.0f, jbx_f32(L->ln_1_w)[i] += 1.0f;
  }
  jbx_tensor *x_emb = rnd(WBINS, WW, 0.2f);
  const jbx_prior_desc d = {.bins = WBINS, .width = WW, .n_ctx = WN, .heads = 2, .block_ctx = WBC,
                            .depth = WDEPTH, .layers = layers, .res_scale = 1.0f, .ln_eps = 1e-5f,
                            .x_emb = x_emb, .out_w = x_emb, .pos_emb = rnd(WN, WW, 0.5f),
                            .start_token = rnd(1, WW, 0.5f)};
  jbx_rng r;
  jbx_rng_seed(&r, 4);
  int64_t shape[2] = {1, WN};
  jbx_tensor *codes = jbx_empty(JBX_I32, 2, shape);
  for (int64_t i = 0; i < WN; i++) jbx_i32(codes)[i] = (int32_t)jbx_rng_below(&r, WBINS);
  const int threads = omp_get_max_threads();
  jbx_tensor *chunk = wide_logits(&d, codes, WN);
  omp_set_num_threads(1);
  jbx_tensor *one = wide_logits(&d, codes, 1);
  omp_set_num_threads(2);
  jbx_tensor *two = wide_logits(&d, codes, 1);
  omp_set_num_threads(threads);
  const double e = max_diff(one, chunk);
  CHECK(e <= 1e-5, "batch 1 stepped vs one chunk: max relative diff %g", e);
  CHECK(memcmp(jbx_f32(one), jbx_f32(two), sizeof(float) * WN * WBINS) == 0,
        "batch 1 stepped: the same bits on 1 and 2 threads");
  jbx_release(chunk), jbx_release(one), jbx_release(two), jbx_release(codes);
  for (int l = 0; l < WDEPTH; l++)
    for (int i = 0; i < 12; i++) {
      jbx_prior_layer *L = &layers[l];
      jbx_tensor *all[] = {L->ln_0_w, L->ln_0_b, L->c_attn_w, L->c_attn_b, L->c_proj_w, L->c_proj_b,
                           L->ln_1_w, L->ln_1_b, L->c_fc_w, L->c_fc_b, L->mlp_proj_w, L->mlp_proj_b};
      jbx_release(all[i]);
    }
  jbx_release(x_emb), jbx_release(d.pos_emb), jbx_release(d.start_token);
}

int main(void) {
  jbx_rng_seed(&rng, 11);
  test_chunking(false, false);
  test_chunking(true, true);
  test_sampling();
  test_filters();
  test_errors_and_interrupt();
  test_batch_one_kernels();
  return check_summary();
}
