/* The residual block of Resnet1D, fused: y = x + w1 * relu(w3 (*)_d relu(x) + b3) + b1,
 * forward and backward side by side (declared in jbx_resblock.h).
 *
 * Built from separate ops the block stores five full activations (relu, conv, relu, conv,
 * add); here the work is cut into panels (a slice of one item's positions) and a panel's
 * whole forward stays in cache: cols = im2col(relu(x)) (the relu applied while copying),
 * h = relu(w3 cols + b3) (bias pre-filled, sgemm with beta = 1), then y = (x + b1) + w1 h
 * (residual and bias pre-filled into y, sgemm adding into it). Only y reaches memory.
 *
 * What the backward keeps (jbx_res_conv_block_ex's recompute): by default only x (retained;
 * the graph holds it anyway as the previous op's output) and the weights, and h is
 * recomputed per panel in the backward: one more conv3 product, 22 instead of 16 flops per
 * weight and position (Jukebox's checkpoint_res). Or h too, one more [B, S, L] activation
 * per block. Measured (2 shared cores): keeping h makes a block's forward + backward
 * (B=4 C=S=64 L=11008 d=9) about 13% faster and a jukebox-preset training step (batch
 * 4 x 22016) about 11% faster, but the step's peak grows from 879 MB to 1385 MB.
 *
 * Backward, pass 1 per panel: recompute cols (and h unless kept); gb1 += row sums of gy; gw1 += gy h^T;
 * gc = (w1^T gy) * (h > 0); gb3 += row sums of gc; gw3 += gc cols^T. Pass 2 per panel
 * needs gc at +-d around the panel, so pass 1 writes gc into a [B, S, L] buffer: ga is
 * the convolution of gc with w3 transposed and flipped, and gx = gy + ga * (x > 0).
 *
 * Threads: OpenMP over panels, with each panel's sgemm single-threaded (the OpenMP build
 * of OpenBLAS runs serially inside a parallel region), so the copies and elementwise
 * passes run in parallel too, and one fork/join serves a whole pass (with OpenMP's
 * default active waiting, OpenBLAS forking for each panel-sized sgemm ran 10x slower on
 * 2 cores shared with other work). Panels go to threads as they
 * come; weight gradients are summed per fixed chunk of panels and then in chunk order,
 * so the result has the same bits for any thread count and on every run. */
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "im2col.h"
#include "jbx_buffer.h"
#include "jbx_error.h"
#include "jbx_gemm.h"
#include "jbx_ops.h"
#include "jbx_resblock.h"
#include "kernels.h"
#include "op_kit.h"

/* Floats in a panel's column matrix [3 * channels, nt] (1 MB): sgemm runs at full speed
 * and cols, h and the y panel stay in the core's cache. */
#ifndef RES_PANEL_FLOATS
#define RES_PANEL_FLOATS (256 * 1024)
#endif

static const char *OP = "res_conv_block";

/* ------------------------------------------------------------ geometry */

typedef struct {
  int64_t B, C, S, L, d;
  int64_t nt;       /* positions per panel */
  int64_t per_item; /* panels per item */
  int64_t panels;
} rgeom;

static rgeom make_geom(int64_t B, int64_t C, int64_t S, int64_t L, int64_t d) {
  rgeom g = {.B = B, .C = C, .S = S, .L = L, .d = d};
  int64_t rows = 3 * (C > S ? C : S);
  int64_t want = RES_PANEL_FLOATS / rows;
  want = want < 256 ? 256 : want > 4096 ? 4096 : want;
  g.per_item = (L + want - 1) / want; /* even slices of about `want` positions */
  g.nt = (L + g.per_item - 1) / g.per_item;
  g.panels = B * g.per_item;
  return g;
}

/* Panel p: item *b, positions [*t0, *t0 + return value). */
static int64_t panel_at(const rgeom *g, int64_t p, int64_t *b, int64_t *t0) {
  *b = p / g->per_item;
  *t0 = (p % g->per_item) * g->nt;
  return g->L - *t0 < g->nt ? g->L - *t0 : g->nt;
}

/* ------------------------------------------------------------ per-thread scratch */

/* Grown on demand and kept: OpenMP's threads live on, so a training step reuses them
 * instead of faulting in fresh pages (about 20 us per 4 KB page here). */
enum { SC_COLS, SC_H, SC_GC, SC_GA, SC_N };
static _Thread_local struct {
  void *p;
  size_t n;
} scratch[SC_N];

