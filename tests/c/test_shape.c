/* Shape ops (core/ops/shape.c): concat, index_select, gather, to_dtype. Values by hand
 * and every error message (gradient checks: rows of op_table.h). */
#include <math.h>

#include "check.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "values.h"

static jbx_tensor *ints(int ndim, const int64_t *shape, const int32_t *v) { return jbx_from_ints(ndim, shape, v); }

/* ---------------------------------------------------------------- values */

static void test_concat_values(void) {
  jbx_tensor *a = ramp(2, (int64_t[]){2, 2}), *b = ramp(2, (int64_t[]){2, 3});
  jbx_tensor *ts[2] = {a, b};
  jbx_tensor *c = jbx_concat(2, ts, 1);
  check_shape("concat dim 1", c, 2, (int64_t[]){2, 5});
  check_values("concat dim 1", c, (double[]){0, 1, 0, 1, 2, 2, 3, 3, 4, 5}, 10, 0);
  jbx_release(c);
  jbx_tensor *bt = jbx_transpose(b, 0, 1); /* [3, 2], non-contiguous */
  jbx_tensor *ts2[2] = {a, bt};
  c = jbx_concat(2, ts2, -2);
  check_shape("concat dim -2", c, 2, (int64_t[]){5, 2});
  check_values("concat dim -2 (transposed input)", c, (double[]){0, 1, 2, 3, 0, 3, 1, 4, 2, 5}, 10, 0);
  jbx_release(c);
  jbx_tensor *i1 = ints(1, (int64_t[]){2}, (int32_t[]){7, 8}), *i2 = ints(1, (int64_t[]){1}, (int32_t[]){9});
  jbx_tensor *ti[2] = {i1, i2};
  c = jbx_concat(2, ti, 0);
  check_values("concat int32", c, (double[]){7, 8, 9}, 3, 0);
  CHECK(c && c->dtype == JBX_I32, "concat keeps int32");
  jbx_release(c);
  jbx_release(i1);
  jbx_release(i2);
  jbx_release(bt);
  jbx_release(a);
  jbx_release(b);
}

static void test_select_values(void) {
  jbx_tensor *a = ramp(2, (int64_t[]){3, 4});
  jbx_tensor *ix = ints(1, (int64_t[]){4}, (int32_t[]){2, 0, 2, 1});
  jbx_tensor *t = jbx_index_select(a, 0, ix);
  check_shape("index_select dim 0", t, 2, (int64_t[]){4, 4});
  check_values("index_select dim 0", t, (double[]){8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7}, 16, 0);
  jbx_release(t);
  jbx_tensor *ix2 = ints(1, (int64_t[]){2}, (int32_t[]){3, 0});
  t = jbx_index_select(a, -1, ix2);
  check_values("index_select dim -1", t, (double[]){3, 0, 7, 4, 11, 8}, 6, 0);
  jbx_release(t);

  /* gather along dim 1: out[i][j] = a[i][index[i][j]]; index may be smaller elsewhere. */
  jbx_tensor *gi = ints(2, (int64_t[]){2, 3}, (int32_t[]){3, 3, 0, 1, 2, 1});
  t = jbx_gather(a, 1, gi);
  check_shape("gather dim 1", t, 2, (int64_t[]){2, 3});
  check_values("gather dim 1", t, (double[]){3, 3, 0, 5, 6, 5}, 6, 0);
  jbx_release(t);
  jbx_tensor *g0 = ints(2, (int64_t[]){1, 4}, (int32_t[]){2, 0, 1, 2});
  t = jbx_gather(a, 0, g0);
  check_values("gather dim 0", t, (double[]){8, 1, 6, 11}, 4, 0);
  jbx_release(t);

  jbx_release(g0);
  jbx_release(gi);
  jbx_release(ix2);
  jbx_release(ix);
  jbx_release(a);
}

