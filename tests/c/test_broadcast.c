/* The broadcasting iterator (core/ops/broadcast.c): result shapes, the merging of dims
 * (one flat row for same-shape contiguous operands, stride 0 for a scalar), a walk over
 * every element for broadcast and transposed operands (the tiled path), and errors. */
#include <stdint.h>

#include "check.h"
#include "jbx_broadcast.h"
#include "jbx_error.h"
#include "jbx_ops.h"

#define SH(...) ((const int64_t[]){__VA_ARGS__})

static void test_shapes(void) {
  jbx_tensor *a = jbx_zeros(3, SH(2, 1, 3)), *b = jbx_zeros(2, SH(4, 1)), *s = jbx_scalar(1);
  jbx_tensor *ts[3] = {a, b, s};
  int nd = 0;
  int64_t shape[JBX_MAX_DIMS];
  CHECK(jbx_broadcast_shape("op", 3, ts, &nd, shape) == 0, "%s", jbx_last_error());
  CHECK(nd == 3 && shape[0] == 2 && shape[1] == 4 && shape[2] == 3, "[2,1,3] x [4,1] x []");
  jbx_release(a), jbx_release(b), jbx_release(s);
}

static void test_merging(void) {
  jbx_tensor *o = jbx_zeros(3, SH(2, 3, 4)), *x = jbx_zeros(3, SH(2, 3, 4)), *s = jbx_scalar(1);
  jbx_tensor *ops[3] = {o, x, s};
  jbx_bcast it;
  CHECK(jbx_bcast_init(&it, 3, ops) == 0, "%s", jbx_last_error());
  CHECK(it.ndim == 1 && it.shape[0] == 24 && it.numel == 24, "same-shape contiguous: one row");
  CHECK(it.strides[1][0] == 1 && it.strides[2][0] == 0, "scalar operand: stride 0");
  jbx_release(o), jbx_release(x), jbx_release(s);
}

/* out = a + 10 * b by hand through the iterator. */
static void add10_row(int64_t n, char **p, const int64_t *s, const void *ctx) {
  float *o = (float *)p[0];
  const float *a = (const float *)p[1], *b = (const float *)p[2];
  for (int64_t i = 0; i < n; i++) o[i * s[0]] = a[i * s[1]] + 10 * b[i * s[2]];
}

static void test_walk(void) {
  /* a transposed [40, 30] view: a stride other than 0 or 1 in the last dim (tiles) */
  jbx_tensor *base = jbx_arange(0, 1200, 1), *m = jbx_view(base, 2, SH(30, 40));
  jbx_tensor *a = jbx_transpose(m, 0, 1), *b = jbx_arange(0, 30, 1);
  jbx_tensor *out = jbx_empty(JBX_F32, 2, SH(40, 30));
  jbx_tensor *ops[3] = {out, a, b};
  jbx_bcast it;
  CHECK(jbx_bcast_init(&it, 3, ops) == 0, "%s", jbx_last_error());
  jbx_bcast_run(&it, add10_row, NULL, 1);
  int bad = 0;
  for (int64_t i = 0; i < 40; i++)
    for (int64_t j = 0; j < 30; j++) bad += jbx_f32(out)[i * 30 + j] != (float)(j * 40 + i + 10 * j);
  CHECK(bad == 0, "%d wrong elements after a transposed, broadcast walk", bad);
  jbx_release(base), jbx_release(m), jbx_release(a), jbx_release(b), jbx_release(out);
}

static void test_errors(void) {
  jbx_tensor *a = jbx_zeros(2, SH(2, 3)), *c = jbx_zeros(1, SH(5));
  jbx_tensor *m = jbx_zeros(1, SH(3)), *b = jbx_zeros(1, SH(4));
  /* the iterator's own check, for C callers that build it by hand */
  jbx_tensor *ops[2] = {a, c};
  jbx_bcast it;
  CHECK(jbx_bcast_init(&it, 2, ops) < 0, "bcast_init with a misfit");
  CHECK_ERROR_HAS("broadcast: operand [5] does not broadcast to [2, 3]");
  int nd;
  int64_t shape[JBX_MAX_DIMS];
  jbx_tensor *four[4] = {a, a, m, b};
  CHECK(jbx_broadcast_shape("op4", 4, four, &nd, shape) < 0, "four shapes");
  CHECK_ERROR_HAS("op4: shapes [2, 3], [2, 3], [3] and [4] cannot broadcast (dim 1: 3 vs 4)");
  jbx_release(a), jbx_release(c), jbx_release(m), jbx_release(b);
}

int main(void) {
  test_shapes();
  test_merging();
  test_walk();
  test_errors();
  return check_summary();
}
