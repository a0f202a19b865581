/* The KV cache of one attention layer (jbx_kv_cache.h): what each attn_func keeps, and
 * the attention of new positions against it, for sampling one token (or a chunk of
 * primed tokens) at a time with the training op's semantics (core/ops/attention.c).
 *
 * What a query at position t sees decides what must be kept (rows per (batch, head)):
 *   0 dense:            every key s <= t                 -> all n_ctx positions, row = s
 *   1 block ("row"):    keys of t's block, s <= t         -> block_ctx rows: the current
 *                       block only (row = s mod block_ctx); a new block overwrites the
 *                       last one, which no later query sees
 *   2 transposed block: keys s = t (mod block_ctx), s <= t -> all n_ctx positions
 *                       (row = s): every residue class is revisited to the window's end
 *   3 previous block:   the whole previous block, no mask -> 2 block_ctx rows, a ring of
 *                       two blocks (block b in half b mod 2): queries of block b read
 *                       block b-1 while block b is being written. Block 0 sees the
 *                       reference's zero block: output exactly 0, as in training.
 *   4, 5 (summary) are not implemented; 6 (encoder-decoder: keys and values of the
 *   lyric encoder, computed once per window) and 7 (prime: the first prime_len positions
 *   rounded up to a block) come with lyrics: each will add a case to jbx_kv_cache_rows
 *   and to the group walk of attend_segment; both refuse them with a clear message now.
 * This is the reference's cache trimmed to _suff_cache_len, without its copies: the
 * reference keeps a growing tensor and slices it; here the rows are preallocated for the
 * run (batch, n_ctx) and written in place.
 *
 * attend: the new positions' keys and values are written, then each query attends to
 * its visible rows through the training op's flash kernel (jbx_attn_forward_rows) on
 * strided views: no copies of q, of the cache or of the output. A group of one query
 * (every sampling step) takes a direct path with the same maths (attend_one): at one
 * query the kernel's sgemm calls per key tile cost more in overhead than in flops. A call is cut into
 * segments at block boundaries for the block types (a segment's queries all see the
 * same block, and a block is written before its queries read it and only overwritten
 * after the last of them). Groups (batch, head, and for the transposed block the
 * residue class) run in parallel with OpenMP, each on one thread: the same bits for any
 * thread count. Nothing is allocated per call: the caller passes per-thread scratch,
 * shared by all its layers. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "fast_math.h"
#include "jbx_attention.h"
#include "jbx_error.h"
#include "jbx_kv_cache.h"
#include "kernels.h"

int64_t jbx_kv_cache_rows(const char *op, int attn_func, int64_t n_ctx, int64_t block_ctx) {
  if (n_ctx < 1) return jbx_fail("%s: n_ctx must be >= 1, got %lld", op, (long long)n_ctx);
  switch (attn_func) {
  case JBX_ATTN_DENSE: return n_ctx;
  case JBX_ATTN_BLOCK: case JBX_ATTN_TRANSPOSE_BLOCK: case JBX_ATTN_PREV_BLOCK:
    if (block_ctx < 1 || n_ctx % block_ctx != 0)
      return jbx_fail("%s: attn_func %d needs a block_ctx dividing n_ctx %lld, got %lld", op,
                      attn_func, (long long)n_ctx, (long long)block_ctx);
    return attn_func == JBX_ATTN_BLOCK ? block_ctx
           : attn_func == JBX_ATTN_PREV_BLOCK ? 2 * block_ctx : n_ctx;
  case JBX_ATTN_SUMMARY: case JBX_ATTN_SUMMARY_SPREAD:
    return jbx_fail("%s: attn_func %d (summary) has no KV cache: not implemented", op, attn_func);
  case JBX_ATTN_ENC_DEC:
    return jbx_fail("%s: attn_func 6 (encoder-decoder, lyrics) has no KV cache yet", op);
  case JBX_ATTN_PRIME:
    return jbx_fail("%s: attn_func 7 (prime, lyrics) has no KV cache yet", op);
  default:
    return jbx_fail("%s: unknown attn_func %d (0 dense, 1 block, 2 transposed block, 3 "
                    "previous block)", op, attn_func);
  }
}

void jbx_kv_cache_free(jbx_kv_cache *c) {
  free(c->k);
  free(c->v);
  memset(c, 0, sizeof *c);
}

#define ONE_TILE 1024 /* keys per tile of the one-query path */

size_t jbx_kv_cache_scratch_floats(int64_t d, int64_t max_n) {
  const size_t flash = jbx_attn_scratch_floats(d), one = (size_t)(ONE_TILE + d);
  return (flash > one ? flash : one) + (size_t)max_n;
}

