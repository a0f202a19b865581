/* The sampler (jbx_sampler.h): a prior's incremental forward over per-layer KV caches
 * and the per-token sampling loop, so that Lua is called once per window, not per token.
 *
 * Semantics: the reference's ConditionalAutoregressive2D.sample / primed_sample, which
 * this repository's Prior:forward (lua/jukebox/prior.lua) computes for a whole window.
 * Position p's input is the start (the learned start token, or y_cond from the labels)
 * at p = 0 and x_emb of the token at p - 1 after it, + pos_emb[p] + x_cond[p]; its
 * output (+ x_cond[p] again unless merged_decoder) times the output weight gives the
 * logits from which the token at p is drawn. So the state between calls is: the caches
 * hold positions 0 .. pos-1, and `pending` holds each sample's token at pos - 1, the
 * input of the next position. prime(codes) and step(code) feed given tokens, sample
 * draws them; all three go through one forward of n positions (n = 1 when sampling).
 *
 * Forward of n positions for B samples, rows r = b n + i (R = B n): every Linear is one
 * sgemm over all R rows (the bias fused, as jbx_linear), except at one row (R = 1: a
 * sampling step of one sample), where layers_one streams each weight once
 * through its own matrix-vector kernels in one parallel region per token; the layer
 * norms the training kernel, quick GELU with the training op's exp; attention reads and
 * appends the layer's cache (core/ops/kv_cache.c: what each attn_func keeps). Priming
 * runs in forwards of at most chunk_size positions (the reference's chunk_size), which
 * bounds the scratch: everything is allocated once in jbx_sampler_new for B chunk_size
 * rows, and a token costs no allocation.
 *
 * Drawing: logits / temp, then top-k (keep logits >= the k-th largest) or top-p (sort
 * descending, keep while the mass before a token is <= top_p, the first always), as the
 * reference's filter_logits (which refuses both at once, as here); then one uniform per
 * sample, in sample order, from the sampler's own xoshiro generator, mapped through the
 * cumulative weights exp(z - max) in index order (summed in double). Nothing random depends on the
 * thread count, and the forward's bits do not either (attention groups run whole on one
 * thread; sgemm splits outputs, not sums), so a seed gives the same codes on 1 or 2
 * threads. temp must be > 0: greedy decoding is top_k = 1.
 *
 * Ctrl-C: jbx_interrupt_take() before each token (and each primed chunk); the sampler then
 * stops between tokens, consistent (pos counts the tokens fed), and returns
 * JBX_SAMPLER_INTERRUPTED with "sampler: stopped by Ctrl-C at position ...". */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "jbx_error.h"
#include "jbx_gemm.h"
#include "jbx_interrupt.h"
#include "jbx_kv_cache.h"
#include "jbx_rng.h"
#include "jbx_sampler.h"
#include "ops/fast_math.h"
#include "ops/kernels.h"

static const char *OP = "sampler";

#define N_LAYER_TENSORS 12
#define GEMV_ROWS 128 /* rows of w per task of gemv_task (see there); 64 gave ~12% fewer tokens/s */

struct jbx_sampler {
  jbx_prior_desc p;
  jbx_prior_layer *layers; /* retained contiguous tensors */
  int64_t B, chunk, W, S, M, bins, n_ctx;
  jbx_kv_cache *caches; /* one per layer */
  float *x, *h, *qkv, *o, *a, *hid, *m, *logits, *work;
  float *part; /* gemv_task's partial sums */
  float *scratch; /* attention work, nth per-thread blocks shared by every layer */
  int nth;
  int32_t *order, *pending;
  jbx_tensor *x_cond, *y_cond;
  int64_t pos;
  jbx_rng rng;
};

/* ------------------------------------------------------------ weights */

static jbx_tensor **layer_slot(jbx_prior_layer *l, int i) {
  jbx_tensor **slots[N_LAYER_TENSORS] = {&l->ln_0_w, &l->ln_0_b, &l->c_attn_w, &l->c_attn_b,
                                         &l->c_proj_w, &l->c_proj_b, &l->ln_1_w, &l->ln_1_b,
                                         &l->c_fc_w, &l->c_fc_b, &l->mlp_proj_w, &l->mlp_proj_b};
  return slots[i];
}
static const char *const layer_names[N_LAYER_TENSORS] = {
    "ln_0.weight", "ln_0.bias", "c_attn.w", "c_attn.b", "c_proj.w", "c_proj.b",
    "ln_1.weight", "ln_1.bias", "mlp.c_fc.w", "mlp.c_fc.b", "mlp.c_proj.w", "mlp.c_proj.b"};

