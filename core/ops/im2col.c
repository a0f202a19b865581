/* im2col / col2im plus jbx_sgemm: the convolution products (see im2col.h).
 *
 * The columns of the problem (batch * out_len output positions) are cut into panels of
 * a few thousand columns: a slice of one long item, or several whole short items. Each panel
 * is one sgemm whose column matrix stays in cache; long items write their results in
 * place, grouped short items go through a small [channels, panel] buffer. */
#include "im2col.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "jbx_error.h"
#include "jbx_gemm.h"

/* Threads: only inside sgemm (jbx_sgemm). The copy loops here are memory-bound and cost a
 * fraction of the sgemm; running them in OpenMP regions next to a pthreads OpenBLAS makes
 * the two thread pools spin against each other (measured 10-20x slower on 2 cores). */

/* Floats per panel's column matrix (2 MB): big enough for sgemm to run at full speed,
 * small enough to stay in cache between im2col and sgemm. */
#ifndef PANEL_FLOATS
#define PANEL_FLOATS (512 * 1024)
#endif

/* Work buffers kept per thread and grown on demand, so a training step allocates
 * nothing after its first pass. */
enum { SCRATCH_COLS, SCRATCH_Y, SCRATCH_N };
static _Thread_local struct {
  float *p;
  size_t n;
} scratch[SCRATCH_N];

static float *scratch_get(const char *op, int slot, size_t n) {
  if (scratch[slot].n >= n) return scratch[slot].p;
  free(scratch[slot].p);
  scratch[slot].p = malloc((n ? n : 1) * sizeof(float));
  scratch[slot].n = scratch[slot].p ? n : 0;
  if (!scratch[slot].p) jbx_fail("%s: out of memory for a work buffer of %zu floats", op, n);
  return scratch[slot].p;
}

static void zero_floats(float *p, int64_t n) {
  if (n > 0) memset(p, 0, (size_t)n * sizeof(float));
}

/* Items b0..b0+nb-1, output positions t0..t0+nt-1 of each (nt = out_len when nb > 1). */
typedef struct {
  int64_t b0, nb, t0, nt;
} panel;

/* How the columns are cut: whole items per group, or column slices of one item. */
typedef struct {
  int64_t group;  /* items per panel (>= 1) */
  int64_t slice;  /* columns per panel when group == 1 */
  int64_t cols;   /* the largest panel's column count */
} tiling;

static tiling plan(const jbx_conv_geom *g) {
  tiling t;
  int64_t Lo = g->out_len, CK = g->in_ch * g->kernel;
  int64_t want = PANEL_FLOATS / (CK > 0 ? CK : 1);
  want = want < 256 ? 256 : want > 4096 ? 4096 : want;
  if (Lo >= want) { /* even slices, each about `want` columns */
    int64_t n = (Lo + want - 1) / want;
    t.group = 1;
    t.slice = (Lo + n - 1) / n;
    t.cols = t.slice;
  } else {
    t.group = want / Lo;
    if (t.group > g->batch) t.group = g->batch;
    if (t.group < 1) t.group = 1;
    t.slice = Lo;
    t.cols = t.group * Lo;
  }
  return t;
}

/* Visits the panels in order: p starts zeroed; returns 0 when done. */
static int next_panel(const jbx_conv_geom *g, const tiling *t, panel *p) {
  if (p->nb == 0) { /* first */
    p->b0 = 0;
    p->t0 = 0;
  } else if (t->group == 1 && p->t0 + p->nt < g->out_len) {
    p->t0 += p->nt;
  } else {
    p->b0 += p->nb;
    p->t0 = 0;
  }
  if (p->b0 >= g->batch) return 0;
  p->nb = g->batch - p->b0 < t->group ? g->batch - p->b0 : t->group;
  p->nt = t->group == 1 ? (g->out_len - p->t0 < t->slice ? g->out_len - p->t0 : t->slice)
                        : g->out_len;
  return 1;
}