static void *scratch_get(int slot, size_t bytes) {
  if (scratch[slot].n >= bytes) return scratch[slot].p;
  free(scratch[slot].p);
  scratch[slot].p = malloc(bytes ? bytes : 1);
  scratch[slot].n = scratch[slot].p ? bytes : 0;
  return scratch[slot].p;
}

/* How many threads for n panels: never more than panels. */
static int threads_for(int64_t panels) {
  int nth = omp_get_max_threads();
  if (nth > panels) nth = (int)panels;
  return nth < 1 ? 1 : nth;
}

/* ------------------------------------------------------------ panel kernels */

/* cols [3C, n]: row c*3 + k holds src[c][t0 + j + (k - 1) d] for j < n, 0 outside
 * [0, L), through relu when asked: the conv engine's stride-1 im2col row. */
static void im2col3(const float *src, int64_t C, int64_t L, int64_t d, int64_t t0, int64_t n,
                    float *cols, int relu) {
  for (int64_t c = 0; c < C; c++)
    for (int k = 0; k < 3; k++)
      jbx_im2col_row(src + c * L, L, t0 + (k - 1) * d, n, cols + (c * 3 + k) * n, relu != 0);
}

/* h [S, n] (row stride ldh) = relu(w3 cols + b3). */
static void hidden(const rgeom *g, const float *w3, const float *b3, const float *cols, int64_t n,
                   float *h, int64_t ldh) {
  const int64_t S = g->S, CK = 3 * g->C;
  for (int64_t s = 0; s < S; s++) {
    float v = b3 ? b3[s] : 0.0f, *r = h + s * ldh;
    for (int64_t j = 0; j < n; j++) r[j] = v;
  }
  jbx_sgemm(CblasNoTrans, CblasNoTrans, (int)S, (int)n, (int)CK, 1.0f, w3,
            (int)CK, cols, (int)n, 1.0f, h, (int)ldh);
  for (int64_t s = 0; s < S; s++) jbx_relu_inplace(h + s * ldh, n);
}

/* Sum of r[0..n) in eight float chains (vectorised), returned as double. */
static double row_sum(const float *r, int64_t n) {
  float a[8] = {0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; u++) a[u] += r[j + u];
  double s = 0;
  for (; j < n; j++) s += r[j];
  for (int u = 0; u < 8; u++) s += a[u];
  return s;
}

/* Forward of panel p: y (and hkeep when given) for its positions. */
static void forward_panel(const rgeom *g, const float *x, const float *w3, const float *b3,
                          const float *w1, const float *b1, float *y, float *hkeep, int64_t p,
                          float *cols, float *hbuf) {
  const int64_t C = g->C, S = g->S, L = g->L;
  int64_t b, t0, n = panel_at(g, p, &b, &t0);
  const float *xb = x + b * C * L;
  float *h = hkeep ? hkeep + b * S * L + t0 : hbuf;
  int64_t ldh = hkeep ? L : n;
  im2col3(xb, C, L, g->d, t0, n, cols, 1);
  hidden(g, w3, b3, cols, n, h, ldh);
  float *yb = y + b * C * L + t0;
  for (int64_t c = 0; c < C; c++) {
    const float *xr = xb + c * L + t0;
    float *yr = yb + c * L, v = b1 ? b1[c] : 0.0f;
    for (int64_t j = 0; j < n; j++) yr[j] = xr[j] + v;
  }
  jbx_sgemm(CblasNoTrans, CblasNoTrans, (int)C, (int)n, (int)S, 1.0f, w1, (int)S,
            h, (int)ldh, 1.0f, yb, (int)L);
}

/* Which gradients the backward computes. */
typedef struct {
  bool x, w3, b3, w1, b1;
} wants;

/* Partial weight and bias gradients of a chunk of panels. */
typedef struct {
  float *gw1, *gw3;  /* [C, S], [S, 3C] */
  double *gb1, *gb3; /* [C], [S] */
} partials;

/* Pass 1 of the backward for panel p: accumulates into acc, writes gc (into gcall when
 * the input gradient is wanted, else into gcbuf). */