int jbx_kv_cache_init(jbx_kv_cache *c, const char *op, int attn_func, int64_t B, int64_t H,
                      int64_t d, int64_t n_ctx, int64_t block_ctx, int64_t max_n) {
  memset(c, 0, sizeof *c);
  const int64_t cap = jbx_kv_cache_rows(op, attn_func, n_ctx, block_ctx);
  if (cap < 0) return -1;
  if (B < 1 || H < 1 || d < 1 || max_n < 1)
    return jbx_fail("%s: batch %lld, heads %lld, head width %lld and chunk %lld must be >= 1", op,
                    (long long)B, (long long)H, (long long)d, (long long)max_n);
  *c = (jbx_kv_cache){.attn_func = attn_func, .B = B, .H = H, .d = d, .n_ctx = n_ctx,
                      .block_ctx = attn_func == JBX_ATTN_DENSE ? 0 : block_ctx, .cap = cap,
                      .max_n = max_n};
  const size_t n = (size_t)B * (size_t)H * (size_t)cap * (size_t)d;
  c->k = malloc(n * sizeof(float));
  c->v = malloc(n * sizeof(float));
  if (!c->k || !c->v) {
    jbx_kv_cache_free(c);
    return jbx_fail("%s: out of memory for a KV cache of %zu floats", op, 2 * n);
  }
  return 0;
}

void jbx_kv_cache_reset(jbx_kv_cache *c) { c->len = 0; }

/* The cache row of position p. */
static int64_t slot(const jbx_kv_cache *c, int64_t p) {
  switch (c->attn_func) {
  case JBX_ATTN_BLOCK: return p % c->block_ctx;
  case JBX_ATTN_PREV_BLOCK: return (p / c->block_ctx) % 2 * c->block_ctx + p % c->block_ctx;
  default: return p;
  }
}

/* Groups of the segment [s, e) (positions; the call's first is p0). */
static int64_t groups_of(const jbx_kv_cache *c, int64_t s, int64_t e) {
  const int64_t per = c->attn_func == JBX_ATTN_TRANSPOSE_BLOCK
                          ? (e - s < c->block_ctx ? e - s : c->block_ctx) : 1;
  return c->B * c->H * per;
}

/* One query row over the visible rows of k and v (the sampling step): the flash
 * kernel's maths (scaled scores, max-subtracted exp, online over tiles of ONE_TILE keys)
 * with plain dot products instead of an sgemm call per key tile, whose call overhead
 * dominates at one query. */
static void attend_one(const jbx_attn_group *g, const float *q, const float *k, const float *v,
                       float *o, float *scr) {
  const int64_t d = g->d;
  int64_t lim = g->causal ? g->offset + 1 : g->nk;
  if (lim > g->nk) lim = g->nk;
  float *s = scr, *acc = scr + ONE_TILE, m = -INFINITY, l = 0.0f;
  for (int64_t c = 0; c < d; c++) acc[c] = 0.0f;
  for (int64_t b0 = 0; b0 < lim; b0 += ONE_TILE) {
    const int64_t nt = lim - b0 < ONE_TILE ? lim - b0 : ONE_TILE;
    float mx = m;
    for (int64_t j = 0; j < nt; j++) {
      const float *kr = k + (b0 + j) * g->ldk;
      float t = 0.0f;
      for (int64_t c = 0; c < d; c++) t += q[c] * kr[c];
      s[j] = t * g->scale;
      mx = s[j] > mx ? s[j] : mx;
    }
    if (mx != m) {
      const float corr = m == -INFINITY ? 0.0f : jbx_fast_expf(m - mx);
      l *= corr;
      for (int64_t c = 0; c < d; c++) acc[c] *= corr;
      m = mx;
    }
    for (int64_t j = 0; j < nt; j++) {
      const float p = jbx_fast_expf(s[j] - m);
      const float *vr = v + (b0 + j) * g->ldv;
      l += p;
      for (int64_t c = 0; c < d; c++) acc[c] += p * vr[c];
    }
  }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int64_t c = 0; c < d; c++) o[c] = acc[c] * inv;
}