/* One sgemm dimension each; BLAS takes int. */
static int check_sizes(const char *op, const jbx_conv_geom *g) {
  if (g->out_ch > INT_MAX || g->in_ch * g->kernel > INT_MAX || g->out_len > INT_MAX ||
      g->in_len > INT_MAX)
    return jbx_fail("%s: tensor too large for BLAS (a matrix side exceeds %d)", op, INT_MAX);
  return 0;
}

/* Kernel 1 without stride or padding: x itself is the column matrix. */
static int is_identity(const jbx_conv_geom *g) {
  return g->kernel == 1 && g->stride == 1 && g->padding == 0 && g->in_len == g->out_len;
}

/* Output positions t in [t0, t1) with 0 <= t*stride + off < in_len, as [*lo, *hi). */
static void valid_range(const jbx_conv_geom *g, int64_t off, int64_t t0, int64_t t1, int64_t *lo,
                        int64_t *hi) {
  int64_t s = g->stride;
  int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t last = g->in_len - 1 - off;
  int64_t b = last < 0 ? 0 : last / s + 1;
  /* both ends inside [t0, t1]: an empty range must not start before t0 (im2col zeroes
   * [t0, lo) and [hi, t1)), which happens when off reaches past the whole panel */
  a = a < t0 ? t0 : a > t1 ? t1 : a;
  b = b < t0 ? t0 : b > t1 ? t1 : b;
  if (a > b) a = b;
  *lo = a;
  *hi = b;
}

/* cols [in_ch*kernel, nb*nt] from panel p of x. */
static void im2col(const jbx_conv_geom *g, const float *x, const panel *p, float *cols) {
  const int64_t C = g->in_ch, K = g->kernel, Li = g->in_len, s = g->stride;
  const int64_t nt = p->nt, t0 = p->t0, ld = p->nb * nt;
  for (int64_t i = 0; i < p->nb; i++)
    for (int64_t c = 0; c < C; c++) {
      const float *src = x + ((p->b0 + i) * C + c) * Li;
      for (int64_t k = 0; k < K; k++) {
        float *row = cols + (c * K + k) * ld + i * nt; /* row[t - t0] is position t */
        int64_t off = k * g->dilation - g->padding, lo, hi;
        if (s == 1) {
          jbx_im2col_row(src, Li, t0 + off, nt, row, false);
          continue;
        }
        valid_range(g, off, t0, t0 + nt, &lo, &hi);
        zero_floats(row, lo - t0);
        for (int64_t t = lo; t < hi; t++) row[t - t0] = src[t * s + off];
        zero_floats(row + (hi - t0), t0 + nt - hi);
      }
    }
}

/* Adds cols [in_ch*kernel, nb*nt] of panel p into x at their input positions. An item's
 * first panel (t0 == 0) zeroes its rows first: while they are in cache, and touching
 * fresh memory once instead of twice. */
static void col2im(const jbx_conv_geom *g, const float *cols, const panel *p, float *x) {
  const int64_t C = g->in_ch, K = g->kernel, Li = g->in_len, s = g->stride;
  const int64_t nt = p->nt, t0 = p->t0, ld = p->nb * nt;
  for (int64_t i = 0; i < p->nb; i++)
    for (int64_t c = 0; c < C; c++) {
      float *dst = x + ((p->b0 + i) * C + c) * Li;
      if (t0 == 0) zero_floats(dst, Li);
      for (int64_t k = 0; k < K; k++) {
        const float *row = cols + (c * K + k) * ld + i * nt; /* row[t - t0] is position t */
        int64_t off = k * g->dilation - g->padding, lo, hi;
        valid_range(g, off, t0, t0 + nt, &lo, &hi);
        if (s == 1) {
          for (int64_t t = lo; t < hi; t++) dst[t + off] += row[t - t0];
        } else {
          for (int64_t t = lo; t < hi; t++) dst[t * s + off] += row[t - t0];
        }
      }
    }
}

