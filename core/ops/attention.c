/* Factorised self-attention, fused (declared in jbx_attention.h): forward and backward
 * side by side, semantics of the reference's FactoredAttention in training.
 *
 * Every pattern is a set of independent groups, each a dense (causal or not) attention
 * of a strided matrix of query rows over a strided matrix of key rows, run by one flash
 * kernel (jbx_attn_forward_rows / jbx_attn_backward_rows):
 *   0 dense:            one group per (batch, head): T queries over T keys, causal;
 *   1 block ("row"):    per (batch, head, block): block_ctx rows over the same rows, causal;
 *   2 transposed block: per (batch, head, c < block_ctx): rows c, c + block_ctx, ... (row
 *                       stride block_ctx * d, no copy), T / block_ctx of them, causal;
 *   3 previous block:   per (batch, head, block n >= 1): block n's rows over block n-1's,
 *                       no mask. Block 0 sees the reference's zero block: uniform weights
 *                       over zero values, so its output and its gradients are exactly 0.
 * The kernel walks query tiles of ATT_TQ rows and key tiles of ATT_TK rows (tiles wholly
 * above the diagonal skipped): scores = scale q k^T (one sgemm; scale = 1/sqrt(d) as
 * sgemm's alpha, the reference's d^-1/4 on q and on k in one rounding), a running row max m and
 * sum l (online softmax, max-subtracted, float), acc = acc * exp(m_old - m) + p v (one
 * sgemm), o = acc / l, lse = m + log l. The backward recomputes each tile's scores, p =
 * exp(s - lse), and with D = rowsum(go * o): gv += p^T go, dp = go v^T, ds = p (dp - D),
 * gq += scale ds k, gk += scale ds^T q (four sgemms per tile).
 *
 * Memory each pattern holds: the output, and for the backward one float per row, the
 * log-sum-exp [B, H, T] (the graph keeps q, k, v, which it holds anyway). Nothing T x T,
 * nor per block: the work memory is a per-thread scratch of 2 ATT_TQ x ATT_TK score tiles
 * and an ATT_TQ x d accumulator (about 80 KB at d = 64), the same for every pattern and
 * every T; dense attention at T = 8192 needs out + lse and the gradients, no more. The
 * backward allocates q, k, v gradients (zeroed, accumulated into) and contiguous copies
 * of non-contiguous inputs; dense attention over fewer than ATT_SPLIT (batch, head)
 * pairs adds 2 ATT_SPLIT T d floats of chunk gradients (16 MB at T = 8192, d = 64).
 *
 * Threads: OpenMP over (group, query tile) in the forward and over groups in the
 * backward (a group's key gradients are accumulated over its query tiles, and groups own
 * disjoint rows), each sgemm single-threaded inside the region. Dense attention over
 * fewer than ATT_SPLIT (batch, head) pairs splits each one's query tiles into chunks
 * with key and value gradients of their own (run_backward_split). Results have the same
 * bits for any thread count. */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "fast_math.h"
#include "jbx_attention.h"
#include "jbx_buffer.h"
#include "jbx_error.h"
#include "jbx_gemm.h"
#include "jbx_ops.h"
#include "kernels.h"
#include "op_kit.h"

#define ATT_TQ 64  /* query rows per tile */
#define ATT_TK 128 /* key rows per tile */
#define ATT_SPLIT 4 /* dense backward: below this many (batch, head) groups, split each */

static const char *OP = "attention";

/* ------------------------------------------------------------ the kernels */

size_t jbx_attn_scratch_floats(int64_t d) {
  return (size_t)(2 * ATT_TQ * ATT_TK + ATT_TQ * d + 3 * ATT_TQ);
}

/* Keys visible to query row i: [0, lim). */
static int64_t visible(const jbx_attn_group *g, int64_t i) {
  if (!g->causal) return g->nk;
  int64_t lim = i + g->offset + 1;
  return lim < 0 ? 0 : lim > g->nk ? g->nk : lim;
}

/* s [mq, ld] = scale q[a..a+mq) k[b..b+nkt)^T */
static void scores(const jbx_attn_group *g, const float *q, const float *k, int64_t a, int64_t mq,
                   int64_t b, int64_t nkt, float *s) {
  jbx_sgemm(CblasNoTrans, CblasTrans, (int)mq, (int)nkt, (int)g->d, g->scale,
            q + a * g->ldq, (int)g->ldq, k + b * g->ldk, (int)g->ldk, 0.0f, s, (int)nkt);
}