static void test_to_dtype(void) {
  jbx_tensor *f = jbx_from_floats(1, (int64_t[]){5}, (float[]){1.9f, -1.9f, 0, 7, -2147483648.0f});
  jbx_tensor *i = jbx_to_dtype(f, JBX_I32);
  CHECK(i && i->dtype == JBX_I32, "to int32");
  check_values("to int32 truncates", i, (double[]){1, -1, 0, 7, -2147483648.0}, 5, 0);
  jbx_tensor *back = jbx_to_dtype(i, JBX_F32);
  CHECK(back && back->dtype == JBX_F32, "to float32");
  check_values("to float32", back, (double[]){1, -1, 0, 7, -2147483648.0}, 5, 0);
  jbx_tensor *same = jbx_to_dtype(back, JBX_F32);
  CHECK(same && same != back && same->storage != back->storage, "same dtype gives a copy");
  jbx_release(same);
  jbx_release(back);
  jbx_release(i);
  jbx_release(f);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
  jbx_tensor *a = jbx_zeros(2, (int64_t[]){2, 3}), *b = jbx_zeros(2, (int64_t[]){3, 4});
  jbx_tensor *v = jbx_zeros(1, (int64_t[]){3}), *s = jbx_scalar(1);
  jbx_tensor *ia = jbx_from_ints(2, (int64_t[]){2, 3}, (int32_t[]){0, 0, 0, 0, 0, 0});
  jbx_tensor *ab[2] = {a, b}, *av[2] = {a, v}, *aia[2] = {a, ia}, *ss[2] = {s, s}, *an[2] = {a, NULL};

  CHECK(jbx_concat(2, ab, 1) == NULL, "concat mismatch");
  CHECK_ERROR_HAS("concat: tensor 1 [3, 4] does not match tensor 0 [2, 3] outside dim 1");
  CHECK(jbx_concat(2, av, 0) == NULL, "concat ndim");
  CHECK_ERROR_HAS("concat: tensor 1 [3] does not match tensor 0 [2, 3] outside dim 0");
  CHECK(jbx_concat(2, aia, 0) == NULL, "concat dtype");
  CHECK_ERROR_HAS("concat: tensor 1 is int32, tensor 0 is float32");
  CHECK(jbx_concat(0, ab, 0) == NULL, "concat none");
  CHECK_ERROR_HAS("concat: needs at least one tensor");
  CHECK(jbx_concat(2, ss, 0) == NULL, "concat 0-dim");
  CHECK_ERROR_HAS("concat: cannot concatenate 0-dim tensors");
  CHECK(jbx_concat(2, an, 0) == NULL, "concat NULL");
  CHECK_ERROR_HAS("concat: tensor 1 is NULL");
  CHECK(jbx_concat(2, ab, 2) == NULL, "concat dim");
  CHECK_ERROR_HAS("concat: dim 2 out of range for a tensor of shape [2, 3]");

  jbx_tensor *ix = jbx_from_ints(1, (int64_t[]){3}, (int32_t[]){0, 7, 1});
  jbx_tensor *neg = jbx_from_ints(1, (int64_t[]){1}, (int32_t[]){-1});
  jbx_tensor *fix = jbx_zeros(1, (int64_t[]){2});
  CHECK(jbx_index_select(a, 1, ix) == NULL, "index_select range");
  CHECK_ERROR_HAS("index_select: index 7 is out of range for dim 1 of size 3 in [2, 3]");
  CHECK(jbx_index_select(a, 0, neg) == NULL, "index_select negative");
  CHECK_ERROR_HAS("index_select: index -1 is out of range for dim 0 of size 2");
  CHECK(jbx_index_select(a, 0, fix) == NULL, "index_select float index");
  CHECK_ERROR_HAS("index_select: index must be int32, got float32");
  CHECK(jbx_index_select(a, 0, ia) == NULL, "index_select 2-D index");
  CHECK_ERROR_HAS("index_select: index must be 1-D, got [2, 3]");
  CHECK(jbx_index_select(s, 0, neg) == NULL, "index_select 0-dim");
  CHECK_ERROR_HAS("index_select: cannot index a 0-dim tensor");
  CHECK(jbx_index_select(a, 3, ix) == NULL, "index_select dim");
  CHECK_ERROR_HAS("index_select: dim 3 out of range");
  CHECK(jbx_index_select(NULL, 0, ix) == NULL, "index_select NULL");
  CHECK_ERROR_HAS("index_select: input and index are required");

  jbx_tensor *g_big = jbx_from_ints(2, (int64_t[]){3, 1}, (int32_t[]){0, 0, 0});
  jbx_tensor *g_bad = jbx_from_ints(2, (int64_t[]){1, 2}, (int32_t[]){1, 5});
  CHECK(jbx_gather(a, 1, g_bad) == NULL, "gather range");
  CHECK_ERROR_HAS("gather: index 5 is out of range for dim 1 of size 3 in [2, 3]");
  CHECK(jbx_gather(a, 1, g_big) == NULL, "gather too large");
  CHECK_ERROR_HAS("gather: index [3, 1] is larger than the input [2, 3] in dim 0");
  CHECK(jbx_gather(a, 1, ix) == NULL, "gather ndim");
  CHECK_ERROR_HAS("gather: index [3] must have 2 dims like the input [2, 3]");
  CHECK(jbx_gather(a, 0, fix) == NULL, "gather float index");
  CHECK_ERROR_HAS("gather: index must be int32, got float32");
  CHECK(jbx_gather(s, 0, neg) == NULL, "gather 0-dim");
  CHECK_ERROR_HAS("gather: cannot gather from a 0-dim tensor");
  CHECK(jbx_gather(a, -3, g_bad) == NULL, "gather dim");
  CHECK_ERROR_HAS("gather: dim -3 out of range");
  CHECK(jbx_gather(a, 0, NULL) == NULL, "gather NULL");
  CHECK_ERROR_HAS("gather: input and index are required");

  jbx_tensor *nan = jbx_from_floats(1, (int64_t[]){3}, (float[]){1, NAN, 2});
  jbx_tensor *huge = jbx_from_floats(1, (int64_t[]){1}, (float[]){3e9f});
  CHECK(jbx_to_dtype(nan, JBX_I32) == NULL, "to_dtype NaN");
  CHECK_ERROR_HAS("to_dtype: element 1 is nan, which has no int32 value");
  CHECK(jbx_to_dtype(huge, JBX_I32) == NULL, "to_dtype huge");
  CHECK_ERROR_HAS("to_dtype: element 0 is 3e+09, which has no int32 value");
  CHECK(jbx_to_dtype(NULL, JBX_I32) == NULL, "to_dtype NULL");
  CHECK_ERROR_HAS("to_dtype: input is NULL");
  CHECK(jbx_to_dtype(a, (jbx_dtype)7) == NULL, "to_dtype bad dtype");
  CHECK_ERROR_HAS("to_dtype: unknown dtype 7");

  jbx_release(nan);
  jbx_release(huge);
  jbx_release(g_big);
  jbx_release(g_bad);
  jbx_release(ix);
  jbx_release(neg);
  jbx_release(fix);
  jbx_release(ia);
  jbx_release(s);
  jbx_release(v);
  jbx_release(a);
  jbx_release(b);
}

int main(void) {
  test_concat_values();
  test_select_values();
  test_to_dtype();
  test_errors();
  return check_summary();
}