static void backward_panel1(const rgeom *g, const wants *need, const float *x, const float *w3,
                            const float *b3, const float *w1, const float *gy, const float *hkeep,
                            float *gcall, int64_t p, float *cols, float *hbuf, float *gcbuf,
                            partials *acc) {
  const int64_t C = g->C, S = g->S, L = g->L, CK = 3 * C;
  int64_t b, t0, n = panel_at(g, p, &b, &t0);
  const bool need_gc = need->x || need->w3 || need->b3;
  const float *gyb = gy + b * C * L + t0;
  if (need->b1)
    for (int64_t c = 0; c < C; c++) acc->gb1[c] += row_sum(gyb + c * L, n);
  if (!need_gc && !need->w1) return;
  if (need->w3 || !hkeep) im2col3(x + b * C * L, C, L, g->d, t0, n, cols, 1);
  const float *h = hkeep ? hkeep + b * S * L + t0 : hbuf;
  int64_t ldh = hkeep ? L : n;
  if (!hkeep) hidden(g, w3, b3, cols, n, hbuf, n);
  if (need->w1)
    jbx_sgemm(CblasNoTrans, CblasTrans, (int)C, (int)S, (int)n, 1.0f, gyb, (int)L,
              h, (int)ldh, 1.0f, acc->gw1, (int)S);
  if (!need_gc) return;
  float *gc = need->x ? gcall + b * S * L + t0 : gcbuf;
  int64_t ldg = need->x ? L : n;
  jbx_sgemm(CblasTrans, CblasNoTrans, (int)S, (int)n, (int)C, 1.0f, w1, (int)S,
            gyb, (int)L, 0.0f, gc, (int)ldg);
  for (int64_t s = 0; s < S; s++) {
    float *r = gc + s * ldg;
    jbx_relu_backward_inplace(r, h + s * ldh, n);
    if (need->b3) acc->gb3[s] += row_sum(r, n);
  }
  if (need->w3)
    jbx_sgemm(CblasNoTrans, CblasTrans, (int)S, (int)CK, (int)n, 1.0f, gc,
              (int)ldg, cols, (int)n, 1.0f, acc->gw3, (int)CK);
}

/* Pass 2 for panel p: gx = gy + (conv of gc with wt) * (x > 0); wt [C, 3S] is w3
 * transposed and flipped in its kernel. */
static void backward_panel2(const rgeom *g, const float *x, const float *wt, const float *gy,
                            const float *gcall, float *gx, int64_t p, float *gcols, float *ga) {
  const int64_t C = g->C, S = g->S, L = g->L, SK = 3 * S;
  int64_t b, t0, n = panel_at(g, p, &b, &t0);
  im2col3(gcall + b * S * L, S, L, g->d, t0, n, gcols, 0);
  jbx_sgemm(CblasNoTrans, CblasNoTrans, (int)C, (int)n, (int)SK, 1.0f, wt,
            (int)SK, gcols, (int)n, 0.0f, ga, (int)n);
  const int64_t base = b * C * L + t0;
  for (int64_t c = 0; c < C; c++) {
    const float *restrict gyr = gy + base + c * L, *restrict xr = x + base + c * L,
                          *restrict gar = ga + c * n;
    float *restrict gxr = gx + base + c * L;
    for (int64_t j = 0; j < n; j++) gxr[j] = gyr[j] + jbx_relu_grad_f(gar[j], xr[j]);
  }
}

/* ------------------------------------------------------------ drivers */

static int out_of_memory(const char *what) {
  return jbx_fail("%s: out of memory for %s", OP, what);
}

/* The whole forward; hkeep may be NULL. 0 or -1. */
static int run_forward(const rgeom *g, const float *x, const float *w3, const float *b3,
                       const float *w1, const float *b1, float *y, float *hkeep) {
  int nth = threads_for(g->panels), failed = 0;
  size_t cols_bytes = (size_t)(3 * g->C * g->nt) * sizeof(float);
  size_t h_bytes = (size_t)(g->S * g->nt) * sizeof(float);
#pragma omp parallel num_threads(nth) if (nth > 1)
  {
    float *cols = scratch_get(SC_COLS, cols_bytes);
    float *hbuf = hkeep ? NULL : scratch_get(SC_H, h_bytes);
    int ok = cols && (hkeep || hbuf);
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < g->panels; p++)
      if (ok) forward_panel(g, x, w3, b3, w1, b1, y, hkeep, p, cols, hbuf);
  }
  return failed ? out_of_memory("its work buffers") : 0;
}

/* Pass 1's weight gradients are summed per chunk of panels, then over chunks in order:
 * the same bits for any thread count, while threads take chunks as they come (dynamic
 * scheduling copes with a core shared with other work). */
#define MAX_CHUNKS 16