void jbx_attn_forward_rows(const jbx_attn_group *g, const float *q, const float *k, const float *v,
                           float *o, float *lse, int64_t i0, int64_t n, float *scratch) {
  const int64_t d = g->d;
  float *s = scratch, *acc = s + 2 * ATT_TQ * ATT_TK, *m = acc + ATT_TQ * d, *l = m + ATT_TQ;
  for (int64_t a = i0; a < i0 + n; a += ATT_TQ) {
    const int64_t mq = i0 + n - a < ATT_TQ ? i0 + n - a : ATT_TQ;
    const int64_t kend = visible(g, a + mq - 1);
    for (int64_t r = 0; r < mq; r++) m[r] = -INFINITY, l[r] = 0.0f;
    memset(acc, 0, (size_t)(mq * d) * sizeof *acc);
    for (int64_t b = 0; b < kend; b += ATT_TK) {
      const int64_t nkt = kend - b < ATT_TK ? kend - b : ATT_TK;
      scores(g, q, k, a, mq, b, nkt, s);
      for (int64_t r = 0; r < mq; r++) {
        float *sr = s + r * nkt, *ar = acc + r * d;
        int64_t lim = visible(g, a + r) - b;
        lim = lim < 0 ? 0 : lim > nkt ? nkt : lim;
        float mx = m[r];
        for (int64_t j = 0; j < lim; j++) mx = sr[j] > mx ? sr[j] : mx;
        if (mx == -INFINITY) { /* nothing visible yet */
          memset(sr, 0, (size_t)nkt * sizeof *sr);
          continue;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < lim; j++) {
          sr[j] = jbx_fast_expf(sr[j] - mx);
          sum += sr[j];
        }
        for (int64_t j = lim; j < nkt; j++) sr[j] = 0.0f;
        if (m[r] != mx) {
          const float corr = m[r] == -INFINITY ? 0.0f : jbx_fast_expf(m[r] - mx);
          l[r] *= corr;
          for (int64_t c = 0; c < d; c++) ar[c] *= corr;
          m[r] = mx;
        }
        l[r] += sum;
      }
      jbx_sgemm(CblasNoTrans, CblasNoTrans, (int)mq, (int)d, (int)nkt, 1.0f, s,
                (int)nkt, v + b * g->ldv, (int)g->ldv, 1.0f, acc, (int)d);
    }
    for (int64_t r = 0; r < mq; r++) {
      float *orow = o + (a + r) * g->ldo;
      const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
      for (int64_t c = 0; c < d; c++) orow[c] = acc[r * d + c] * inv;
      lse[(a + r) * g->lse_stride] = l[r] > 0.0f ? m[r] + logf(l[r]) : -INFINITY;
    }
  }
}