/* *dst = t as a retained contiguous float32 tensor of shape [d0] (d1 < 0) or [d0, d1]. */
static int take(jbx_tensor **dst, jbx_tensor *t, const char *name, int layer, int64_t d0,
                int64_t d1) {
  char a[160], where[48] = "";
  if (layer >= 0) snprintf(where, sizeof where, "layer %lld ", jbx_msg_pos(layer));
  *dst = NULL;
  if (!t) return jbx_fail("%s: %s%s is missing", OP, where, name);
  const int nd = d1 < 0 ? 1 : 2;
  if (t->dtype != JBX_F32 || t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
    if (nd == 1)
      return jbx_fail("%s: %s%s is %s %s, expected float32 [%lld]", OP, where, name,
                      jbx_dtype_name(t->dtype), jbx_shape_str(t, a, sizeof a), (long long)d0);
    return jbx_fail("%s: %s%s is %s %s, expected float32 [%lld, %lld]", OP, where, name,
                    jbx_dtype_name(t->dtype), jbx_shape_str(t, a, sizeof a), (long long)d0,
                    (long long)d1);
  }
  *dst = jbx_contiguous(t);
  return *dst ? 0 : -1;
}

void jbx_sampler_free(jbx_sampler *s) {
  if (!s) return;
  if (s->layers)
    for (int l = 0; l < s->p.depth; l++)
      for (int i = 0; i < N_LAYER_TENSORS; i++) jbx_release(*layer_slot(&s->layers[l], i));
  if (s->caches)
    for (int l = 0; l < s->p.depth; l++) jbx_kv_cache_free(&s->caches[l]);
  jbx_release(s->p.x_emb);
  jbx_release(s->p.out_w);
  jbx_release(s->p.pos_emb);
  jbx_release(s->p.start_token);
  jbx_release(s->x_cond);
  jbx_release(s->y_cond);
  free(s->layers);
  free(s->caches);
  free(s->x), free(s->h), free(s->qkv), free(s->o), free(s->a), free(s->hid), free(s->m);
  free(s->logits), free(s->work), free(s->part), free(s->order), free(s->pending), free(s->scratch);
  free(s);
}