/* Chunk k's partials inside buf: doubles first (aligned), then floats. */
static partials chunk_partials(char *buf, size_t slot_bytes, int64_t k, int64_t C, int64_t S) {
  partials a;
  a.gb1 = (double *)(buf + (size_t)k * slot_bytes);
  a.gb3 = a.gb1 + C;
  a.gw1 = (float *)(a.gb3 + S);
  a.gw3 = a.gw1 + C * S;
  return a;
}

/* The whole backward into the given outputs (NULL where not wanted). 0 or -1. */
static int run_backward(const rgeom *g, const wants *need, const float *x, const float *w3,
                        const float *b3, const float *w1, const float *gy, const float *hkeep,
                        float *gcall, const float *wt, float *gx, float *gw3, float *gb3,
                        float *gw1, float *gb1) {
  const int64_t C = g->C, S = g->S, P = g->panels;
  const int64_t nchunk = P < MAX_CHUNKS ? P : MAX_CHUNKS;
  int nth = threads_for(nchunk), failed = 0;
  size_t cols_bytes = (size_t)(3 * (C > S ? C : S) * g->nt) * sizeof(float);
  size_t s_bytes = (size_t)(S * g->nt) * sizeof(float);
  size_t c_bytes = (size_t)(C * g->nt) * sizeof(float);
  size_t nw1 = (size_t)(C * S), nw3 = (size_t)(S * 3 * C);
  size_t slot_bytes = ((nw1 + nw3) * sizeof(float) + (size_t)(C + S) * sizeof(double) + 63) / 64 * 64;
  size_t all_bytes = slot_bytes * (size_t)(nchunk ? nchunk : 1);
  char *slots = jbx_buffer_alloc(all_bytes); /* cached: no fresh pages per call */
  if (!slots) return out_of_memory("its work buffers");
#pragma omp parallel num_threads(nth) if (nth > 1)
  {
    float *cols = scratch_get(SC_COLS, cols_bytes);
    float *hbuf = hkeep ? NULL : scratch_get(SC_H, s_bytes);
    float *gcbuf = need->x ? NULL : scratch_get(SC_GC, s_bytes);
    float *ga = need->x ? scratch_get(SC_GA, c_bytes) : NULL;
    int ok = cols && (hkeep || hbuf) && (need->x ? ga != NULL : gcbuf != NULL);
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t k = 0; k < nchunk; k++) {
      if (!ok) continue;
      memset(slots + (size_t)k * slot_bytes, 0, slot_bytes);
      partials acc = chunk_partials(slots, slot_bytes, k, C, S);
      for (int64_t p = k * P / nchunk; p < (k + 1) * P / nchunk; p++)
        backward_panel1(g, need, x, w3, b3, w1, gy, hkeep, gcall, p, cols, hbuf, gcbuf, &acc);
    }
    /* the implicit barrier: all of gc is written before pass 2 reads around panels */
    if (need->x) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t p = 0; p < P; p++)
        if (ok && !failed) backward_panel2(g, x, wt, gy, gcall, gx, p, cols, ga);
    }
  }
  if (!failed) {
    if (gw1) memset(gw1, 0, nw1 * sizeof(float));
    if (gw3) memset(gw3, 0, nw3 * sizeof(float));
    for (int64_t k = 0; k < nchunk; k++) {
      partials a = chunk_partials(slots, slot_bytes, k, C, S);
      for (size_t i = 0; gw1 && i < nw1; i++) gw1[i] += a.gw1[i];
      for (size_t i = 0; gw3 && i < nw3; i++) gw3[i] += a.gw3[i];
    }
    for (int64_t c = 0; gb1 && c < C; c++) {
      double v = 0;
      for (int64_t k = 0; k < nchunk; k++) v += chunk_partials(slots, slot_bytes, k, C, S).gb1[c];
      gb1[c] = (float)v;
    }
    for (int64_t s = 0; gb3 && s < S; s++) {
      double v = 0;
      for (int64_t k = 0; k < nchunk; k++) v += chunk_partials(slots, slot_bytes, k, C, S).gb3[s];
      gb3[s] = (float)v;
    }
  }
  jbx_buffer_free(slots, all_bytes);
  return failed ? out_of_memory("its work buffers") : 0;
}

/* ------------------------------------------------------------ the op */