void jbx_attn_backward_rows(const jbx_attn_group *g, const float *q, const float *k,
                            const float *v, const float *o, const float *go, const float *lse,
                            int64_t i0, int64_t n, float *gq, float *gk, float *gv,
                            float *scratch) {
  const int64_t d = g->d;
  float *p = scratch, *dp = p + ATT_TQ * ATT_TK, *D = dp + ATT_TQ * ATT_TK + ATT_TQ * d;
  for (int64_t a = i0; a < i0 + n; a += ATT_TQ) {
    const int64_t mq = i0 + n - a < ATT_TQ ? i0 + n - a : ATT_TQ;
    const int64_t kend = visible(g, a + mq - 1);
    for (int64_t r = 0; r < mq; r++) {
      const float *orow = o + (a + r) * g->ldo, *grow = go + (a + r) * g->ldo;
      float t = 0.0f;
      for (int64_t c = 0; c < d; c++) t += orow[c] * grow[c];
      D[r] = t;
    }
    for (int64_t b = 0; b < kend; b += ATT_TK) {
      const int64_t nkt = kend - b < ATT_TK ? kend - b : ATT_TK;
      scores(g, q, k, a, mq, b, nkt, p);
      for (int64_t r = 0; r < mq; r++) {
        float *pr = p + r * nkt;
        const float lr = lse[(a + r) * g->lse_stride];
        int64_t lim = visible(g, a + r) - b;
        lim = lim < 0 ? 0 : lim > nkt ? nkt : lim;
        if (lr == -INFINITY) lim = 0;
        for (int64_t j = 0; j < lim; j++) pr[j] = jbx_fast_expf(pr[j] - lr);
        for (int64_t j = lim; j < nkt; j++) pr[j] = 0.0f;
      }
      const float *gob = go + a * g->ldo;
      if (gv)
        jbx_sgemm(CblasTrans, CblasNoTrans, (int)nkt, (int)d, (int)mq, 1.0f, p,
                  (int)nkt, gob, (int)g->ldo, 1.0f, gv + b * g->ldv, (int)g->ldv);
      if (!gq && !gk) continue;
      jbx_sgemm(CblasNoTrans, CblasTrans, (int)mq, (int)nkt, (int)d, 1.0f, gob,
                (int)g->ldo, v + b * g->ldv, (int)g->ldv, 0.0f, dp, (int)nkt);
      for (int64_t r = 0; r < mq; r++) {
        float *dr = dp + r * nkt;
        const float *pr = p + r * nkt, Dr = D[r];
        for (int64_t j = 0; j < nkt; j++) dr[j] = pr[j] * (dr[j] - Dr);
      }
      if (gq)
        jbx_sgemm(CblasNoTrans, CblasNoTrans, (int)mq, (int)d, (int)nkt, g->scale,
                  dp, (int)nkt, k + b * g->ldk, (int)g->ldk, 1.0f, gq + a * g->ldq, (int)g->ldq);
      if (gk)
        jbx_sgemm(CblasTrans, CblasNoTrans, (int)nkt, (int)d, (int)mq, g->scale,
                  dp, (int)nkt, q + a * g->ldq, (int)g->ldq, 1.0f, gk + b * g->ldk, (int)g->ldk);
    }
  }
}

/* ------------------------------------------------------------ patterns as groups */

typedef struct {
  int func;
  int64_t B, H, T, d, bc;
  int64_t per;     /* groups per (batch, head) */
  int64_t ngroups; /* B * H * per */
  jbx_attn_group g;
} plan;

static plan make_plan(int func, int64_t B, int64_t H, int64_t T, int64_t d, int64_t bc) {
  plan p = {.func = func, .B = B, .H = H, .T = T, .d = d, .bc = bc};
  jbx_attn_group g = {.d = d, .ldq = d, .ldk = d, .ldv = d, .ldo = d, .lse_stride = 1,
                      .causal = true, .offset = 0, .scale = (float)(1.0 / sqrt((double)d))};
  switch (func) {
  case JBX_ATTN_DENSE: p.per = 1, g.nq = g.nk = T; break;
  case JBX_ATTN_BLOCK: p.per = T / bc, g.nq = g.nk = bc; break;
  case JBX_ATTN_TRANSPOSE_BLOCK:
    p.per = bc, g.nq = g.nk = T / bc;
    g.ldq = g.ldk = g.ldv = g.ldo = bc * d, g.lse_stride = bc;
    break;
  default: /* JBX_ATTN_PREV_BLOCK */
    p.per = T / bc, g.nq = g.nk = bc, g.causal = false;
    break;
  }
  p.g = g;
  p.ngroups = B * H * p.per;
  return p;
}

/* Group idx: offsets of its first query row (also o's and the gradients'), first key
 * row and first lse entry. Returns false for previous-block's block 0 (no keys). */
static bool group_at(const plan *p, int64_t idx, int64_t *qoff, int64_t *koff, int64_t *loff) {
  const int64_t bh = idx / p->per, r = idx % p->per, base = bh * p->T * p->d;
  *loff = bh * p->T;
  switch (p->func) {
  case JBX_ATTN_DENSE: *qoff = *koff = base; break;
  case JBX_ATTN_BLOCK:
    *qoff = *koff = base + r * p->bc * p->d;
    *loff += r * p->bc;
    break;
  case JBX_ATTN_TRANSPOSE_BLOCK:
    *qoff = *koff = base + r * p->d;
    *loff += r;
    break;
  default:
    *qoff = base + r * p->bc * p->d;
    *koff = base + (r - 1) * p->bc * p->d;
    *loff += r * p->bc;
    return r > 0;
  }
  return true;
}