/* ymat [out_ch, nb*out_len] <-> whole items b0..b0+nb-1 of y [batch, out_ch, out_len]. */
static void gather_y(const jbx_conv_geom *g, const float *y, const panel *p, float *ymat) {
  const int64_t C = g->out_ch, Lo = g->out_len, nb = p->nb;
  for (int64_t i = 0; i < nb; i++)
    for (int64_t c = 0; c < C; c++)
      memcpy(ymat + (c * nb + i) * Lo, y + ((p->b0 + i) * C + c) * Lo, (size_t)Lo * sizeof(float));
}

static void scatter_y(const jbx_conv_geom *g, const float *ymat, const panel *p, float *y) {
  const int64_t C = g->out_ch, Lo = g->out_len, nb = p->nb;
  for (int64_t i = 0; i < nb; i++)
    for (int64_t c = 0; c < C; c++)
      memcpy(y + ((p->b0 + i) * C + c) * Lo, ymat + (c * nb + i) * Lo, (size_t)Lo * sizeof(float));
}

/* The y side of panel p as a matrix: in place for one item, else gathered into buf. */
static const float *y_panel(const jbx_conv_geom *g, const float *y, const panel *p, float *buf,
                            int *ld) {
  if (p->nb == 1) {
    *ld = (int)g->out_len;
    return y + p->b0 * g->out_ch * g->out_len + p->t0;
  }
  gather_y(g, y, p, buf);
  *ld = (int)(p->nb * p->nt);
  return buf;
}

/* The column matrix of panel p: x itself for an identity conv on one item, else im2col. */
static const float *x_panel(const jbx_conv_geom *g, const float *x, const panel *p, float *buf,
                            int *ld) {
  if (p->nb == 1 && is_identity(g)) {
    *ld = (int)g->in_len;
    return x + p->b0 * g->in_ch * g->in_len + p->t0;
  }
  im2col(g, x, p, buf);
  *ld = (int)(p->nb * p->nt);
  return buf;
}

/* Scratch for a pass: cols [in_ch*kernel, panel] unless identity on single items,
 * ybuf [out_ch, panel] when items are grouped. */
static int get_buffers(const char *op, const jbx_conv_geom *g, const tiling *t, float **cols,
                       float **ybuf) {
  *cols = *ybuf = NULL;
  int need_cols = !(is_identity(g) && t->group == 1);
  if (need_cols &&
      !(*cols = scratch_get(op, SCRATCH_COLS, (size_t)(g->in_ch * g->kernel * t->cols))))
    return -1;
  if (t->group > 1 && !(*ybuf = scratch_get(op, SCRATCH_Y, (size_t)(g->out_ch * t->cols))))
    return -1;
  return 0;
}

int jbx_conv_gemm_forward(const char *op, const jbx_conv_geom *g, const float *x, const float *w,
                          float *y) {
  const int64_t B = g->batch, Co = g->out_ch, CK = g->in_ch * g->kernel, Lo = g->out_len;
  if (check_sizes(op, g) < 0) return -1;
  if (B * Co * Lo == 0) return 0;
  if (CK * g->in_len == 0) { /* empty input (storage may be NULL): all padding */
    zero_floats(y, B * Co * Lo);
    return 0;
  }
  tiling t = plan(g);
  float *cols, *ybuf;
  if (get_buffers(op, g, &t, &cols, &ybuf) < 0) return -1;
  panel p = {0};
  while (next_panel(g, &t, &p)) {
    int ldb;
    const float *xb = x_panel(g, x, &p, cols, &ldb);
    const int N = (int)(p.nb * p.nt);
    if (p.nb == 1) {
      jbx_sgemm(CblasNoTrans, CblasNoTrans, (int)Co, N, (int)CK, 1.0f, w, (int)CK,
                xb, ldb, 0.0f, y + p.b0 * Co * Lo + p.t0, (int)Lo);
    } else {
      jbx_sgemm(CblasNoTrans, CblasNoTrans, (int)Co, N, (int)CK, 1.0f, w, (int)CK,
                xb, ldb, 0.0f, ybuf, N);
      scatter_y(g, ybuf, &p, y);
    }
  }
  return 0;
}

