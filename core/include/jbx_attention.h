/* Jukebox's factorised self-attention as one fused, differentiable op over q, k, v
 * [batch, heads, T, d] (the heads already split), with the reference's scaling (q and k
 * each times d^-1/4, so the scores are q.k / sqrt(d)) and softmax in float32. The
 * sequence is viewed as [T / block_ctx, block_ctx] for the block patterns, as
 * jukebox/transformer/factored_attention.py does in training. No pattern builds a T x T
 * matrix: see the top of core/ops/attention.c for what each one holds. */
#ifndef JBX_ATTENTION_H
#define JBX_ATTENTION_H
#include <stdbool.h>
#include <stddef.h>
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

/* ---- The raw kernels, in core/ops/kernels.h's style (declared here because kernels.h
 * is not this room's file; they may move there): one group of query rows attending to
 * one group of key rows, flash style (key tiles, online softmax, never an nq x nk
 * matrix), for the KV-cached sampler to reuse. A group is a strided matrix of rows: row
 * i of q starts at q + i * ldq (gq uses ldq too; k and gk ldk, v and gv ldv, o and go
 * ldo); lse[i * lse_stride] is row i's log-sum-exp of its scaled scores. With causal,
 * key j is visible to query i iff j <= i + offset (0 in training; nk - nq for queries
 * that follow a cache of keys); a row that sees no key gets 0 and lse -inf. scratch
 * holds jbx_attn_scratch_floats(d) floats, one per thread. They cannot fail. ---- */
typedef struct jbx_attn_group {
  int64_t nq, nk, d;
  int64_t ldq, ldk, ldv, ldo, lse_stride;
  bool causal;
  int64_t offset;
  float scale; /* 1 / sqrt(d): the reference's d^-1/4 on q and on k */
} jbx_attn_group;
size_t jbx_attn_scratch_floats(int64_t d);
/* Rows [i0, i0 + n) of o and lse. */
void jbx_attn_forward_rows(const jbx_attn_group *g, const float *q, const float *k, const float *v,
                           float *o, float *lse, int64_t i0, int64_t n, float *scratch);
/* The gradients from query rows [i0, i0 + n), given the forward's o and lse, ADDED into
 * gq (those rows), gk and gv (the keys they see); NULL: not wanted. The scores are
 * recomputed tile by tile. Rows 0..nq is the whole group. */
void jbx_attn_backward_rows(const jbx_attn_group *g, const float *q, const float *k,
                            const float *v, const float *o, const float *go, const float *lse,
                            int64_t i0, int64_t n, float *gq, float *gk, float *gv,
                            float *scratch);

#endif