static float *floats(int64_t n) { return malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

jbx_sampler *jbx_sampler_new(const jbx_prior_desc *p, int64_t batch, int64_t chunk_size,
                             uint64_t seed) {
  if (!p || !p->layers || p->depth < 1 || p->bins < 1 || p->width < 1 || p->n_ctx < 1 ||
      p->heads < 1) {
    jbx_fail("%s: the prior needs depth, bins, width, n_ctx and heads >= 1 and its layers", OP);
    return NULL;
  }
  if (batch < 1 || chunk_size < 1) {
    jbx_fail("%s: batch (%lld) and chunk_size (%lld) must be >= 1", OP, (long long)batch,
             (long long)chunk_size);
    return NULL;
  }
  jbx_sampler *s = calloc(1, sizeof *s);
  if (!s) {
    jbx_fail("%s: out of memory", OP);
    return NULL;
  }
  s->p = *p;
  s->p.x_emb = s->p.out_w = s->p.pos_emb = s->p.start_token = NULL;
  s->p.layers = NULL;
  const int64_t W = p->width, bins = p->bins;
  s->B = batch, s->W = W, s->bins = bins, s->n_ctx = p->n_ctx;
  s->chunk = chunk_size < p->n_ctx ? chunk_size : p->n_ctx;
  s->layers = calloc((size_t)p->depth, sizeof *s->layers);
  s->caches = calloc((size_t)p->depth, sizeof *s->caches);
  if (!s->layers || !s->caches) goto oom;
  if (take(&s->p.x_emb, p->x_emb, "x_emb", -1, bins, W) < 0 ||
      take(&s->p.out_w, p->out_w, "output weight", -1, bins, W) < 0 ||
      take(&s->p.pos_emb, p->pos_emb, "pos_emb", -1, p->n_ctx, W) < 0 ||
      (p->start_token && take(&s->p.start_token, p->start_token, "start_token", -1, 1, W) < 0))
    goto fail;
  const jbx_tensor *ca = p->layers[0].c_attn_w, *fc = p->layers[0].c_fc_w;
  if (!ca || ca->ndim != 2 || ca->shape[1] % 3 != 0 || !fc || fc->ndim != 2) {
    jbx_fail("%s: layer %lld c_attn.w must be [width, 3 n_state] and mlp.c_fc.w [width, n_mlp]", OP,
             jbx_msg_pos(0));
    goto fail;
  }
  s->S = ca->shape[1] / 3, s->M = fc->shape[1];
  const int64_t S = s->S, M = s->M;
  if (S % p->heads != 0) {
    jbx_fail("%s: n_state %lld is not a multiple of heads %lld", OP, (long long)S,
             (long long)p->heads);
    goto fail;
  }
  const int64_t dims[N_LAYER_TENSORS][2] = {{W, -1}, {W, -1}, {W, 3 * S}, {3 * S, -1},
                                            {S, W},  {W, -1}, {W, -1},    {W, -1},
                                            {W, M},  {M, -1}, {M, W},     {W, -1}};
  int nth = omp_get_max_threads(), procs = omp_get_num_procs();
  if (procs > nth) nth = procs;
  for (int l = 0; l < p->depth; l++) {
    jbx_prior_layer *src = (jbx_prior_layer *)&p->layers[l], *dst = &s->layers[l];
    dst->attn_func = src->attn_func;
    for (int i = 0; i < N_LAYER_TENSORS; i++)
      if (take(layer_slot(dst, i), *layer_slot(src, i), layer_names[i], l, dims[i][0], dims[i][1]) < 0)
        goto fail;
    char op[64];
    snprintf(op, sizeof op, "%s: layer %lld", OP, jbx_msg_pos(l));
    if (jbx_kv_cache_init(&s->caches[l], op, src->attn_func, batch, p->heads, S / p->heads,
                          p->n_ctx, p->block_ctx, s->chunk) < 0)
      goto fail;
  }
  const int64_t R = batch * s->chunk;
  s->x = floats(R * W), s->h = floats(R * W), s->qkv = floats(R * 3 * S), s->o = floats(R * S);
  s->a = floats(R * W), s->hid = floats(R * M), s->m = floats(R * W);
  s->logits = floats(batch * bins), s->work = floats(bins);
  { /* gemv_task's partials: the largest ceil(n_in / GEMV_ROWS) n_out of the Linears */
    const int64_t t_w = (W + GEMV_ROWS - 1) / GEMV_ROWS, t_s = (S + GEMV_ROWS - 1) / GEMV_ROWS,
                  t_m = (M + GEMV_ROWS - 1) / GEMV_ROWS;
    int64_t np = t_w * 3 * S;
    if (t_s * W > np) np = t_s * W;
    if (t_w * M > np) np = t_w * M;
    if (t_m * W > np) np = t_m * W;
    s->part = floats(np);
  }
  s->order = malloc((size_t)(2 * bins) * sizeof(int32_t));
  s->pending = calloc((size_t)batch, sizeof(int32_t));
  s->nth = nth;
  s->scratch = floats((int64_t)nth * (int64_t)jbx_kv_cache_scratch_floats(S / p->heads, s->chunk));
  if (!s->scratch || !s->part || !s->x || !s->h || !s->qkv || !s->o || !s->a || !s->hid || !s->m || !s->logits ||
      !s->work || !s->order || !s->pending)
    goto oom;
  jbx_rng_seed(&s->rng, seed);
  return s;
oom:
  jbx_fail("%s: out of memory for batch %lld and chunk_size %lld", OP, (long long)batch,
           (long long)s->chunk);
fail:
  jbx_sampler_free(s);
  return NULL;
}

void jbx_sampler_reset(jbx_sampler *s) {
  for (int l = 0; l < s->p.depth; l++) jbx_kv_cache_reset(&s->caches[l]);
  memset(s->pending, 0, (size_t)s->B * sizeof(int32_t));
  s->pos = 0;
}
void jbx_sampler_seed(jbx_sampler *s, uint64_t seed) { jbx_rng_seed(&s->rng, seed); }
int64_t jbx_sampler_position(const jbx_sampler *s) { return s->pos; }
int64_t jbx_sampler_batch(const jbx_sampler *s) { return s->B; }
int64_t jbx_sampler_bins(const jbx_sampler *s) { return s->bins; }

int jbx_sampler_set_conditioning(jbx_sampler *s, jbx_tensor *x_cond, jbx_tensor *y_cond) {
  char a[160];
  if (x_cond && (x_cond->dtype != JBX_F32 || x_cond->ndim != 3 || x_cond->shape[0] != s->B ||
                 x_cond->shape[1] < 1 || x_cond->shape[1] > s->n_ctx || x_cond->shape[2] != s->W))
    return jbx_fail("%s: x_cond is %s %s, expected float32 [%lld, T, %lld] with 1 <= T <= n_ctx %lld",
                    OP, jbx_dtype_name(x_cond->dtype), jbx_shape_str(x_cond, a, sizeof a),
                    (long long)s->B, (long long)s->W, (long long)s->n_ctx);
  if (y_cond && (y_cond->dtype != JBX_F32 || y_cond->ndim != 3 || y_cond->shape[0] != s->B ||
                 y_cond->shape[1] != 1 || y_cond->shape[2] != s->W))
    return jbx_fail("%s: y_cond is %s %s, expected float32 [%lld, 1, %lld]", OP,
                    jbx_dtype_name(y_cond->dtype), jbx_shape_str(y_cond, a, sizeof a),
                    (long long)s->B, (long long)s->W);
  jbx_tensor *xc = x_cond ? jbx_contiguous(x_cond) : NULL, *yc = y_cond ? jbx_contiguous(y_cond) : NULL;
  if ((x_cond && !xc) || (y_cond && !yc)) {
    jbx_release(xc);
    jbx_release(yc);
    return -1;
  }
  jbx_release(s->x_cond);
  jbx_release(s->y_cond);
  s->x_cond = xc, s->y_cond = yc;
  return 0;
}

/* Positions pos .. pos + n - 1 can be fed: inside n_ctx, with the conditioning they need. */
static int check_window(const jbx_sampler *s, int64_t n) {
  if (s->pos + n > s->n_ctx)
    return jbx_fail("%s: positions %lld to %lld exceed n_ctx %lld (reset for a new window)", OP,
                    (long long)s->pos, (long long)(s->pos + n - 1), (long long)s->n_ctx);
  if (s->p.x_cond && !s->x_cond)
    return jbx_fail("%s: this prior is conditioned per position: set_conditioning with x_cond "
                    "[%lld, T, %lld] first", OP, (long long)s->B, (long long)s->W);
  if (s->x_cond && s->x_cond->shape[1] != 1 && s->pos + n > s->x_cond->shape[1])
    return jbx_fail("%s: x_cond covers positions 0 to %lld, position %lld needs a longer one", OP,
                    (long long)s->x_cond->shape[1] - 1, (long long)(s->pos + n - 1));
  if (s->pos == 0 && !s->p.start_token && !s->y_cond)
    return jbx_fail("%s: this prior starts from its labels: set_conditioning with y_cond "
                    "[%lld, 1, %lld] first", OP, (long long)s->B, (long long)s->W);
  return 0;
}

/* ------------------------------------------------------------ the forward */

/* At batch 1 (every sampling step of one sample) a Linear is a matrix-vector product,
 * bound by reading w once: OpenBLAS 0.3.21's sgemm with M = 1 reaches a fraction of the
 * memory bandwidth (it packs w as for a matrix), so these two kernels stream w instead.
 * Both split the work in a fixed way (tasks of GEMV_ROWS rows of w), never by the thread
 * count, and sum in a fixed order: the same bits on any number of threads. */

/* Task t of y [n_out] = x [n_in] w [n_in, n_out] + b: rows t GEMV_ROWS .. of w
 * (contiguous, read once) accumulated into the task's own partial sums part [t, n_out]. */
static void gemv_task(const float *restrict x, int64_t n_in, const float *restrict w,
                      int64_t n_out, int64_t t, float *restrict part) {
  float *restrict p = part + t * n_out;
  const int64_t i1 = (t + 1) * GEMV_ROWS < n_in ? (t + 1) * GEMV_ROWS : n_in;
  int64_t i = t * GEMV_ROWS;
  memset(p, 0, (size_t)n_out * sizeof(float));
  for (; i + 4 <= i1; i += 4) {
    const float *restrict w0 = w + i * n_out, *restrict w1 = w0 + n_out,
                          *restrict w2 = w1 + n_out, *restrict w3 = w2 + n_out;
    const float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
    const int64_t ahead = i + 8 <= i1 ? 4 * n_out : 0; /* the next 4 rows */
    for (int64_t j0 = 0; j0 < n_out; j0 += 16) {
      if (ahead) { /* the hardware prefetcher alone leaves these loads at half the bandwidth */
        __builtin_prefetch(w0 + ahead + j0);
        __builtin_prefetch(w1 + ahead + j0);
        __builtin_prefetch(w2 + ahead + j0);
        __builtin_prefetch(w3 + ahead + j0);
      }
      const int64_t j1 = j0 + 16 < n_out ? j0 + 16 : n_out;
      for (int64_t j = j0; j < j1; j++)
        p[j] += (x0 * w0[j] + x1 * w1[j]) + (x2 * w2[j] + x3 * w3[j]);
    }
  }
  for (; i < i1; i++) {
    const float *restrict wi = w + i * n_out, xi = x[i];
    for (int64_t j = 0; j < n_out; j++) p[j] += xi * wi[j];
  }
}

/* y [j0, j1) = b + the partials of `tasks` tasks, added in task order. */
static void gemv_reduce(const float *restrict part, int64_t tasks, const float *restrict b,
                        int64_t n_out, int64_t j0, int64_t j1, float *restrict y) {
  for (int64_t j = j0; j < j1; j++) y[j] = b[j];
  for (int64_t t = 0; t < tasks; t++)
    for (int64_t j = j0; j < j1; j++) y[j] += part[t * n_out + j];
}

/* The threads of one batch-1 forward: a single parallel region per token, its phases
 * separated by a spin barrier. (Under jbx's passive OpenMP waiting every parallel region
 * or barrier wakes the other thread through a futex; at ~400 Linears and reductions per
 * token that cost as much as a second thread gained.) The spin yields the core after a
 * while, for a descheduled partner on a busy machine. Work is dealt out by task index
 * (task i to thread i mod nth), and each task's sums are fixed: the bits do not depend
 * on the thread count. */
typedef struct {
  atomic_int count, sense;
  int nth;
} team;

static void team_wait(team *tm, int *sense) {
  if (tm->nth == 1) return;
  *sense = !*sense;
  if (atomic_fetch_add(&tm->count, 1) == tm->nth - 1) {
    atomic_store(&tm->count, 0);
    atomic_store(&tm->sense, *sense);
    return;
  }
  for (int spins = 0; atomic_load(&tm->sense) != *sense;)
    if (++spins > 2000) sched_yield();
}

/* y = x w + b by the team (thread tid), ending with the barrier after the reduction. */
static void team_linear(team *tm, int tid, int *sense, const float *x, int64_t n_in,
                        const jbx_tensor *w, const jbx_tensor *b, int64_t n_out, float *y,
                        float *part) {
  const int64_t tasks = (n_in + GEMV_ROWS - 1) / GEMV_ROWS, cols = (n_out + 255) / 256;
  for (int64_t t = tid; t < tasks; t += tm->nth) gemv_task(x, n_in, jbx_f32(w), n_out, t, part);
  team_wait(tm, sense);
  for (int64_t c = tid; c < cols; c += tm->nth)
    gemv_reduce(part, tasks, jbx_f32(b), n_out, 256 * c,
                256 * c + 256 < n_out ? 256 * c + 256 : n_out, y);
  team_wait(tm, sense);
}

/* y [n_out] = w [n_out, n] x [n] (the tied output layer at batch 1): each y[j] a dot
 * product of a contiguous row of w, over 8 lanes added in a fixed order at the end. */
static void logits_one(const float *restrict x, int64_t n, const float *restrict w,
                       int64_t n_out, float *restrict y) {
#pragma omp parallel for schedule(static) if (n_out >= 2 * GEMV_ROWS)
  for (int64_t j = 0; j < n_out; j++) {
    const float *restrict wj = w + j * n;
    float acc[8] = {0};
    int64_t c = 0;
    for (; c + 8 <= n; c += 8)
      for (int l = 0; l < 8; l++) acc[l] += x[c + l] * wj[c + l];
    float t = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; c < n; c++) t += x[c] * wj[c];
    y[j] = t;
  }
}