/* Per-thread scratch, grown on demand and kept (OpenMP's threads live on). */
static _Thread_local struct {
  float *p;
  size_t n;
} scratch;

static float *scratch_get(size_t floats) {
  if (scratch.n >= floats) return scratch.p;
  free(scratch.p);
  scratch.p = malloc(floats * sizeof(float));
  scratch.n = scratch.p ? floats : 0;
  return scratch.p;
}

/* Inside a parallel region: this thread's scratch, or NULL after setting *failed. */
static float *thread_scratch(size_t floats, int *failed) {
  float *s = scratch_get(floats);
  if (!s) {
#pragma omp atomic write
    *failed = 1;
  }
  return s;
}

static int threads_for(int64_t items) {
  int nth = omp_get_max_threads();
  if (nth > items) nth = (int)items;
  return nth < 1 ? 1 : nth;
}

static int run_forward(const plan *p, const float *q, const float *k, const float *v, float *o,
                       float *lse) {
  const int64_t tiles = (p->g.nq + ATT_TQ - 1) / ATT_TQ, items = p->ngroups * tiles;
  const size_t need = jbx_attn_scratch_floats(p->d);
  int nth = threads_for(items), failed = 0;
#pragma omp parallel num_threads(nth) if (nth > 1)
  {
    float *s = thread_scratch(need, &failed);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; it++) {
      int64_t qo, ko, lo, gi = it / tiles, a = (it % tiles) * ATT_TQ;
      int64_t n = p->g.nq - a < ATT_TQ ? p->g.nq - a : ATT_TQ;
      if (!s) continue;
      if (group_at(p, gi, &qo, &ko, &lo)) {
        jbx_attn_forward_rows(&p->g, q + qo, k + ko, v + ko, o + qo, lse + lo, a, n, s);
      } else { /* the zero block: uniform weights over zero values */
        for (int64_t r = a; r < a + n; r++) {
          memset(o + qo + r * p->g.ldo, 0, (size_t)p->d * sizeof(float));
          lse[lo + r * p->g.lse_stride] = 0.0f;
        }
      }
    }
  }
  return failed ? jbx_fail("%s: out of memory for its work buffers", OP) : 0;
}

/* Dense attention over fewer than ATT_SPLIT (batch, head) groups: each group's query
 * tiles are dealt round-robin to ATT_SPLIT chunks (causal rows cost more further down)
 * that run in parallel, each accumulating key and value gradients into a buffer of its
 * own ([T, d] each), summed in chunk order afterwards: the same bits for any thread
 * count. Costs 2 ATT_SPLIT T d floats (16 MB at T = 8192, d = 64). */
static int run_backward_split(const plan *p, const float *q, const float *k, const float *v,
                              const float *o, const float *go, const float *lse, float *gq,
                              float *gk, float *gv) {
  const int64_t T = p->T, d = p->d, tiles = (T + ATT_TQ - 1) / ATT_TQ;
  const int64_t nchunk = tiles < ATT_SPLIT ? tiles : ATT_SPLIT;
  const size_t need = jbx_attn_scratch_floats(d), per = (size_t)(2 * T * d);
  const size_t bytes = (size_t)nchunk * per * sizeof(float);
  float *buf = jbx_buffer_alloc(bytes);
  if (!buf) return jbx_fail("%s: out of memory for its work buffers", OP);
  int nth = threads_for(nchunk), failed = 0;
  for (int64_t gi = 0; gi < p->ngroups && !failed; gi++) {
    int64_t qo, ko, lo;
    group_at(p, gi, &qo, &ko, &lo);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
      float *s = thread_scratch(need, &failed);
#pragma omp for schedule(dynamic, 1)
      for (int64_t c = 0; c < nchunk; c++) {
        float *gkc = buf + (size_t)c * per, *gvc = gkc + T * d;
        if (!s) continue;
        memset(gkc, 0, per * sizeof(float));
        for (int64_t t = c; t < tiles; t += nchunk) {
          const int64_t a = t * ATT_TQ, n = T - a < ATT_TQ ? T - a : ATT_TQ;
          jbx_attn_backward_rows(&p->g, q + qo, k + ko, v + ko, o + qo, go + qo, lse + lo, a, n,
                                 gq ? gq + qo : NULL, gk ? gkc : NULL, gv ? gvc : NULL, s);
        }
      }
      /* the implicit barrier: every chunk is done before the sums */
#pragma omp for schedule(static)
      for (int64_t i = 0; i < T * d; i++) {
        float sk = 0.0f, sv = 0.0f;
        for (int64_t c = 0; c < nchunk; c++) {
          sk += buf[(size_t)c * per + (size_t)i];
          sv += buf[(size_t)c * per + (size_t)(T * d + i)];
        }
        if (gk) gk[ko + i] += sk;
        if (gv) gv[ko + i] += sv;
      }
    }
  }
  jbx_buffer_free(buf, bytes);
  return failed ? jbx_fail("%s: out of memory for its work buffers", OP) : 0;
}

