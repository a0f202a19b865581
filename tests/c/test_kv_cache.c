/* kv_cache: the cached attention of new positions (core/ops/kv_cache.c) against the
 * training op jbx_attention over the whole sequence, for every attn_func with a cache
 * (0-3), fed one position at a time, in chunks that straddle block boundaries, and in
 * one call; the same bits on 1 and 2 threads; the rows each type keeps; errors (4-7,
 * a missing block_ctx, positions past n_ctx, a chunk larger than the cache was made for). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "check.h"
#include "jbx_attention.h"
#include "jbx_error.h"
#include "jbx_kv_cache.h"
#include "jbx_rng.h"
#include "jbx_tensor.h"

enum { B = 2, H = 2, T = 24, D = 8, BC = 4, S = H * D };

/* qkv rows [B, T, 3S] from q, k, v [B, H, T, D]. */
static void pack(const float *q, const float *k, const float *v, float *qkv) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int h = 0; h < H; h++)
        for (int c = 0; c < D; c++) {
          const size_t src = (((size_t)b * H + h) * T + t) * D + c;
          float *row = qkv + ((size_t)b * T + t) * 3 * S + h * D + c;
          row[0] = q[src], row[S] = k[src], row[2 * S] = v[src];
        }
}

/* Feeds the whole sequence in calls of `chunk` positions; out rows [B, T, S]. The
 * qkv rows of one call are copied to a [B, n, 3S] buffer, as the sampler lays them. */
static float *scratch; /* 2 threads' worth for chunks up to T */

static int feed(jbx_kv_cache *c, const float *qkv, int chunk, float *out) {
  float *buf = malloc(sizeof(float) * B * chunk * 3 * S), *o = malloc(sizeof(float) * B * chunk * S);
  int rc = 0;
  for (int p = 0; p < T && rc == 0; p += chunk) {
    const int n = T - p < chunk ? T - p : chunk;
    for (int b = 0; b < B; b++)
      for (int i = 0; i < n; i++)
        memcpy(buf + ((size_t)b * n + i) * 3 * S, qkv + ((size_t)b * T + p + i) * 3 * S, sizeof(float) * 3 * S);
    rc = jbx_kv_cache_attend(c, "test", buf, 3 * S, n, o, S, scratch, 2);
    for (int b = 0; b < B; b++)
      for (int i = 0; i < n; i++)
        memcpy(out + ((size_t)b * T + p + i) * S, o + ((size_t)b * n + i) * S, sizeof(float) * S);
  }
  free(buf);
  free(o);
  return rc;
}