/* y [rows, n_out] = x [rows, n_in] w [n_in, n_out] + b */
static void linear(const float *x, int64_t rows, int64_t n_in, const jbx_tensor *w,
                   const jbx_tensor *b, int64_t n_out, float *y) {
  jbx_sgemm_bias(CblasNoTrans, CblasNoTrans, rows, n_out, n_in, x, n_in, jbx_f32(w), n_out,
                 jbx_f32(b), y, n_out);
}

static void quick_gelu(float *restrict v, int64_t n) {
  for (int64_t j = 0; j < n; j++) v[j] = v[j] * (1.0f / (1.0f + jbx_fast_expf(-1.702f * v[j])));
}

/* The layers at batch 1 and one position (every sampling step of one sample), x [W] in
 * place: the same maths as the loop in forward, the Linears by the team (team_linear),
 * the rest (layer norms, attention, residuals, quick GELU: O(W) work) by thread 0. The
 * attention's groups (heads) then run one after the other. */
static void layers_one(jbx_sampler *s, float *x) {
  const int64_t W = s->W, S = s->S, M = s->M;
  const float rs = s->p.res_scale;
  team tm = {.nth = 1};
  atomic_init(&tm.count, 0);
  atomic_init(&tm.sense, 0);
#pragma omp parallel
  {
#pragma omp single
    tm.nth = omp_get_num_threads();
    const int tid = omp_get_thread_num();
    int sense = 0;
    for (int l = 0; l < s->p.depth; l++) {
      const jbx_prior_layer *L = &s->layers[l];
      if (tid == 0)
        jbx_layer_norm_forward(x, jbx_f32(L->ln_0_w), jbx_f32(L->ln_0_b), s->h, NULL, NULL, 1, W,
                               s->p.ln_eps);
      team_wait(&tm, &sense);
      team_linear(&tm, tid, &sense, s->h, W, L->c_attn_w, L->c_attn_b, 3 * S, s->qkv, s->part);
      if (tid == 0)
        jbx_kv_cache_attend(&s->caches[l], OP, s->qkv, 3 * S, 1, s->o, S, s->scratch, 1);
      team_wait(&tm, &sense);
      team_linear(&tm, tid, &sense, s->o, S, L->c_proj_w, L->c_proj_b, W, s->a, s->part);
      if (tid == 0) {
        float *xa = rs == 1.0f ? x : s->m; /* x + a, in place when it is the residual */
        for (int64_t j = 0; j < W; j++) xa[j] = x[j] + s->a[j];
        jbx_layer_norm_forward(xa, jbx_f32(L->ln_1_w), jbx_f32(L->ln_1_b), s->h, NULL, NULL, 1, W,
                               s->p.ln_eps);
      }
      team_wait(&tm, &sense);
      team_linear(&tm, tid, &sense, s->h, W, L->c_fc_w, L->c_fc_b, M, s->hid, s->part);
      if (tid == 0) quick_gelu(s->hid, M);
      team_wait(&tm, &sense);
      team_linear(&tm, tid, &sense, s->hid, M, L->mlp_proj_w, L->mlp_proj_b, W, s->m, s->part);
      if (tid == 0) {
        if (rs == 1.0f)
          for (int64_t j = 0; j < W; j++) x[j] += s->m[j];
        else
          for (int64_t j = 0; j < W; j++) x[j] = x[j] + (s->a[j] + s->m[j]) * rs;
      }
    }
  }
}