static int run_backward(const plan *p, const float *q, const float *k, const float *v,
                        const float *o, const float *go, const float *lse, float *gq, float *gk,
                        float *gv) {
  if (p->func == JBX_ATTN_DENSE && p->ngroups < ATT_SPLIT && p->T > ATT_TQ)
    return run_backward_split(p, q, k, v, o, go, lse, gq, gk, gv);
  const size_t need = jbx_attn_scratch_floats(p->d);
  int nth = threads_for(p->ngroups), failed = 0;
#pragma omp parallel num_threads(nth) if (nth > 1)
  {
    float *s = thread_scratch(need, &failed);
#pragma omp for schedule(dynamic, 1)
    for (int64_t gi = 0; gi < p->ngroups; gi++) {
      int64_t qo, ko, lo;
      if (!s || !group_at(p, gi, &qo, &ko, &lo)) continue;
      jbx_attn_backward_rows(&p->g, q + qo, k + ko, v + ko, o + qo, go + qo, lse + lo, 0,
                             p->g.nq, gq ? gq + qo : NULL, gk ? gk + ko : NULL,
                             gv ? gv + ko : NULL, s);
    }
  }
  return failed ? jbx_fail("%s: out of memory for its work buffers", OP) : 0;
}

/* ------------------------------------------------------------ the op */

typedef struct {
  int func;
  int64_t block_ctx;
} attn_params;

static int check_inputs(const jbx_tensor *q, const jbx_tensor *k, const jbx_tensor *v, int func,
                        int64_t bc) {
  char a[160], b[160];
  if (!q || !k || !v) return jbx_fail("%s: q, k and v are required", OP);
  if (jbx_check_f32(OP, "q", q) < 0 || jbx_check_f32(OP, "k", k) < 0 ||
      jbx_check_f32(OP, "v", v) < 0)
    return -1;
  if (q->ndim != 4)
    return jbx_fail("%s: q %s must be 4-D [batch, heads, T, d]", OP, jbx_shape_str(q, a, sizeof a));
  if (!jbx_same_shape(k, q))
    return jbx_fail("%s: k %s must have q's shape %s (self-attention)", OP,
                    jbx_shape_str(k, a, sizeof a), jbx_shape_str(q, b, sizeof b));
  if (!jbx_same_shape(v, q))
    return jbx_fail("%s: v %s must have q's shape %s (self-attention)", OP,
                    jbx_shape_str(v, a, sizeof a), jbx_shape_str(q, b, sizeof b));
  for (int i = 0; i < 4; i++)
    if (q->shape[i] < 1)
      return jbx_fail("%s: q %s is empty: batch, heads, T and d must be >= 1", OP,
                      jbx_shape_str(q, a, sizeof a));
  switch (func) {
  case JBX_ATTN_DENSE: case JBX_ATTN_BLOCK: case JBX_ATTN_TRANSPOSE_BLOCK: case JBX_ATTN_PREV_BLOCK:
    break;
  case JBX_ATTN_SUMMARY: return jbx_fail("%s: attn_func 4 (summary) is not implemented", OP);
  case JBX_ATTN_SUMMARY_SPREAD:
    return jbx_fail("%s: attn_func 5 (summary spread) is not implemented", OP);
  case JBX_ATTN_ENC_DEC:
    return jbx_fail("%s: attn_func 6 (encoder-decoder) is not implemented yet", OP);
  case JBX_ATTN_PRIME: return jbx_fail("%s: attn_func 7 (prime) is not implemented yet", OP);
  default:
    return jbx_fail("%s: unknown attn_func %d (0 dense, 1 block, 2 transposed block, 3 previous "
                    "block)", OP, func);
  }
  const int64_t T = q->shape[2], d = q->shape[3];
  if (func != JBX_ATTN_DENSE) {
    if (bc < 1)
      return jbx_fail("%s: block_ctx must be >= 1 for attn_func %d, got %lld", OP, func,
                      (long long)bc);
    if (T % bc != 0)
      return jbx_fail("%s: T = %lld (q %s) is not a multiple of block_ctx %lld", OP, (long long)T,
                      jbx_shape_str(q, a, sizeof a), (long long)bc);
  }
  if (T > INT_MAX || (func == JBX_ATTN_TRANSPOSE_BLOCK ? bc * d : d) > INT_MAX)
    return jbx_fail("%s: q %s is too large for BLAS", OP, jbx_shape_str(q, a, sizeof a));
  return 0;
}