int main(void) {
  jbx_rng rng;
  jbx_rng_seed(&rng, 7);
  const int64_t shape[4] = {B, H, T, D};
  jbx_tensor *q = jbx_randn(4, shape, &rng), *k = jbx_randn(4, shape, &rng), *v = jbx_randn(4, shape, &rng);
  float *qkv = malloc(sizeof(float) * B * T * 3 * S), *got = malloc(sizeof(float) * B * T * S);
  float *first = malloc(sizeof(float) * B * T * S);
  pack(jbx_f32(q), jbx_f32(k), jbx_f32(v), qkv);
  scratch = malloc(sizeof(float) * 2 * jbx_kv_cache_scratch_floats(D, T));
  const int64_t want_rows[4] = {T, BC, T, 2 * BC};
  const int chunks[] = {1, 3, BC, 5, T};
  for (int func = 0; func <= 3; func++) {
    jbx_attn_opts o = {.attn_func = func, .block_ctx = BC};
    jbx_tensor *ref = jbx_attention(q, k, v, &o);
    const float *r = jbx_f32(ref);
    CHECK(jbx_kv_cache_rows("t", func, T, BC) == want_rows[func], "func %d keeps %lld rows", func,
          (long long)jbx_kv_cache_rows("t", func, T, BC));
    for (int ci = 0; ci < 5; ci++) {
      for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        jbx_kv_cache c;
        CHECK(jbx_kv_cache_init(&c, "test", func, B, H, D, T, BC, chunks[ci]) == 0, "%s", jbx_last_error());
        CHECK(feed(&c, qkv, chunks[ci], got) == 0, "%s", jbx_last_error());
        double err = 0;
        for (int b = 0; b < B; b++)
          for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
              for (int e = 0; e < D; e++) {
                double x = got[((size_t)b * T + t) * S + h * D + e];
                double y = r[(((size_t)b * H + h) * T + t) * D + e];
                err = fmax(err, fabs(x - y));
              }
        CHECK(err <= 2e-6, "func %d chunk %d threads %d: max error %g", func, chunks[ci], threads, err);
        if (threads == 1) memcpy(first, got, sizeof(float) * B * T * S);
        else CHECK(memcmp(first, got, sizeof(float) * B * T * S) == 0, "func %d chunk %d: 1 and 2 threads differ", func, chunks[ci]);
        /* a reset cache gives the same again */
        jbx_kv_cache_reset(&c);
        CHECK(c.len == 0, "reset empties");
        CHECK(feed(&c, qkv, chunks[ci], got) == 0 && memcmp(first, got, sizeof(float) * B * T * S) == 0,
              "func %d: after reset the same", func);
        /* past n_ctx */
        CHECK(jbx_kv_cache_attend(&c, "test", qkv, 3 * S, 1, got, S, scratch, 2) < 0, "full cache refuses");
        CHECK_ERROR_HAS("test: positions 24 to 24 exceed n_ctx 24");
        jbx_kv_cache_free(&c);
      }
    }
    jbx_release(ref);
  }
  /* one query over more keys than one tile of the direct path (1024): dense, T = 1100 */
  {
    enum { LT = 1100, LD = 4 };
    const int64_t ls[4] = {1, 1, LT, LD};
    jbx_tensor *lq = jbx_randn(4, ls, &rng), *lk = jbx_randn(4, ls, &rng), *lv = jbx_randn(4, ls, &rng);
    jbx_attn_opts o = {.attn_func = 0};
    jbx_tensor *ref = jbx_attention(lq, lk, lv, &o);
    jbx_kv_cache lc;
    float *lscr = malloc(sizeof(float) * jbx_kv_cache_scratch_floats(LD, 1)), row[3 * LD], out[LD];
    CHECK(jbx_kv_cache_init(&lc, "test", 0, 1, 1, LD, LT, 0, 1) == 0, "%s", jbx_last_error());
    double err = 0;
    for (int t = 0; t < LT; t++) {
      for (int e = 0; e < LD; e++)
        row[e] = jbx_f32(lq)[t * LD + e], row[LD + e] = jbx_f32(lk)[t * LD + e], row[2 * LD + e] = jbx_f32(lv)[t * LD + e];
      jbx_kv_cache_attend(&lc, "test", row, 3 * LD, 1, out, LD, lscr, 1);
      for (int e = 0; e < LD; e++) err = fmax(err, fabs(out[e] - jbx_f32(ref)[t * LD + e]));
    }
    CHECK(err <= 2e-6, "one query over 1100 keys: max error %g", err);
    jbx_kv_cache_free(&lc);
    free(lscr);
    jbx_release(lq), jbx_release(lk), jbx_release(lv), jbx_release(ref);
  }
  omp_set_num_threads(2);
  jbx_kv_cache c;
  CHECK(jbx_kv_cache_init(&c, "test", 0, B, H, D, T, 0, 2) == 0, "dense needs no block_ctx");
  CHECK(jbx_kv_cache_attend(&c, "test", qkv, 3 * S, 3, got, S, scratch, 2) < 0, "chunk too big");
  CHECK_ERROR_HAS("test: 3 positions at once; the cache was made for 1 to 2");
  jbx_kv_cache_free(&c);
  CHECK(jbx_kv_cache_init(&c, "test", 6, B, H, D, T, BC, 1) < 0, "6 refused");
  CHECK_ERROR_HAS("attn_func 6 (encoder-decoder, lyrics) has no KV cache yet");
  CHECK(jbx_kv_cache_init(&c, "test", 7, B, H, D, T, BC, 1) < 0, "7 refused");
  CHECK_ERROR_HAS("attn_func 7 (prime, lyrics) has no KV cache yet");
  CHECK(jbx_kv_cache_init(&c, "test", 4, B, H, D, T, BC, 1) < 0, "4 refused");
  CHECK_ERROR_HAS("attn_func 4 (summary) has no KV cache");
  CHECK(jbx_kv_cache_init(&c, "test", 9, B, H, D, T, BC, 1) < 0, "9 refused");
  CHECK_ERROR_HAS("unknown attn_func 9");
  CHECK(jbx_kv_cache_init(&c, "test", 1, B, H, D, T, 5, 1) < 0, "5 does not divide 24");
  CHECK_ERROR_HAS("attn_func 1 needs a block_ctx dividing n_ctx 24, got 5");
  CHECK(jbx_kv_cache_init(&c, "test", 0, 0, H, D, T, 0, 1) < 0, "batch 0");
  CHECK_ERROR_HAS("batch 0");
  jbx_release(q);
  jbx_release(k);
  jbx_release(v);
  free(qkv);
  free(got);
  free(first);
  free(scratch);
  return check_summary();
}