/* The next n positions (n <= chunk): inputs from codes [B, ldc] (column i - 1 is the
 * token before position pos + i; NULL when n = 1: the pending tokens), logits of (b, i)
 * to lg + b lg_b + i bins unless lg is NULL. Checked by the caller; cannot fail. */
static void forward(jbx_sampler *s, int64_t n, const int32_t *codes, int64_t ldc, float *lg,
                    int64_t lg_b) {
  const int64_t W = s->W, S = s->S, M = s->M, R = s->B * n, p0 = s->pos;
  const float *xe = jbx_f32(s->p.x_emb), *pe = jbx_f32(s->p.pos_emb);
  const float *st = s->p.start_token ? jbx_f32(s->p.start_token) : NULL;
  const float *yc = s->y_cond ? jbx_f32(s->y_cond) : NULL;
  const float *xc = s->x_cond ? jbx_f32(s->x_cond) : NULL;
  const int64_t xT = s->x_cond ? s->x_cond->shape[1] : 0;
  float *x = s->x;
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t i = 0; i < n; i++) {
      const int64_t p = p0 + i;
      float *row = x + (b * n + i) * W;
      const float *src = p == 0 ? (yc ? yc + b * W : st)
                                : xe + (int64_t)(i == 0 ? s->pending[b] : codes[b * ldc + i - 1]) * W;
      for (int64_t c = 0; c < W; c++) row[c] = src[c] + pe[p * W + c];
      if (xc) {
        const float *cr = xc + (b * xT + (xT == 1 ? 0 : p)) * W;
        for (int64_t c = 0; c < W; c++) row[c] += cr[c];
      }
    }
  const float rs = s->p.res_scale;
  if (R == 1) layers_one(s, x);
  for (int l = 0; l < s->p.depth && R > 1; l++) {
    const jbx_prior_layer *L = &s->layers[l];
    jbx_layer_norm_forward(x, jbx_f32(L->ln_0_w), jbx_f32(L->ln_0_b), s->h, NULL, NULL, R, W,
                           s->p.ln_eps);
    linear(s->h, R, W, L->c_attn_w, L->c_attn_b, 3 * S, s->qkv);
    jbx_kv_cache_attend(&s->caches[l], OP, s->qkv, 3 * S, n, s->o, S, s->scratch, s->nth);
    linear(s->o, R, S, L->c_proj_w, L->c_proj_b, W, s->a);
    float *xa = rs == 1.0f ? x : s->m; /* x + a, in place when it is the residual */
    for (int64_t j = 0; j < R * W; j++) xa[j] = x[j] + s->a[j];
    jbx_layer_norm_forward(xa, jbx_f32(L->ln_1_w), jbx_f32(L->ln_1_b), s->h, NULL, NULL, R, W,
                           s->p.ln_eps);
    linear(s->h, R, W, L->c_fc_w, L->c_fc_b, M, s->hid);
    quick_gelu(s->hid, R * M);
    linear(s->hid, R, M, L->mlp_proj_w, L->mlp_proj_b, W, s->m);
    if (rs == 1.0f)
      for (int64_t j = 0; j < R * W; j++) x[j] += s->m[j];
    else
      for (int64_t j = 0; j < R * W; j++) x[j] = x[j] + (s->a[j] + s->m[j]) * rs;
  }
  if (xc && s->p.cond_after)
    for (int64_t b = 0; b < s->B; b++)
      for (int64_t i = 0; i < n; i++) {
        float *row = x + (b * n + i) * W;
        const float *cr = xc + (b * xT + (xT == 1 ? 0 : p0 + i)) * W;
        for (int64_t c = 0; c < W; c++) row[c] += cr[c];
      }
  if (lg && R == 1)
    logits_one(x, W, jbx_f32(s->p.out_w), s->bins, lg);
  else if (lg && lg_b == n * s->bins) /* every sample's rows in one product */
    jbx_sgemm(CblasNoTrans, CblasTrans, R, s->bins, W, 1.0f, x, W, jbx_f32(s->p.out_w), W, 0.0f,
              lg, s->bins);
  else if (lg)
    for (int64_t b = 0; b < s->B; b++)
      jbx_sgemm(CblasNoTrans, CblasTrans, n, s->bins, W, 1.0f, x + b * n * W, W,
                jbx_f32(s->p.out_w), W, 0.0f, lg + b * lg_b, s->bins);
  if (codes)
    for (int64_t b = 0; b < s->B; b++) s->pending[b] = codes[b * ldc + n - 1];
  s->pos += n;
}