static int attn_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  jbx_tensor *q = nd->in[0], *k = nd->in[1], *v = nd->in[2], *lse = nd->saved[0];
  const attn_params *pp = JBX_NODE_PARAMS(nd, attn_params);
  plan p = make_plan(pp->func, q->shape[0], q->shape[1], q->shape[2], q->shape[3], pp->block_ctx);
  jbx_tensor *qc = jbx_plain(q), *kc = jbx_plain(k), *vc = jbx_plain(v), *oc = jbx_plain(out),
             *go = jbx_plain(gout);
  jbx_tensor *gq = NULL, *gk = NULL, *gv = NULL;
  int rc = qc && kc && vc && oc && go ? 0 : -1;
  if (rc == 0 && q->requires_grad && !(gq = jbx_zeros(4, q->shape))) rc = -1;
  if (rc == 0 && k->requires_grad && !(gk = jbx_zeros(4, k->shape))) rc = -1;
  if (rc == 0 && v->requires_grad && !(gv = jbx_zeros(4, v->shape))) rc = -1;
  if (rc == 0)
    rc = run_backward(&p, jbx_f32(qc), jbx_f32(kc), jbx_f32(vc), jbx_f32(oc), jbx_f32(go),
                      jbx_f32(lse), gq ? jbx_f32(gq) : NULL, gk ? jbx_f32(gk) : NULL,
                      gv ? jbx_f32(gv) : NULL);
  jbx_release(qc);
  jbx_release(kc);
  jbx_release(vc);
  jbx_release(oc);
  jbx_release(go);
  return jbx_give_grads(rc, 3, nd->in, (jbx_tensor *[]){gq, gk, gv});
}

jbx_tensor *jbx_attention(jbx_tensor *q, jbx_tensor *k, jbx_tensor *v, const jbx_attn_opts *o) {
  jbx_attn_opts dflt = {.attn_func = JBX_ATTN_DENSE, .block_ctx = 0};
  if (!o) o = &dflt;
  if (check_inputs(q, k, v, o->attn_func, o->block_ctx) < 0) return NULL;
  jbx_tensor *all[3] = {q, k, v};
  const bool record = jbx_needs_grad(3, all);
  plan p = make_plan(o->attn_func, q->shape[0], q->shape[1], q->shape[2], q->shape[3],
                     o->block_ctx);
  jbx_tensor *qc = jbx_plain(q), *kc = jbx_plain(k), *vc = jbx_plain(v);
  jbx_tensor *out = qc && kc && vc ? jbx_empty(JBX_F32, 4, q->shape) : NULL;
  jbx_tensor *lse = out ? jbx_empty(JBX_F32, 3, q->shape) : NULL;
  if (out && (!lse || run_forward(&p, jbx_f32(qc), jbx_f32(kc), jbx_f32(vc), jbx_f32(out),
                                  jbx_f32(lse)) < 0)) {
    jbx_release(out);
    out = NULL;
  }
  jbx_release(qc);
  jbx_release(kc);
  jbx_release(vc);
  if (out && record) {
    attn_params pp = {o->attn_func, o->block_ctx};
    jbx_node *nd = JBX_RECORD(out, OP, attn_backward, 3, all, pp);
    if (!nd || jbx_node_save(nd, lse) < 0) {
      jbx_release(out);
      out = NULL;
    }
  }
  jbx_release(lse);
  return out;
}