int jbx_conv_gemm_backward_data(const char *op, const jbx_conv_geom *g, const float *gy,
                                const float *w, float *gx) {
  const int64_t B = g->batch, Co = g->out_ch, CK = g->in_ch * g->kernel, Lo = g->out_len;
  const int64_t nx = B * g->in_ch * g->in_len;
  if (check_sizes(op, g) < 0) return -1;
  if (nx == 0) return 0;
  if (Co * Lo == 0) {
    zero_floats(gx, nx);
    return 0;
  }
  tiling t = plan(g);
  float *gcols, *ybuf;
  if (get_buffers(op, g, &t, &gcols, &ybuf) < 0) return -1;
  const int direct = is_identity(g) && t.group == 1; /* every column written exactly once */
  panel p = {0};
  while (next_panel(g, &t, &p)) {
    int ldb;
    const float *yb = y_panel(g, gy, &p, ybuf, &ldb);
    const int N = (int)(p.nb * p.nt);
    if (direct) {
      jbx_sgemm(CblasTrans, CblasNoTrans, (int)CK, N, (int)Co, 1.0f, w, (int)CK,
                yb, ldb, 0.0f, gx + p.b0 * g->in_ch * g->in_len + p.t0, (int)g->in_len);
    } else {
      jbx_sgemm(CblasTrans, CblasNoTrans, (int)CK, N, (int)Co, 1.0f, w, (int)CK,
                yb, ldb, 0.0f, gcols, N);
      col2im(g, gcols, &p, gx);
    }
  }
  return 0;
}

int jbx_conv_gemm_backward_weight(const char *op, const jbx_conv_geom *g, const float *gy,
                                  const float *x, float *gw) {
  const int64_t B = g->batch, Co = g->out_ch, CK = g->in_ch * g->kernel, Lo = g->out_len;
  if (check_sizes(op, g) < 0) return -1;
  if (Co * CK == 0) return 0;
  if (B * Lo * g->in_len == 0) {
    zero_floats(gw, Co * CK);
    return 0;
  }
  tiling t = plan(g);
  float *cols, *ybuf;
  if (get_buffers(op, g, &t, &cols, &ybuf) < 0) return -1;
  panel p = {0};
  float beta = 0.0f;
  while (next_panel(g, &t, &p)) {
    int lda, ldb;
    const float *yb = y_panel(g, gy, &p, ybuf, &lda);
    const float *xb = x_panel(g, x, &p, cols, &ldb);
    jbx_sgemm(CblasNoTrans, CblasTrans, (int)Co, (int)CK, (int)(p.nb * p.nt), 1.0f,
              yb, lda, xb, ldb, beta, gw, (int)CK);
    beta = 1.0f;
  }
  return 0;
}

void jbx_conv_add_bias(float *t, int64_t batch, int64_t ch, int64_t len, const float *bias) {
  if (batch * ch * len == 0) return; /* empty storage may be NULL */
  for (int64_t b = 0; b < batch; b++)
    for (int64_t c = 0; c < ch; c++) {
      float *row = t + (b * ch + c) * len, v = bias[c];
      for (int64_t i = 0; i < len; i++) row[i] += v;
    }
}

void jbx_conv_sum_bias(const float *t, int64_t batch, int64_t ch, int64_t len, float *gb) {
  if (batch * len == 0) {
    zero_floats(gb, ch);
    return;
  }
  for (int64_t c = 0; c < ch; c++) {
    double s[4] = {0, 0, 0, 0}; /* four chains: the adds overlap instead of waiting */
    for (int64_t b = 0; b < batch; b++) {
      const float *row = t + (b * ch + c) * len;
      int64_t i = 0;
      for (; i + 4 <= len; i += 4) {
        s[0] += row[i];
        s[1] += row[i + 1];
        s[2] += row[i + 2];
        s[3] += row[i + 3];
      }
      for (; i < len; i++) s[0] += row[i];
    }
    gb[c] = (float)((s[0] + s[1]) + (s[2] + s[3]));
  }
}