static int check_inputs(const jbx_tensor *x, const jbx_tensor *w3, const jbx_tensor *b3,
                        const jbx_tensor *w1, const jbx_tensor *b1, int dilation) {
  char a[160], b[160], c[160];
  if (!x || !w3 || !w1) return jbx_fail("%s: input, weight3 and weight1 are required", OP);
  if (jbx_check_f32(OP, "input", x) < 0 || jbx_check_f32(OP, "weight3", w3) < 0 ||
      jbx_check_f32(OP, "bias3", b3) < 0 || jbx_check_f32(OP, "weight1", w1) < 0 ||
      jbx_check_f32(OP, "bias1", b1) < 0)
    return -1;
  if (x->ndim != 3)
    return jbx_fail("%s: input %s must be 3-D [batch, channels, length]", OP,
                    jbx_shape_str(x, a, sizeof a));
  const int64_t C = x->shape[1];
  if (w3->ndim != 3 || w3->shape[1] != C || w3->shape[2] != 3)
    return jbx_fail("%s: weight3 %s must be [state, %lld, 3] for input %s", OP,
                    jbx_shape_str(w3, a, sizeof a), (long long)C, jbx_shape_str(x, b, sizeof b));
  const int64_t S = w3->shape[0];
  if (w1->ndim != 3 || w1->shape[0] != C || w1->shape[1] != S || w1->shape[2] != 1)
    return jbx_fail("%s: weight1 %s must be [%lld, %lld, 1] for input %s and weight3 %s", OP,
                    jbx_shape_str(w1, a, sizeof a), (long long)C, (long long)S,
                    jbx_shape_str(x, b, sizeof b), jbx_shape_str(w3, c, sizeof c));
  if (b3 && (b3->ndim != 1 || b3->shape[0] != S))
    return jbx_fail("%s: bias3 %s must be [%lld], one value per state channel of weight3 %s", OP,
                    jbx_shape_str(b3, a, sizeof a), (long long)S, jbx_shape_str(w3, b, sizeof b));
  if (b1 && (b1->ndim != 1 || b1->shape[0] != C))
    return jbx_fail("%s: bias1 %s must be [%lld], one value per channel of input %s", OP,
                    jbx_shape_str(b1, a, sizeof a), (long long)C, jbx_shape_str(x, b, sizeof b));
  if (dilation < 1) return jbx_fail("%s: dilation must be >= 1, got %d", OP, dilation);
  if (C < 1 || S < 1 || x->shape[2] < 1)
    return jbx_fail("%s: input %s with weight3 %s is empty: channels, state and length must be "
                    ">= 1", OP, jbx_shape_str(x, a, sizeof a), jbx_shape_str(w3, b, sizeof b));
  if (3 * C > INT_MAX || 3 * S > INT_MAX || x->shape[2] > INT_MAX)
    return jbx_fail("%s: input %s with weight3 %s is too large for BLAS (a matrix side exceeds "
                    "%d)", OP, jbx_shape_str(x, a, sizeof a), jbx_shape_str(w3, b, sizeof b),
                    INT_MAX);
  return 0;
}

static const float *data_or_null(const jbx_tensor *t) { return t ? jbx_f32(t) : NULL; }

/* The node: in = {x, w3, b3 or NULL, w1, b1 or NULL}; h, when kept, is saved[0]. */
typedef struct {
  int64_t dilation;
} res_params;

