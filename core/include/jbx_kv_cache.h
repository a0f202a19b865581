/* The key/value cache of one attention layer for incremental (sampling) forwards, and
 * the attention of new positions against it. See core/ops/kv_cache.c for what each
 * attn_func keeps and why. */
#ifndef JBX_KV_CACHE_H
#define JBX_KV_CACHE_H
#include <stdint.h>

typedef struct jbx_kv_cache {
  int attn_func;            /* jbx_attn_func: 0-3 (6 and 7 are refused until lyrics) */
  int64_t B, H, d;          /* batch, heads, head width */
  int64_t n_ctx, block_ctx; /* block_ctx: 0 for dense */
  int64_t cap;              /* rows kept per (batch, head): jbx_kv_cache_rows */
  int64_t len;              /* positions appended since the last reset */
  int64_t max_n;            /* most positions per jbx_kv_cache_attend call */
  float *k, *v;             /* [B, H, cap, d] each */
} jbx_kv_cache;

/* Rows per (batch, head) the cache of attn_func needs, or -1 with a message naming
 * `op` (attn_func 4-7 and unknown ones, a block type without a block_ctx that divides
 * n_ctx). */
int64_t jbx_kv_cache_rows(const char *op, int attn_func, int64_t n_ctx, int64_t block_ctx);

/* Allocates the cache for a run: B samples, H heads of width d, positions < n_ctx, up to
 * max_n positions per attend call. 0 or -1 (the message names op); on failure c is left
 * freed. */
int jbx_kv_cache_init(jbx_kv_cache *c, const char *op, int attn_func, int64_t B, int64_t H,
                      int64_t d, int64_t n_ctx, int64_t block_ctx, int64_t max_n);
void jbx_kv_cache_free(jbx_kv_cache *c);
void jbx_kv_cache_reset(jbx_kv_cache *c); /* empty: the next position is 0 */

/* The work floats jbx_kv_cache_attend needs per thread (any layer of head width d). */
size_t jbx_kv_cache_scratch_floats(int64_t d, int64_t max_n);

/* Positions len .. len + n - 1 (n <= max_n, len + n <= n_ctx): qkv holds their
 * projections as rows [B, n, 3 H d] (query, key, value, heads split within each, the
 * reference's chunk(3) then split_heads), row stride ld_qkv floats. Appends their keys
 * and values, writes the attention outputs (heads merged) to o, rows [B, n, H d] with
 * row stride ld_o, and advances len. scratch: nthreads times
 * jbx_kv_cache_scratch_floats(d, max_n) floats; at most nthreads threads run. The values
 * of jbx_attention over the whole sequence at those rows (to float rounding); the same
 * bits for any thread count. 0, or -1 when n does not fit (message names op). */
int jbx_kv_cache_attend(jbx_kv_cache *c, const char *op, const float *qkv, int64_t ld_qkv,
                        int64_t n, float *o, int64_t ld_o, float *scratch, int nthreads);

#endif
