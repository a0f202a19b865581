/* Jukebox's factorised self-attention as one fused, differentiable op over q, k, v
 * [batch, heads, T, d] (the heads already split), with the reference's scaling (q and k
 * each times d^-1/4, so the scores are q.k / sqrt(d)) and softmax in float32. The
 * sequence is viewed as [T / block_ctx, block_ctx] for the block patterns, as
 * jukebox/transformer/factored_attention.py does in training. No pattern builds a T x T
 * matrix: see the top of core/ops/attention.c for what each one holds. Its raw kernels,
 * for the KV-cached sampler, are in core/ops/kernels.h. */
#ifndef JBX_ATTENTION_H
#define JBX_ATTENTION_H
#include <stdint.h>

#include "jbx_tensor.h"

/* The reference's attn_func numbers. 4 to 7 are reserved: summary (4) and summary-spread
 * (5) are not used by any released config; encoder-decoder (6, keys and values from the
 * lyric encoder) and prime (7, the first prime_len positions rounded up to a block) join
 * with lyrics, and will need more fields in jbx_attn_opts (encoder keys, prime_len). */
typedef enum {
  JBX_ATTN_DENSE = 0,           /* key s <= t */
  JBX_ATTN_BLOCK = 1,           /* "row": s in t's block, s <= t */
  JBX_ATTN_TRANSPOSE_BLOCK = 2, /* "column": s = t (mod block_ctx), s <= t */
  JBX_ATTN_PREV_BLOCK = 3,      /* the whole previous block (zeros for block 0), no mask */
  JBX_ATTN_SUMMARY = 4,         /* reserved, not implemented */
  JBX_ATTN_SUMMARY_SPREAD = 5,  /* reserved, not implemented */
  JBX_ATTN_ENC_DEC = 6,         /* reserved: encoder-decoder, with lyrics */
  JBX_ATTN_PRIME = 7,           /* reserved: prime attention, with lyrics */
} jbx_attn_func;

typedef struct jbx_attn_opts {
  int attn_func;     /* jbx_attn_func */
  int64_t block_ctx; /* n_ctx / blocks; T must be a multiple of it for patterns 1-3 */
} jbx_attn_opts;

/* q, k, v float32 [B, H, T, d] of one shape, any strides; o NULL means dense. Returns out
 * [B, H, T, d], recorded for the backward when an input wants a gradient, or NULL with a
 * one-line message naming attention and the shapes. */
jbx_tensor *jbx_attention(jbx_tensor *q, jbx_tensor *k, jbx_tensor *v, const jbx_attn_opts *o);

#endif
