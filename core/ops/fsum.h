/* Internal helpers shared by reduce.c, softmax.c and layer_norm.c: reduction geometry
 * and float row kernels that vectorise without -ffast-math (independent accumulators). */
#ifndef JBX_FSUM_H
#define JBX_FSUM_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "jbx_tensor.h"

/* Work (in elements) below which a loop stays on one thread. */
#define JBX_PAR_MIN 32768

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

/* jbx_zeros that also suits empty shapes (no memset on a NULL buffer). */
static inline jbx_tensor *jbx_zeros0(int ndim, const int64_t *shape) {
  jbx_tensor *t = jbx_empty(JBX_F32, ndim, shape);
  int64_t n = t ? jbx_numel(t) : 0;
  if (n) memset(jbx_f32(t), 0, (size_t)n * sizeof(float));
  return t;
}

#endif