static int res_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  jbx_tensor *x = nd->in[0], *w3 = nd->in[1], *b3 = nd->in[2], *w1 = nd->in[3], *b1 = nd->in[4];
  wants need = {x->requires_grad, w3->requires_grad, b3 && b3->requires_grad, w1->requires_grad,
                b1 && b1->requires_grad};
  rgeom g = make_geom(x->shape[0], x->shape[1], w3->shape[0], x->shape[2],
                      JBX_NODE_PARAMS(nd, res_params)->dilation);
  const int64_t C = g.C, S = g.S;
  jbx_tensor *gy = jbx_plain(gout), *xc = jbx_plain(x), *w3c = jbx_plain(w3), *b3c = jbx_plain(b3),
             *w1c = jbx_plain(w1);
  jbx_tensor *gx = NULL, *gw3 = NULL, *gb3 = NULL, *gw1 = NULL, *gb1 = NULL, *gcall = NULL;
  float *wt = NULL;
  int rc = gy && xc && w3c && w1c && (b3c || !b3) ? 0 : -1;
  int64_t sgc[3] = {g.B, S, g.L};
  if (rc == 0 && need.x) {
    gx = jbx_empty(JBX_F32, 3, x->shape);
    gcall = jbx_empty(JBX_F32, 3, sgc);
    wt = malloc((size_t)(C * 3 * S) * sizeof *wt);
    if (!gx || !gcall || !wt) rc = wt ? -1 : out_of_memory("the kernel transpose");
    const float *w = rc == 0 ? jbx_f32(w3c) : NULL;
    for (int64_t c = 0; w && c < C; c++)
      for (int64_t s = 0; s < S; s++)
        for (int k = 0; k < 3; k++) wt[(c * S + s) * 3 + k] = w[(s * C + c) * 3 + (2 - k)];
  }
  if (rc == 0 && need.w3 && !(gw3 = jbx_empty(JBX_F32, 3, w3->shape))) rc = -1;
  if (rc == 0 && need.b3 && !(gb3 = jbx_empty(JBX_F32, 1, b3->shape))) rc = -1;
  if (rc == 0 && need.w1 && !(gw1 = jbx_empty(JBX_F32, 3, w1->shape))) rc = -1;
  if (rc == 0 && need.b1 && !(gb1 = jbx_empty(JBX_F32, 1, b1->shape))) rc = -1;
  jbx_tensor *hkeep = nd->n_saved ? nd->saved[0] : NULL;
  if (rc == 0)
    rc = run_backward(&g, &need, jbx_f32(xc), jbx_f32(w3c), data_or_null(b3c), jbx_f32(w1c),
                      jbx_f32(gy), data_or_null(hkeep), gcall ? jbx_f32(gcall) : NULL, wt,
                      gx ? jbx_f32(gx) : NULL, gw3 ? jbx_f32(gw3) : NULL,
                      gb3 ? jbx_f32(gb3) : NULL, gw1 ? jbx_f32(gw1) : NULL,
                      gb1 ? jbx_f32(gb1) : NULL);
  free(wt);
  jbx_release(gcall);
  jbx_release(gy);
  jbx_release(xc);
  jbx_release(w3c);
  jbx_release(b3c);
  jbx_release(w1c);
  return jbx_give_grads(rc, 5, nd->in, (jbx_tensor *[]){gx, gw3, gb3, gw1, gb1});
}

jbx_tensor *jbx_res_conv_block_ex(jbx_tensor *x, jbx_tensor *w3, jbx_tensor *b3, jbx_tensor *w1,
                                  jbx_tensor *b1, int dilation, bool recompute) {
  if (check_inputs(x, w3, b3, w1, b1, dilation) < 0) return NULL;
  jbx_tensor *all[5] = {x, w3, b3, w1, b1};
  bool record = jbx_needs_grad(5, all);
  rgeom g = make_geom(x->shape[0], x->shape[1], w3->shape[0], x->shape[2], dilation);
  jbx_tensor *xc = jbx_plain(x), *w3c = jbx_plain(w3), *b3c = jbx_plain(b3), *w1c = jbx_plain(w1),
             *b1c = jbx_plain(b1), *hkeep = NULL;
  jbx_tensor *out = xc && w3c && w1c && (b3c || !b3) && (b1c || !b1)
                        ? jbx_empty(JBX_F32, 3, x->shape)
                        : NULL;
  int64_t sh[3] = {g.B, g.S, g.L};
  if (out && record && !recompute && !(hkeep = jbx_empty(JBX_F32, 3, sh))) {
    jbx_release(out);
    out = NULL;
  }
  if (out && run_forward(&g, jbx_f32(xc), jbx_f32(w3c), data_or_null(b3c), jbx_f32(w1c),
                         data_or_null(b1c), jbx_f32(out), hkeep ? jbx_f32(hkeep) : NULL) < 0) {
    jbx_release(out);
    out = NULL;
  }
  jbx_release(xc);
  jbx_release(w3c);
  jbx_release(b3c);
  jbx_release(w1c);
  jbx_release(b1c);
  if (out && record) {
    res_params p = {dilation};
    jbx_node *nd = JBX_RECORD(out, OP, res_backward, 5, all, p);
    if (!nd || (hkeep && jbx_node_save(nd, hkeep) < 0)) {
      jbx_release(out);
      out = NULL;
    }
  }
  jbx_release(hkeep);
  return out;
}

jbx_tensor *jbx_res_conv_block(jbx_tensor *x, jbx_tensor *w3, jbx_tensor *b3, jbx_tensor *w1,
                               jbx_tensor *b1, int dilation) {
  return jbx_res_conv_block_ex(x, w3, b3, w1, b1, dilation, true);
}