/* ------------------------------------------------------------ prime, sample */

int jbx_sampler_prime(jbx_sampler *s, const jbx_tensor *codes, jbx_tensor *logits) {
  char a[160];
  if (!codes || codes->dtype != JBX_I32 || codes->ndim != 2 || codes->shape[0] != s->B ||
      codes->shape[1] < 1)
    return codes ? jbx_fail("%s: codes are %s %s, expected int32 [%lld, n] with n >= 1", OP,
                            jbx_dtype_name(codes->dtype), jbx_shape_str(codes, a, sizeof a),
                            (long long)s->B)
                 : jbx_fail("%s: codes are required", OP);
  const int64_t n = codes->shape[1];
  if (logits && (logits->dtype != JBX_F32 || logits->ndim != 3 || logits->shape[0] != s->B ||
                 logits->shape[1] != n || logits->shape[2] != s->bins ||
                 !jbx_is_contiguous(logits)))
    return jbx_fail("%s: logits %s must be contiguous float32 [%lld, %lld, %lld]", OP,
                    jbx_shape_str(logits, a, sizeof a), (long long)s->B, (long long)n,
                    (long long)s->bins);
  if (check_window(s, n) < 0) return -1;
  jbx_tensor *cc = jbx_contiguous((jbx_tensor *)codes);
  if (!cc) return -1;
  const int32_t *cd = jbx_i32(cc);
  for (int64_t i = 0; i < s->B * n; i++)
    if (cd[i] < 0 || cd[i] >= s->bins) {
      jbx_release(cc);
      return jbx_fail("%s: code %d at [%lld, %lld] is out of range [0, %lld) (bins)", OP, cd[i],
                      jbx_msg_pos(i / n), jbx_msg_pos(i % n), (long long)s->bins);
    }
  float *lg = logits ? jbx_f32(logits) : NULL;
  for (int64_t c0 = 0; c0 < n; c0 += s->chunk) {
    if (jbx_interrupt_take()) {
      jbx_release(cc);
      jbx_fail("%s: stopped by Ctrl-C at position %lld (prime: %lld of %lld tokens fed)", OP,
               (long long)s->pos, (long long)c0, (long long)n);
      return JBX_SAMPLER_INTERRUPTED;
    }
    const int64_t m = n - c0 < s->chunk ? n - c0 : s->chunk;
    forward(s, m, cd + c0, n, lg ? lg + c0 * s->bins : NULL, n * s->bins);
  }
  jbx_release(cc);
  return 0;
}

