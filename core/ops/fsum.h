/* Internal helpers shared by reduce.c, softmax.c and layer_norm.c: reduction geometry
 * and float row kernels that vectorise without -ffast-math (independent accumulators). */
#ifndef JBX_FSUM_H
#define JBX_FSUM_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "jbx_tensor.h"

/* The kernels never read floating-point exception flags; without this GCC will not turn
 * the selects of max/min/clamp loops into vector blends (it keeps compares that may
 * trap under branches). Applies to the ops files that include this header. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

/* Work (in elements) below which a loop stays on one thread: waking a team costs a few
 * microseconds on an idle machine and far more on a busy one. */
#define JBX_PAR_MIN 65536

/* A contiguous tensor seen as [outer, n, inner] around the reduced dim. */
typedef struct {
  int64_t outer, n, inner;
} jbx_rgeom;

static inline jbx_rgeom jbx_rgeom_of(const jbx_tensor *t, int dim) {
  jbx_rgeom g = {1, 1, 1};
  for (int d = 0; d < t->ndim; d++) {
    if (d < dim) g.outer *= t->shape[d];
    else if (d == dim) g.n = t->shape[d];
    else g.inner *= t->shape[d];
  }
  return g;
}

/* Sum of x[0..n) in float lanes, flushed to double every block so long rows stay exact
 * to about float precision. */
static inline double jbx_fsum(const float *x, int64_t n) {
  double total = 0;
  for (int64_t b = 0; b < n; b += 4096) {
    int64_t e = b + 4096 < n ? b + 4096 : n, i = b;
    float acc[16] = {0};
    for (; i + 16 <= e; i += 16)
      for (int j = 0; j < 16; j++) acc[j] += x[i + j];
    float s = 0;
    for (; i < e; i++) s += x[i];
    for (int j = 0; j < 16; j++) s += acc[j];
    total += s;
  }
  return total;
}

/* Sum of x[i] * y[i]. */
static inline double jbx_fdot(const float *x, const float *y, int64_t n) {
  double total = 0;
  for (int64_t b = 0; b < n; b += 4096) {
    int64_t e = b + 4096 < n ? b + 4096 : n, i = b;
    float acc[16] = {0};
    for (; i + 16 <= e; i += 16)
      for (int j = 0; j < 16; j++) acc[j] += x[i + j] * y[i + j];
    float s = 0;
    for (; i < e; i++) s += x[i] * y[i];
    for (int j = 0; j < 16; j++) s += acc[j];
    total += s;
  }
  return total;
}

/* Largest value of x[0..n), n >= 1. NaNs are skipped here: callers (softmax, logsumexp)
 * propagate them through the exp that follows. */
static inline float jbx_fmax(const float *x, int64_t n) {
  float acc[16];
  int64_t i = 0;
  for (int j = 0; j < 16; j++) acc[j] = -INFINITY;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  float m = -INFINITY;
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  for (int j = 0; j < 16; j++) m = acc[j] > m ? acc[j] : m;
  return m;
}

/* Writes y[i] = exp(x[i] - c) (into a scratch block when y is NULL) and returns their
 * sum. The exps and the sum run as separate tight loops. */
static inline double jbx_exp_sum(const float *x, float *y, int64_t n, float c) {
  float buf[512];
  double s = 0;
  for (int64_t b = 0; b < n; b += 512) {
    int64_t len = n - b < 512 ? n - b : 512;
    float *dst = y ? y + b : buf;
    for (int64_t i = 0; i < len; i++) dst[i] = expf(x[b + i] - c);
    s += jbx_fsum(dst, len);
  }
  return s;
}

/* jbx_zeros that also suits empty shapes (no memset on a NULL buffer). */
static inline jbx_tensor *jbx_zeros0(int ndim, const int64_t *shape) {
  jbx_tensor *t = jbx_empty(JBX_F32, ndim, shape);
  int64_t n = t ? jbx_numel(t) : 0;
  if (n) memset(jbx_f32(t), 0, (size_t)n * sizeof(float));
  return t;
}

#endif