static void attend_group(const jbx_kv_cache *c, int64_t gi, int64_t s, int64_t e, int64_t p0,
                         int64_t n, const float *qkv, int64_t ld, float *o, int64_t ld_o,
                         float *scr) {
  const int64_t d = c->d, bc = c->block_ctx;
  int64_t per = 1, r = 0;
  if (c->attn_func == JBX_ATTN_TRANSPOSE_BLOCK) per = e - s < bc ? e - s : bc, r = gi % per;
  const int64_t bh = gi / per, b = bh / c->H, h = bh % c->H;
  const float *kc = c->k + bh * c->cap * d, *vc = c->v + bh * c->cap * d;
  jbx_attn_group g = {.d = d, .ldq = ld, .ldk = d, .ldv = d, .ldo = ld_o, .lse_stride = 1,
                      .causal = true, .offset = 0, .scale = (float)(1.0 / sqrt((double)d))};
  int64_t first = s; /* the group's first query position */
  switch (c->attn_func) {
  case JBX_ATTN_DENSE: g.nq = e - s, g.nk = e, g.offset = s; break;
  case JBX_ATTN_BLOCK: {
    const int64_t start = s / bc * bc;
    g.nq = e - s, g.nk = e - start, g.offset = s - start;
    break;
  }
  case JBX_ATTN_TRANSPOSE_BLOCK: {
    first = s + r;
    const int64_t col = first / bc;
    g.nq = (e - 1 - first) / bc + 1, g.nk = col + g.nq, g.offset = col;
    g.ldq = bc * ld, g.ldo = bc * ld_o, g.ldk = g.ldv = bc * d;
    kc += first % bc * d, vc += first % bc * d;
    break;
  }
  default: { /* JBX_ATTN_PREV_BLOCK */
    const int64_t blk = s / bc;
    g.nq = e - s, g.nk = bc, g.causal = false;
    if (blk == 0) { /* the zero block: uniform weights over zero values */
      for (int64_t i = 0; i < g.nq; i++)
        memset(o + (b * n + s - p0 + i) * ld_o + h * d, 0, (size_t)d * sizeof(float));
      return;
    }
    kc += (blk - 1) % 2 * bc * d, vc += (blk - 1) % 2 * bc * d;
    break;
  }
  }
  const float *q = qkv + (b * n + first - p0) * ld + h * d;
  float *out = o + (b * n + first - p0) * ld_o + h * d;
  if (g.nq == 1) {
    attend_one(&g, q, kc, vc, out, scr);
    return;
  }
  float *lse = scr + jbx_attn_scratch_floats(d);
  jbx_attn_forward_rows(&g, q, kc, vc, out, lse, 0, g.nq, scr);
}

int jbx_kv_cache_attend(jbx_kv_cache *c, const char *op, const float *qkv, int64_t ld_qkv,
                        int64_t n, float *o, int64_t ld_o, float *scratch, int nthreads) {
  if (n < 1 || n > c->max_n)
    return jbx_fail("%s: %lld positions at once; the cache was made for 1 to %lld", op,
                    (long long)n, (long long)c->max_n);
  if (c->len + n > c->n_ctx)
    return jbx_fail("%s: positions %lld to %lld exceed n_ctx %lld", op, (long long)c->len,
                    (long long)(c->len + n - 1), (long long)c->n_ctx);
  const int64_t p0 = c->len, d = c->d, S = c->H * d, bc = c->block_ctx;
  const size_t per = jbx_kv_cache_scratch_floats(d, c->max_n);
  const bool blocked = c->attn_func == JBX_ATTN_BLOCK || c->attn_func == JBX_ATTN_PREV_BLOCK;
  for (int64_t s = p0; s < p0 + n;) {
    int64_t e = p0 + n;
    if (blocked && e > (s / bc + 1) * bc) e = (s / bc + 1) * bc;
    for (int64_t b = 0; b < c->B; b++)
      for (int64_t p = s; p < e; p++) {
        const float *row = qkv + (b * n + p - p0) * ld_qkv;
        for (int64_t h = 0; h < c->H; h++) {
          const size_t at = (size_t)(((b * c->H + h) * c->cap + slot(c, p)) * d);
          memcpy(c->k + at, row + S + h * d, (size_t)d * sizeof(float));
          memcpy(c->v + at, row + 2 * S + h * d, (size_t)d * sizeof(float));
        }
      }
    const int64_t ng = groups_of(c, s, e);
    int nth = omp_get_max_threads();
    if (nth > nthreads) nth = nthreads;
    if (nth > ng) nth = (int)ng;
    if (nth < 1) nth = 1;
#pragma omp parallel for num_threads(nth) schedule(static) if (nth > 1)
    for (int64_t gi = 0; gi < ng; gi++)
      attend_group(c, gi, s, e, p0, n, qkv, ld_qkv, o, ld_o,
                   scratch + (size_t)omp_get_thread_num() * per);
    s = e;
  }
  c->len += n;
  return 0;
}