int jbx_sample_opts_check(const char *op, const jbx_sample_opts *o) {
  if (!(o->temp > 0.0) || !isfinite(o->temp))
    return jbx_fail("%s: temp must be > 0, got %g (for greedy decoding use top_k = 1)", op, o->temp);
  if (o->top_k < 0) return jbx_fail("%s: top_k must be >= 0, got %lld", op, (long long)o->top_k);
  if (!(o->top_p >= 0.0 && o->top_p <= 1.0))
    return jbx_fail("%s: top_p must be in [0, 1], got %g", op, o->top_p);
  if (o->top_k > 0 && o->top_p > 0.0)
    return jbx_fail("%s: top_k (%lld) and top_p (%g) cannot both be set: use one filter (as the "
                    "reference's filter_logits)", op, (long long)o->top_k, o->top_p);
  return 0;
}

/* The k-th largest (0-based) of a[0..n), reordering a (quickselect). */
static float kth_largest(float *a, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    const float piv = a[lo + (hi - lo) / 2];
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (a[i] > piv) i++;
      while (a[j] < piv) j--;
      if (i <= j) {
        const float t = a[i];
        a[i++] = a[j];
        a[j--] = t;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

/* order[0..n) sorted by z descending, ties by index (stable merge sort through tmp). */
static void sort_desc(const float *z, int32_t *order, int32_t *tmp, int64_t n) {
  for (int64_t w = 1; w < n; w *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * w) {
      int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      int64_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) tmp[k++] = z[order[j]] > z[order[i]] ? order[j++] : order[i++];
      while (i < mid) tmp[k++] = order[i++];
      while (j < hi) tmp[k++] = order[j++];
    }
    memcpy(order, tmp, (size_t)n * sizeof *order);
  }
}

