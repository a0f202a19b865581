/* The incremental forward of a prior (the reference's ConditionalAutoregressive2D with
 * sample=True) over per-layer KV caches, and the per-token sampling loop, in C. See
 * core/sampler.c for the design. The weights are described by tensors the caller owns;
 * the sampler retains them (contiguous) for its life, so they stay alive. */
#ifndef JBX_SAMPLER_H
#define JBX_SAMPLER_H
#include <stdbool.h>
#include <stdint.h>

#include "jbx_tensor.h"

/* One ResAttnBlock: Linear weights [n_in, n_out] (the reference's Conv1D layout),
 * biases [n_out], layer norm weight and bias [width]. */
typedef struct jbx_prior_layer {
  int attn_func; /* 0-3 (jbx_attn_func) */
  jbx_tensor *ln_0_w, *ln_0_b;
  jbx_tensor *c_attn_w, *c_attn_b; /* [W, 3 S], [3 S]: query, key, value */
  jbx_tensor *c_proj_w, *c_proj_b; /* [S, W], [W] */
  jbx_tensor *ln_1_w, *ln_1_b;
  jbx_tensor *c_fc_w, *c_fc_b;     /* [W, M], [M] */
  jbx_tensor *mlp_proj_w, *mlp_proj_b; /* [M, W], [W] */
} jbx_prior_layer;

typedef struct jbx_prior_desc {
  int64_t bins, width, n_ctx, heads;
  int64_t block_ctx; /* n_ctx / blocks; 0 when every layer is dense */
  int depth;
  const jbx_prior_layer *layers; /* depth of them */
  float res_scale;               /* 1: h = x + a + m; else h = x + res_scale (a + m) */
  float ln_eps;                  /* the layer norms' eps (1e-5) */
  jbx_tensor *x_emb;             /* [bins, W] */
  jbx_tensor *out_w;             /* [bins, W]: x_out's weight, or x_emb when tied */
  jbx_tensor *pos_emb;           /* [n_ctx, W] */
  jbx_tensor *start_token;       /* [1, W]; NULL: the start comes from y_cond (labels) */
  bool x_cond;                   /* conditioned per position: x_cond must be set */
  bool cond_after;               /* x_cond is added again after the transformer */
} jbx_prior_desc;

typedef struct jbx_sample_opts {
  double temp;   /* > 0: logits / temp before filtering */
  int64_t top_k; /* 0: off; keep the top_k largest logits (ties with the k-th kept) */
  double top_p;  /* 0: off; keep the smallest prefix (by probability) whose mass before
                    each kept token is <= top_p; the top token always. Not with top_k. */
} jbx_sample_opts;

typedef struct jbx_sampler jbx_sampler;

/* What prime and sample return when Ctrl-C stopped them (jbx_interrupt.h); -1 is an
 * error. Either way jbx_last_error() says what happened. */
#define JBX_SAMPLER_INTERRUPTED (-2)

/* A sampler for `batch` samples, priming up to chunk_size positions per forward (the
 * reference's chunk_size: caps the activation memory), its generator seeded with seed.
 * NULL with a message ("sampler: ...") on bad weights or out of memory. */
jbx_sampler *jbx_sampler_new(const jbx_prior_desc *p, int64_t batch, int64_t chunk_size,
                             uint64_t seed);
void jbx_sampler_free(jbx_sampler *s);
/* Empties every cache: the next position is 0. The generator and conditioning stay. */
void jbx_sampler_reset(jbx_sampler *s);
void jbx_sampler_seed(jbx_sampler *s, uint64_t seed);
int64_t jbx_sampler_position(const jbx_sampler *s); /* positions fed so far */
int64_t jbx_sampler_batch(const jbx_sampler *s);
int64_t jbx_sampler_bins(const jbx_sampler *s);

/* The window's conditioning: x_cond float32 [B, T, W] (position p reads row p, or row 0
 * for every position when T = 1) or NULL; y_cond float32 [B, 1, W] (the start at
 * position 0, instead of the start token) or NULL. Retained. 0 or -1. */
int jbx_sampler_set_conditioning(jbx_sampler *s, jbx_tensor *x_cond, jbx_tensor *y_cond);

/* Feeds the given codes int32 [B, n] as the tokens at positions pos .. pos + n - 1, in
 * forwards of at most chunk_size positions, and writes the logits each of those
 * positions had (what Prior:forward gives there) to logits float32 [B, n, bins]
 * (contiguous) unless NULL. Nothing changes on a bad argument. 0 or -1; Ctrl-C is
 * checked before each chunk (JBX_SAMPLER_INTERRUPTED, the chunks before it fed). */
int jbx_sampler_prime(jbx_sampler *s, const jbx_tensor *codes, jbx_tensor *logits);

/* Samples n tokens per sample into out int32 [B, n] (contiguous), one forward per
 * token: logits / temp, filtered, drawn by inverse CDF from one uniform per sample in
 * sample order (the codes depend on the seed only, not on threads). Ctrl-C
 * (jbx_interrupt.h) is checked before each token: then it stops with the tokens so far
 * fed, *done of them written, and returns JBX_SAMPLER_INTERRUPTED. 0 or -1; *done (if
 * given) is the number of tokens sampled. */
int jbx_sampler_sample(jbx_sampler *s, int64_t n, const jbx_sample_opts *o, jbx_tensor *out,
                       int64_t *done);

/* ---- the pieces of one draw, on raw arrays (for tests and other loops) ---- */

/* Checks o: 0, or -1 with a message naming op. */
int jbx_sample_opts_check(const char *op, const jbx_sample_opts *o);
/* In place over z[bins] (already divided by temp): the filtered logits get -INFINITY.
 * work holds bins floats and order 2 bins int32. */
void jbx_logits_filter(float *z, int64_t bins, int64_t top_k, double top_p, float *work,
                       int32_t *order);
/* The token drawn from softmax(z) with the uniform u in [0, 1): the first index whose
 * cumulative weight (in index order, summed in double) exceeds u times the total; a
 * token with weight 0 (filtered, or exp underflow) is never drawn. work: bins floats. */
int32_t jbx_logits_draw(const float *z, int64_t bins, double u, float *work);

#endif