void jbx_logits_filter(float *z, int64_t bins, int64_t top_k, double top_p, float *work,
                       int32_t *order) {
  if (top_k > 0 && top_k < bins) {
    memcpy(work, z, (size_t)bins * sizeof *z);
    const float kth = kth_largest(work, bins, top_k - 1);
    for (int64_t j = 0; j < bins; j++)
      if (z[j] < kth) z[j] = -INFINITY;
  }
  if (top_p > 0.0) {
    for (int64_t j = 0; j < bins; j++) order[j] = (int32_t)j;
    sort_desc(z, order, order + bins, bins);
    const double m = z[order[0]];
    double total = 0.0, cum = 0.0;
    for (int64_t j = 0; j < bins; j++) total += exp((double)z[j] - m);
    for (int64_t i = 0; i < bins; i++) {
      const int32_t j = order[i];
      const double e = exp((double)z[j] - m);
      if (i > 0 && cum > top_p * total) z[j] = -INFINITY;
      cum += e;
    }
  }
}

int32_t jbx_logits_draw(const float *z, int64_t bins, double u, float *work) {
  float m = -INFINITY;
  for (int64_t j = 0; j < bins; j++) m = z[j] > m ? z[j] : m;
  if (m == -INFINITY) return 0;
  double total = 0.0;
  for (int64_t j = 0; j < bins; j++) {
    work[j] = z[j] == -INFINITY ? 0.0f : jbx_fast_expf(z[j] - m);
    total += work[j];
  }
  const double target = u * total;
  double cum = 0.0;
  int32_t last = 0;
  for (int64_t j = 0; j < bins; j++) {
    if (work[j] == 0.0f) continue;
    last = (int32_t)j;
    cum += work[j];
    if (cum > target) return last;
  }
  return last;
}

int jbx_sampler_sample(jbx_sampler *s, int64_t n, const jbx_sample_opts *o, jbx_tensor *out,
                       int64_t *done) {
  char a[160];
  if (done) *done = 0;
  if (n < 1) return jbx_fail("%s: n must be >= 1, got %lld", OP, (long long)n);
  if (jbx_sample_opts_check(OP, o) < 0) return -1;
  if (!out || out->dtype != JBX_I32 || out->ndim != 2 || out->shape[0] != s->B ||
      out->shape[1] != n || !jbx_is_contiguous(out))
    return jbx_fail("%s: out %s must be contiguous int32 [%lld, %lld]", OP,
                    out ? jbx_shape_str(out, a, sizeof a) : "(none)", (long long)s->B,
                    (long long)n);
  if (check_window(s, n) < 0) return -1;
  int32_t *codes = jbx_i32(out);
  const float temp = (float)o->temp;
  const int64_t bins = s->bins;
  for (int64_t t = 0; t < n; t++) {
    if (jbx_interrupt_take()) {
      jbx_fail("%s: stopped by Ctrl-C at position %lld (sample: %lld of %lld tokens drawn)", OP,
               (long long)s->pos, (long long)t, (long long)n);
      return JBX_SAMPLER_INTERRUPTED;
    }
    forward(s, 1, NULL, 0, s->logits, bins);
    for (int64_t b = 0; b < s->B; b++) {
      float *z = s->logits + b * bins;
      if (temp != 1.0f)
        for (int64_t j = 0; j < bins; j++) z[j] = z[j] / temp;
      jbx_logits_filter(z, bins, o->top_k, o->top_p, s->work, s->order);
      const int32_t tok = jbx_logits_draw(z, bins, jbx_rng_uniform(&s->rng), s->work);
      codes[b * n + t] = tok;
      s->pending[b] = tok;
    }
    if (done) *done = t + 1;
  }
  return 0;
}
